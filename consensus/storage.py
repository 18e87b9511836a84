"""The stable half of the Raft log: the ``LogStorage`` seam and a memory store.

The core only reads storage (``LogStorage``). The driver writes it, and only
from the loop that handles ``Ready`` values, in this order::

    rd = raft.ready()
    storage.apply_snapshot(rd.snapshot)      # if any
    storage.append(rd.entries)
    storage.set_hard_state(rd.hard_state)    # if any; all three synced
    send(rd.messages); apply(rd.committed_entries)
    storage.create_snapshot(i, conf, data); storage.compact(i)   # optional
    raft.advance(rd)

Invariant that keeps compaction and snapshot installation from racing:
``snapshot.index <= applied <= committed`` and the driver compacts only at
``i <= applied`` it has applied itself. A snapshot arriving from the leader is
only *installed* by that same loop, so an install and a compaction are always
ordered; ``create_snapshot`` at or below the installed snapshot raises
``SnapshotOutOfDateError`` instead of moving the store backwards, and the core
never caches ``first_index`` (it asks storage each time), so entries compacted
under it surface as ``CompactedError`` and the leader sends a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consensus.messages import ConfState, Entry, EntryKind, HardState, Snapshot
from ledger.errors import ConsensusError


class CompactedError(ConsensusError):
    """The requested index is at or below the snapshot; entries are gone."""


class UnavailableError(ConsensusError):
    """The requested index is beyond the last entry in storage."""


class SnapshotOutOfDateError(ConsensusError):
    """A snapshot at or below the one already held was offered."""


# Per-entry overhead counted against ``max_bytes`` besides the data itself.
ENTRY_OVERHEAD = 16


def entry_size(e: Entry) -> int:
    return len(e.data) + ENTRY_OVERHEAD


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix within ``max_bytes``, but never less than one entry."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for i, e in enumerate(entries):
        total += entry_size(e)
        if total > max_bytes and i > 0:
            return entries[:i]
    return entries


class LogStorage(Protocol):
    """Read access to what the driver has made durable."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership of the snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, at least one if ``lo < hi``, capped by bytes.

        Precondition ``first_index() <= lo <= hi <= last_index() + 1``; raises
        ``CompactedError`` below ``first_index`` and ``UnavailableError`` above.
        """
        ...

    def term(self, index: int) -> int:
        """Term of entry ``index``; valid for ``first_index() - 1 <= index``."""
        ...

    def first_index(self) -> int:
        """Index of the first available entry; at most snapshot index + 1.

        Entries below the snapshot may be kept for followers that lag.
        """
        ...

    def last_index(self) -> int:
        """Index of the last entry (the snapshot index if there are none)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot."""
        ...


class MemoryStorage:
    """``LogStorage`` in memory, plus the small write API the driver uses.

    ``_ents[0]`` is a dummy entry at the snapshot's (index, term), so the
    entry at index ``i`` is ``_ents[i - _ents[0].index]``.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        # Every node of a cluster starts from the same genesis membership at
        # index 0; later changes arrive through the log.
        self._hard = HardState()
        self._snap = Snapshot(conf_state=conf_state or ConfState())
        self._ents: list[Entry] = [Entry(0, 0, EntryKind.NOOP)]

    # -- LogStorage ----------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard, self._snap.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (snapshot at {offset})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} beyond {self.last_index()}")
        return limit_size(self._ents[lo - offset : hi - offset], max_bytes)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"index {index} is compacted (snapshot at {offset})")
        if index - offset >= len(self._ents):
            raise UnavailableError(f"index {index} beyond {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snap

    @property
    def hard_state(self) -> HardState:
        return self._hard

    # -- the write API (the driver's, see the module docstring) --------------

    def set_hard_state(self, hs: HardState) -> None:
        self._hard = hs

    def append(self, entries: Sequence[Entry]) -> None:
        """Append consecutive ``entries``, replacing any suffix they overlap.

        Entries at or below the snapshot are ignored (already compacted).
        Precondition: ``entries[0].index <= last_index() + 1``.
        """
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        at = entries[0].index - self._ents[0].index
        if at > len(self._ents):
            raise UnavailableError(
                f"gap: appending {entries[0].index} after {self.last_index()}"
            )
        del self._ents[at:]
        self._ents.extend(entries)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace everything with ``snap`` (installed from the leader)."""
        if snap.index <= self._snap.index:
            raise SnapshotOutOfDateError(
                f"snapshot {snap.index} is not newer than {self._snap.index}"
            )
        self._snap = snap
        self._ents = [Entry(snap.term, snap.index, EntryKind.NOOP)]

    def create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes
    ) -> Snapshot:
        """Record the application's image at ``index`` (which it has applied).

        Precondition: ``snapshot().index < index <= last_index()`` and
        ``index`` applied by the caller; ``conf_state`` is the membership
        in force at ``index``. Does not compact (see ``compact``).
        """
        if index <= self._snap.index:
            raise SnapshotOutOfDateError(
                f"snapshot {index} is not newer than {self._snap.index}"
            )
        if index > self.last_index():
            raise UnavailableError(f"snapshot {index} beyond {self.last_index()}")
        snap = Snapshot(index, self.term(index), conf_state, data)
        self._snap = snap
        return snap

    def compact(self, index: int) -> None:
        """Drop entries up to ``index``; precondition ``index <= snapshot index``.

        Compacting past the snapshot would lose entries nobody can resend.
        """
        offset = self._ents[0].index
        if index <= offset:
            raise CompactedError(f"index {index} is already compacted")
        if index > self._snap.index:
            raise UnavailableError(
                f"compact {index} beyond snapshot {self._snap.index}"
            )
        self._ents = self._ents[index - offset :]
        # The dummy keeps the term of the new first-but-one entry's predecessor.
        self._ents[0] = Entry(self._ents[0].term, index, EntryKind.NOOP)

    def copy(self) -> MemoryStorage:
        """A snapshot of the synced state (the simulator keeps one per crash)."""
        other = MemoryStorage()
        other._hard = self._hard
        other._snap = self._snap
        other._ents = list(self._ents)
        return other
