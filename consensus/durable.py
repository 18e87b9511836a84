"""The Raft log on disk: ``LogStorage`` over its own LevelDB directory.

Theory of operation. The store mirrors ``MemoryStorage`` (same reads, same
write API, same errors, one more check) with every write a single LevelDB
write batch, so a crash leaves either all of a write or none of it; written
with ``sync=True`` unless it only moves the commit index (``must_sync``).
``save_ready`` puts everything one ``Ready`` asks to persist (a snapshot,
new entries with the truncation of any conflicting suffix, the hard state)
in one such batch; the driver calls it before sending that Ready's
messages.

Key layout (one byte of prefix; integers in keys are u64 big-endian, so
LevelDB's byte order is index order)::

    v            FORMAT, written once when the store is created
    h            hard state   {term, vote?, commit}
    s            snapshot metadata {index, term, voters, learners}: the
                 membership (conf state) in force at the snapshot
    d            snapshot data, raw (it may exceed the codec's size limit)
    e + index    entry [term, kind, data]

Like ``MemoryStorage``'s ``_ents[0]``, the lowest entry key holds a dummy
entry at the last compacted index ("offset") carrying that index's term, so
``term(first_index() - 1)`` still answers. Invariants:
``offset <= snapshot.index <= last_index`` (checked on open) and the entry
keys are exactly ``offset .. last_index`` (checked wherever entries are read
from disk); a store that breaks them raises ``CorruptStoreError``.

Reads come from memory when they can: the indexes, the hard state, the
snapshot metadata and a window of the most recent entries are cached; older
entries and the snapshot data are read from LevelDB on demand, so opening a
store of millions of entries reads only that window.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Final, Protocol

import plyvel

from consensus.messages import ConfState, Entry, EntryKind, HardState, Snapshot
from consensus.storage import (
    CompactedError,
    SnapshotOutOfDateError,
    UnavailableError,
    entry_size,
    limit_size,
)
from ledger.codec import (
    Field,
    Value,
    build_record,
    check_record,
    get_int,
    get_list,
    get_opt_str,
    pack,
    unpack,
)
from ledger.errors import ConsensusError, CorruptStoreError, EncodingError, StorageError

logger = logging.getLogger(__name__)

FORMAT: Final = b"agency-ledger/raft-log/v1"
KEY_FORMAT: Final = b"v"
KEY_HARD_STATE: Final = b"h"
KEY_SNAPSHOT_META: Final = b"s"
KEY_SNAPSHOT_DATA: Final = b"d"
ENTRY_PREFIX: Final = b"e"
ENTRY_END: Final = b"f"  # the first key past every entry key
# An entry holds one proposal: a batch of at most 10,000 submissions.
MAX_ENTRY_BYTES: Final = 256 * 1024 * 1024

HARD_STATE_FIELDS: Final = (
    Field("term", int),
    Field("vote", str, optional=True, max_len=40),
    Field("commit", int),
)
SNAPSHOT_META_FIELDS: Final = (
    Field("index", int),
    Field("term", int),
    Field("voters", list, max_len=64),
    Field("learners", list, max_len=64),
)


def entry_key(index: int) -> bytes:
    return ENTRY_PREFIX + index.to_bytes(8, "big")


def _index_of(key: bytes) -> int:
    return int.from_bytes(key[len(ENTRY_PREFIX) :], "big")


def encode_entry(e: Entry) -> bytes:
    return pack([e.term, int(e.kind), e.data])


def decode_entry(index: int, value: bytes) -> Entry:
    """The entry stored under ``index``; ``CorruptStoreError`` if unreadable."""
    try:
        decoded = unpack(value, max_size=MAX_ENTRY_BYTES)
        if not isinstance(decoded, list) or len(decoded) != 3:
            raise EncodingError("entry: expected [term, kind, data]")
        term, kind, data = decoded
        if not isinstance(term, int) or not isinstance(data, bytes):
            raise EncodingError("entry: wrong field types")
        if not isinstance(kind, int) or kind not in EntryKind._value2member_map_:
            raise EncodingError("entry: unknown kind")
        return Entry(term, index, EntryKind(kind), data)
    except EncodingError as exc:
        raise CorruptStoreError(f"raft log entry {index}: {exc}") from exc


def encode_hard_state(hs: HardState) -> bytes:
    values: dict[str, Value] = {"term": hs.term, "vote": hs.vote, "commit": hs.commit}
    return pack(build_record(HARD_STATE_FIELDS, values))


def decode_hard_state(value: bytes) -> HardState:
    rec = check_record(unpack(value), HARD_STATE_FIELDS, "hard state")
    return HardState(
        get_int(rec, "term"), get_opt_str(rec, "vote"), get_int(rec, "commit")
    )


def encode_snapshot_meta(snap: Snapshot) -> bytes:
    values: dict[str, Value] = {
        "index": snap.index,
        "term": snap.term,
        "voters": list(snap.conf_state.voters),
        "learners": list(snap.conf_state.learners),
    }
    return pack(build_record(SNAPSHOT_META_FIELDS, values))


def decode_snapshot_meta(value: bytes) -> Snapshot:
    """The snapshot's metadata, with empty ``data``."""
    rec = check_record(unpack(value), SNAPSHOT_META_FIELDS, "snapshot")
    voters = get_list(rec, "voters")
    learners = get_list(rec, "learners")
    if not all(isinstance(v, str) for v in voters + learners):
        raise EncodingError("snapshot: member ids must be strings")
    conf = ConfState(
        voters=tuple(str(v) for v in voters), learners=tuple(str(v) for v in learners)
    )
    return Snapshot(get_int(rec, "index"), get_int(rec, "term"), conf)


