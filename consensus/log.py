"""The Raft log: what storage holds plus an unstable tail not yet persisted.

Layout (indexes grow to the right)::

    storage:  [first_index ........ storage.last_index]
    unstable:              [offset ........................ last_index]
                           (or a snapshot at offset - 1, nothing below it)

The unstable tail may overlap storage: a follower that truncated a suffix
holds the replacement here until the driver persists it, and reads prefer the
tail. ``stable_to`` forgets a prefix of the tail once it is on disk.
"""

from __future__ import annotations

from consensus.messages import Entry, Snapshot
from consensus.storage import (
    CompactedError,
    LogStorage,
    UnavailableError,
    entry_size,
    limit_size,
)


class Unstable:
    """Entries (and maybe a snapshot) the driver has not yet persisted.

    ``entries[i].index == offset + i``; with a snapshot, ``offset ==
    snapshot.index + 1``.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None

    def last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        return self.snapshot.index if self.snapshot is not None else None

    def term(self, index: int) -> int | None:
        if index < self.offset:
            snap = self.snapshot
            return snap.term if snap is not None and snap.index == index else None
        last = self.last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def truncate_and_append(self, ents: list[Entry]) -> None:
        first = ents[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif first <= self.offset:
            # Replaces the whole tail (and what storage holds from ``first``).
            self.offset = first
            self.entries = list(ents)
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(ents)

    def stable_to(self, index: int, term: int) -> None:
        # NB: the tail may have been replaced since the Ready was made; only
        # forget entries that are still the ones the driver persisted.
        if self.term(index) != term or index < self.offset:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1


class RaftLog:
    """The log as the core sees it.

    Invariants: ``applied <= committed <= last_index()``; every entry at or
    below ``committed`` is the same on every node that has it.
    """

    __slots__ = ("applied", "committed", "storage", "unstable")

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self.unstable = Unstable(storage.last_index() + 1)
        # The application restarts from the snapshot: everything above it is
        # re-delivered unless the driver says otherwise. Storage may keep
        # entries below the snapshot (for slow followers); they are applied.
        self.committed = storage.snapshot().index
        self.applied = self.committed

    # -- reading ----------------------------------------------------------

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        last = self.unstable.last_index()
        return last if last is not None else self.storage.last_index()

    def term(self, index: int) -> int:
        """Term of ``index``; raises ``CompactedError``/``UnavailableError``."""
        t = self.unstable.term(index)
        if t is not None:
            return t
        if index > self.last_index():
            raise UnavailableError(f"index {index} beyond {self.last_index()}")
        if index < self.first_index() - 1:
            raise CompactedError(f"index {index} is compacted")
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        return self.term_or_zero(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up-to-date as ours?"""
        ours = self.last_term()
        return term > ours or (term == ours and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``; at least one if ``lo < hi``, capped by bytes."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(f"index {lo} is compacted")
        off = self.unstable.offset
        out: list[Entry] = []
        if lo < off:
            out = self.storage.entries(lo, min(hi, off), max_bytes)
            if len(out) < min(hi, off) - lo:
                return out  # hit the byte limit inside storage
        if hi > off:
            tail = self.unstable.entries[max(lo, off) - off : hi - off]
            if max_bytes is None:
                out.extend(tail)
            elif not out:
                out = limit_size(tail, max_bytes)
            else:
                used = sum(entry_size(e) for e in out)
                out.extend(_take_within(tail, used, max_bytes))
        return out

    def entries_from(self, lo: int, max_bytes: int | None) -> list[Entry]:
        return self.slice(lo, self.last_index() + 1, max_bytes)

    def next_committed(self) -> list[Entry]:
        """Entries ``(applied, committed]`` to hand to the application."""
        if self.unstable.snapshot is not None:
            return []  # the snapshot must be installed first
        return self.slice(self.applied + 1, self.committed + 1)

    def has_next_committed(self) -> bool:
        return self.unstable.snapshot is None and self.committed > self.applied

    # -- writing ----------------------------------------------------------

    def find_conflict(self, ents: tuple[Entry, ...]) -> int:
        """Index of the first entry not already in the log with its term, or 0."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``i <= index`` whose term is ``<= term``, with its term."""
        while index > 0:
            try:
                ours = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if ours <= term:
                return index, ours
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]
    ) -> tuple[int, list[Entry]] | None:
        """Raft's AppendEntries receiver; ``None`` if ``(index, log_term)``
        is not in our log.

        Returns the last index this append verified and the entries actually
        written. Only the first entry whose term conflicts truncates: an
        append that is stale or a duplicate (all its entries already present)
        leaves the log alone, so a delayed shorter append never cuts off
        entries a later append added (and we may already have acknowledged).
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        written: list[Entry] = []
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"conflict at {ci} <= committed {self.committed}")
            written = list(ents[ci - index - 1 :])
            self.append(written)
        # The follower only knows its log matches the leader's up to
        # ``last_new``; entries beyond it may be from an older term.
        self.commit_to(min(committed, last_new))
        return last_new, written

    def append(self, ents: list[Entry]) -> None:
        if not ents:
            return
        if ents[0].index <= self.committed:
            raise AssertionError(f"append at {ents[0].index} <= committed")
        self.unstable.truncate_and_append(ents)

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit ``index`` if its entry is of ``term`` (Raft §5.4.2)."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.committed = index
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index > self.committed or index < self.applied:
            raise AssertionError(f"applied {index} outside [{self.applied}, commit]")
        self.applied = index

    def restore(self, snap: Snapshot) -> None:
        """Replace the log with ``snap`` (pending until persisted)."""
        self.committed = snap.index
        self.unstable.snapshot = snap
        self.unstable.offset = snap.index + 1
        self.unstable.entries = []

    def stable_snap_to(self, index: int) -> None:
        snap = self.unstable.snapshot
        if snap is not None and snap.index == index:
            self.unstable.snapshot = None


def _take_within(ents: list[Entry], used: int, max_bytes: int) -> list[Entry]:
    out: list[Entry] = []
    for e in ents:
        used += entry_size(e)
        if used > max_bytes:
            break
        out.append(e)
    return out