class _WriteBatch(Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def write(self) -> None: ...


@dataclasses.dataclass
class _State:
    """The cached view of what is on disk, replaced whole after each write.

    Invariants: ``offset <= snap.index <= last``; ``tail`` holds consecutive
    entries ending at ``last`` (or is empty), all above ``offset``;
    ``tail_bytes`` is their ``entry_size`` total. ``snap.data`` is left
    empty: the data stays on disk until someone asks for it.
    """

    hard: HardState
    snap: Snapshot
    offset: int
    offset_term: int
    last: int
    tail: list[Entry]
    tail_bytes: int = 0

    def copy(self) -> _State:
        return dataclasses.replace(self, tail=list(self.tail))


def _meta(snap: Snapshot) -> Snapshot:
    return dataclasses.replace(snap, data=b"")


class LevelDBStorage:
    """``LogStorage`` in LevelDB at ``path``, with ``MemoryStorage``'s write API.

    ``conf_state`` is the genesis membership, used only when the store is
    created. ``cache_entries``/``cache_bytes`` bound the window of recent
    entries kept in memory. Raises ``StorageError`` if the directory cannot
    be opened (another process holds it, say) and ``CorruptStoreError`` if
    what is there breaks the layout's invariants.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        conf_state: ConfState | None = None,
        *,
        cache_entries: int = 1024,
        cache_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._path = os.fspath(path)
        self._cache_entries, self._cache_bytes = cache_entries, cache_bytes
        try:
            self._db = plyvel.DB(self._path, create_if_missing=True)
        except plyvel.Error as exc:
            raise StorageError(f"cannot open raft log at {self._path}: {exc}") from exc
        try:
            if self._is_empty():
                self._state = self._create(conf_state or ConfState())
            else:
                self._state = self._load()
        except BaseException:
            self._db.close()
            raise
        st = self._state
        logger.info(
            "raft log opened path=%s first=%d last=%d term=%d commit=%d snapshot=%d",
            self._path,
            st.offset + 1,
            st.last,
            st.hard.term,
            st.hard.commit,
            st.snap.index,
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LevelDBStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- opening -------------------------------------------------------------

    def _is_empty(self) -> bool:
        # Only a brand-new directory is initialised: any other LevelDB (the
        # ledger store, say) must fail the format check, not gain our keys.
        with self._db.iterator(include_value=False) as it:
            return next(it, None) is None

    def _create(self, conf_state: ConfState) -> _State:
        snap = Snapshot(conf_state=conf_state)
        batch = self._db.write_batch(sync=True)
        batch.put(KEY_FORMAT, FORMAT)
        batch.put(KEY_HARD_STATE, encode_hard_state(HardState()))
        batch.put(KEY_SNAPSHOT_META, encode_snapshot_meta(snap))
        batch.put(KEY_SNAPSHOT_DATA, b"")
        batch.put(entry_key(0), encode_entry(Entry(0, 0, EntryKind.NOOP)))
        self._write(batch)
        return _State(HardState(), snap, offset=0, offset_term=0, last=0, tail=[])

    def _load(self) -> _State:
        if self._db.get(KEY_FORMAT) != FORMAT:
            raise CorruptStoreError(f"{self._path} is not a raft log of this format")
        try:
            hard = decode_hard_state(self._must_get(KEY_HARD_STATE))
            snap = decode_snapshot_meta(self._must_get(KEY_SNAPSHOT_META))
        except EncodingError as exc:
            raise CorruptStoreError(f"raft log state unreadable: {exc}") from exc
        first, last = self._first_entry(), self._last_entry()
        st = _State(hard, snap, first.index, first.term, last.index, tail=[])
        if not st.offset <= snap.index <= st.last:
            raise CorruptStoreError(
                f"raft log holds {st.offset}..{st.last}, snapshot at {snap.index}"
            )
        self._load_tail(st)
        return st

    def _must_get(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise CorruptStoreError(f"raft log key {key!r} missing")
        assert isinstance(value, bytes)
        return value

    # NB: plyvel's bounded reverse iterators can skip keys (seen here after a
    # reopen; wbolster/plyvel#28 is still open), so this module only ever
    # iterates forwards, and finds the last key with a raw seek.

    def _first_entry(self) -> Entry:
        with self._db.iterator(prefix=ENTRY_PREFIX) as it:
            for key, value in it:
                return decode_entry(_index_of(key), value)
        raise CorruptStoreError("raft log has no entries, not even its dummy")

    def _last_entry(self) -> Entry:
        it = self._db.raw_iterator()
        try:
            it.seek(ENTRY_END)
            if it.valid():
                it.prev()
            else:
                it.seek_to_last()
            if not it.valid() or not it.key().startswith(ENTRY_PREFIX):
                raise CorruptStoreError("raft log has no entries, not even its dummy")
            return decode_entry(_index_of(it.key()), it.value())
        finally:
            it.close()

    def _load_tail(self, st: _State) -> None:
        lo = max(st.offset + 1, st.last + 1 - self._cache_entries)
        self._extend_tail(st, lo, list(self._scan(lo, st.last + 1)))

    def _scan(self, lo: int, hi: int) -> Iterator[Entry]:
        """Entries ``[lo, hi)`` from disk; ``CorruptStoreError`` on a hole."""
        want = lo
        with self._db.iterator(start=entry_key(lo), stop=entry_key(hi)) as it:
            for key, value in it:
                if _index_of(key) != want:
                    raise CorruptStoreError(f"raft log entry {want} missing")
                yield decode_entry(want, value)
                want += 1
        if want < hi:
            raise CorruptStoreError(f"raft log entry {want} missing")

    # -- LogStorage ----------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._state.hard, self._state.snap.conf_state

    @property
    def hard_state(self) -> HardState:
        return self._state.hard

    def first_index(self) -> int:
        return self._state.offset + 1

    def last_index(self) -> int:
        return self._state.last

    def term(self, index: int) -> int:
        st = self._state
        if index < st.offset:
            raise CompactedError(f"index {index} is compacted (offset {st.offset})")
        if index > st.last:
            raise UnavailableError(f"index {index} beyond {st.last}")
        if index == st.offset:
            return st.offset_term
        if st.tail and index >= st.tail[0].index:
            return st.tail[index - st.tail[0].index].term
        return self._read_entry(index).term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        st = self._state
        if lo <= st.offset:
            raise CompactedError(f"index {lo} is compacted (offset {st.offset})")
        if hi > st.last + 1:
            raise UnavailableError(f"index {hi - 1} beyond {st.last}")
        if st.tail and lo >= st.tail[0].index:
            start = st.tail[0].index
            return limit_size(st.tail[lo - start : hi - start], max_bytes)
        out: list[Entry] = []
        total = 0
        for e in self._scan(lo, hi):
            total += entry_size(e)
            if out and max_bytes is not None and total > max_bytes:
                break
            out.append(e)
        return out

    def snapshot(self) -> Snapshot:
        data = self._must_get(KEY_SNAPSHOT_DATA)
        return dataclasses.replace(self._state.snap, data=data)

    def _read_entry(self, index: int) -> Entry:
        return decode_entry(index, self._must_get(entry_key(index)))

    # -- the write API: each call is one synced write batch ------------------

    def save_ready(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
    ) -> None:
        """Persist what one ``Ready`` asks for, atomically and synced.

        In ``MemoryStorage``'s order: install ``snapshot``, append
        ``entries`` (replacing any suffix they overlap), set ``hard_state``.
        Preconditions and errors as for ``apply_snapshot`` and ``append``;
        on an error nothing is written.
        """
        if hard_state is None and not entries and snapshot is None:
            return  # nothing to persist: spare the fsync
        new = self._state.copy()
        batch = self._db.write_batch(sync=self.must_sync(hard_state, entries, snapshot))
        if snapshot is not None:
            self._stage_snapshot(batch, new, snapshot)
        self._stage_entries(batch, new, entries)
        if hard_state is not None:
            batch.put(KEY_HARD_STATE, encode_hard_state(hard_state))
            new.hard = hard_state
        self._write(batch)
        self._state = new
        logger.debug(
            "raft log saved path=%s last=%d term=%d commit=%d",
            self._path,
            new.last,
            new.hard.term,
            new.hard.commit,
        )

    def must_sync(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
    ) -> bool:
        """Whether ``save_ready`` of these must reach the disk before it
        returns: unless only the commit index moved.

        The commit index is volatile state in Raft (the paper's figure 2;
        etcd's ``MustSync``): nothing sent or acknowledged depends on it
        being on disk, the term, vote and entries are. Only a crash of the
        machine can lose it (LevelDB hands every write to the system before
        returning), and then the node restarts with a lower commit, never
        below its snapshot (``RaftLog`` starts there), which the leader
        raises again; what the ledger store applied already is skipped
        (``RaftConfig.applied``). LevelDB writes its log in order, so the
        next synced write makes it durable too. Under load, about every
        other ``Ready`` moves only the commit index: an fsync spared each.
        """
        if entries or snapshot is not None:
            return True
        if hard_state is None:
            return False
        old = self._state.hard
        return (hard_state.term, hard_state.vote) != (old.term, old.vote)

    def set_hard_state(self, hs: HardState) -> None:
        self.save_ready(hs, (), None)

    def append(self, entries: Sequence[Entry]) -> None:
        """Append consecutive ``entries``, replacing any suffix they overlap.

        Entries at or below the offset are ignored (already compacted).
        Preconditions: ``entries[0].index <= last_index() + 1``
        (``UnavailableError`` otherwise); entries above the offset but at or
        below the snapshot are not rewritten (``ConsensusError``; unlike
        ``MemoryStorage``, which does not check).
        """
        self.save_ready(None, entries, None)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace everything with ``snap`` (installed from the leader)."""
        self.save_ready(None, (), snap)
        logger.info(
            "raft log snapshot installed path=%s index=%d term=%d",
            self._path,
            snap.index,
            snap.term,
        )

    def create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes
    ) -> Snapshot:
        """Record the application's image at ``index`` (which it has applied).

        Precondition: ``snapshot().index < index <= last_index()``. Does not
        compact (see ``compact``).
        """
        st = self._state
        if index <= st.snap.index:
            raise SnapshotOutOfDateError(
                f"snapshot {index} is not newer than {st.snap.index}"
            )
        if index > st.last:
            raise UnavailableError(f"snapshot {index} beyond {st.last}")
        snap = Snapshot(index, self.term(index), conf_state, data)
        new = st.copy()
        batch = self._db.write_batch(sync=True)
        batch.put(KEY_SNAPSHOT_META, encode_snapshot_meta(snap))
        batch.put(KEY_SNAPSHOT_DATA, data)
        new.snap = _meta(snap)
        self._write(batch)
        self._state = new
        return snap

    def compact(self, index: int) -> None:
        """Drop entries up to ``index``; precondition ``index <= snapshot index``."""
        st = self._state
        if index <= st.offset:
            raise CompactedError(f"index {index} is already compacted")
        if index > st.snap.index:
            raise UnavailableError(f"compact {index} beyond snapshot {st.snap.index}")
        term = self.term(index)
        new = st.copy()
        batch = self._db.write_batch(sync=True)
        for i in range(st.offset, index):
            batch.delete(entry_key(i))
        batch.put(entry_key(index), encode_entry(Entry(term, index, EntryKind.NOOP)))
        new.offset, new.offset_term = index, term
        kept = [e for e in new.tail if e.index > index]
        new.tail, new.tail_bytes = kept, sum(entry_size(e) for e in kept)
        self._write(batch)
        self._state = new
        logger.info("raft log compacted path=%s first=%d", self._path, index + 1)

    def _stage_snapshot(self, batch: _WriteBatch, st: _State, snap: Snapshot) -> None:
        if snap.index <= st.snap.index:
            raise SnapshotOutOfDateError(
                f"snapshot {snap.index} is not newer than {st.snap.index}"
            )
        for i in range(st.offset, st.last + 1):
            batch.delete(entry_key(i))
        batch.put(KEY_SNAPSHOT_META, encode_snapshot_meta(snap))
        batch.put(KEY_SNAPSHOT_DATA, snap.data)
        # NB: put after the deletes; within a batch the later write wins.
        dummy = Entry(snap.term, snap.index, EntryKind.NOOP)
        batch.put(entry_key(snap.index), encode_entry(dummy))
        st.snap, st.offset, st.offset_term = _meta(snap), snap.index, snap.term
        st.last, st.tail, st.tail_bytes = snap.index, [], 0

    def _stage_entries(
        self, batch: _WriteBatch, st: _State, entries: Sequence[Entry]
    ) -> None:
        if not entries:
            return
        if entries[-1].index - entries[0].index + 1 != len(entries):
            raise ConsensusError("entries to append are not consecutive")
        first = st.offset + 1
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        at, end = entries[0].index, entries[-1].index
        if at > st.last + 1:
            raise UnavailableError(f"gap: appending {at} after {st.last}")
        if at <= st.snap.index:
            # Raft never rewrites applied entries; doing so here would leave
            # a snapshot ahead of the log, which no reopen could make sense of.
            raise ConsensusError(f"append at {at} rewrites snapshot {st.snap.index}")
        # The conflicting suffix: what the new entries overwrite is replaced
        # by the puts below; only what lies beyond their end is deleted.
        for i in range(end + 1, st.last + 1):
            batch.delete(entry_key(i))
        for e in entries:
            batch.put(entry_key(e.index), encode_entry(e))
        st.last = end
        self._extend_tail(st, at, entries)

    def _extend_tail(self, st: _State, at: int, entries: Sequence[Entry]) -> None:
        # ``st`` is a private copy, so its tail may be edited in place.
        keep = max(0, at - st.tail[0].index) if st.tail else 0
        st.tail_bytes -= sum(entry_size(e) for e in st.tail[keep:])
        del st.tail[keep:]
        st.tail.extend(entries)
        st.tail_bytes += sum(entry_size(e) for e in entries)
        drop = 0
        while drop < len(st.tail) and (
            len(st.tail) - drop > self._cache_entries
            or st.tail_bytes > self._cache_bytes
        ):
            st.tail_bytes -= entry_size(st.tail[drop])
            drop += 1
        del st.tail[:drop]

    def _write(self, batch: _WriteBatch) -> None:
        try:
            batch.write()
        except plyvel.Error as exc:
            raise StorageError(f"raft log write failed at {self._path}: {exc}") from exc
