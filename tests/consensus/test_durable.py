"""LevelDBStorage: the Raft log on disk, checked against MemoryStorage."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import plyvel
import pytest

from consensus.durable import LevelDBStorage
from consensus.messages import ConfState, Entry, EntryKind, HardState, Snapshot
from consensus.storage import (
    CompactedError,
    MemoryStorage,
    SnapshotOutOfDateError,
    UnavailableError,
)
from ledger.errors import ConsensusError, CorruptStoreError, StorageError

ROOT = Path(__file__).resolve().parents[2]
GENESIS = ConfState(voters=("node-a", "node-b", "node-c"))


def ents(lo: int, hi: int, term: int) -> list[Entry]:
    """Entries ``[lo, hi)`` of ``term`` whose data names index and term."""
    return [
        Entry(term, i, EntryKind.NORMAL, f"{i}:{term}".encode()) for i in range(lo, hi)
    ]


def view(s: LevelDBStorage | MemoryStorage) -> tuple[object, ...]:
    """Everything a reader of the storage can observe."""
    first, last = s.first_index(), s.last_index()
    terms = [s.term(i) for i in range(first - 1, last + 1)]
    return (
        s.initial_state(),
        first,
        last,
        s.entries(first, last + 1),
        terms,
        s.snapshot(),
    )


def test_fresh_store_starts_like_memory_storage(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        assert view(disk) == view(MemoryStorage(GENESIS))
    # The genesis membership is only used to create the store.
    with LevelDBStorage(tmp_path / "raft", ConfState(voters=("node-z",))) as disk:
        assert disk.initial_state() == (HardState(), GENESIS)


def test_save_ready_persists_everything_of_one_ready(tmp_path: Path) -> None:
    hs = HardState(term=2, vote="node-b", commit=3)
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        disk.save_ready(hs, ents(1, 6, 2), None)
        assert disk.hard_state == hs and disk.last_index() == 5
    with LevelDBStorage(tmp_path / "raft") as disk:
        assert disk.initial_state() == (hs, GENESIS)
        assert disk.entries(1, 6) == ents(1, 6, 2)


def test_only_a_commit_index_move_is_saved_without_sync(tmp_path: Path) -> None:
    # Raft's commit index is volatile state (figure 2 of the paper): term,
    # vote, entries and snapshots must be on disk before anything is sent,
    # a commit index alone need not be.
    hs = HardState(term=2, vote="node-b", commit=3)
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        assert disk.must_sync(hs, (), None)
        disk.save_ready(hs, ents(1, 4, 2), None)
        assert not disk.must_sync(HardState(term=2, vote="node-b", commit=4), (), None)
        assert not disk.must_sync(None, (), None)
        assert disk.must_sync(HardState(term=3, vote="node-b", commit=4), (), None)
        assert disk.must_sync(HardState(term=2, vote=None, commit=4), (), None)
        assert disk.must_sync(None, ents(4, 5, 2), None)
        assert disk.must_sync(None, (), Snapshot(index=3, term=2, conf_state=GENESIS))
        # Saved without sync, still saved (and read back after a restart).
        disk.save_ready(HardState(term=2, vote="node-b", commit=4), (), None)
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        assert disk.initial_state()[0] == HardState(term=2, vote="node-b", commit=4)


def test_save_ready_writes_nothing_when_any_part_is_refused(tmp_path: Path) -> None:
    hs = HardState(term=1, commit=2)
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        disk.save_ready(hs, ents(1, 4, 1), None)
        before = view(disk)
        with pytest.raises(UnavailableError):  # a gap after the hard state
            disk.save_ready(HardState(term=9, commit=9), ents(6, 8, 9), None)
        old_snap = Snapshot(0, 0, GENESIS)
        with pytest.raises(SnapshotOutOfDateError):  # entries fine, snapshot not
            disk.save_ready(HardState(term=9), ents(4, 6, 9), old_snap)
        assert view(disk) == before
    with LevelDBStorage(tmp_path / "raft") as disk:
        assert view(disk) == before


def test_conflicting_suffix_is_truncated(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "raft", GENESIS, cache_entries=2) as disk:
        disk.save_ready(HardState(term=1), ents(1, 11, 1), None)
        # A new leader's entries 6..8 conflict: 6..10 go, 6..8 come.
        disk.save_ready(HardState(term=2), ents(6, 9, 2), None)
        want = ents(1, 6, 1) + ents(6, 9, 2)
        assert disk.last_index() == 8 and disk.entries(1, 9) == want
    with LevelDBStorage(tmp_path / "raft") as disk:
        assert disk.last_index() == 8 and disk.entries(1, 9) == want
        with pytest.raises(UnavailableError):
            disk.term(9)


def test_snapshot_and_compact(tmp_path: Path) -> None:
    conf = ConfState(voters=("node-a", "node-b"), learners=("node-c",))
    big = os.urandom(17 * 1024 * 1024)  # beyond the codec's size limit
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        disk.save_ready(HardState(term=3, commit=8), ents(1, 11, 3), None)
        snap = disk.create_snapshot(8, conf, big)
        assert snap == Snapshot(8, 3, conf, big)
        disk.compact(6)
        assert disk.first_index() == 7 and disk.term(6) == 3
        with pytest.raises(CompactedError):
            disk.entries(6, 8)
        with pytest.raises(UnavailableError):
            disk.compact(9)  # past the snapshot
        with pytest.raises(SnapshotOutOfDateError):
            disk.create_snapshot(7, conf, b"")
    with LevelDBStorage(tmp_path / "raft") as disk:
        assert disk.snapshot() == snap and disk.initial_state()[1] == conf
        assert disk.first_index() == 7 and disk.entries(7, 11) == ents(7, 11, 3)
        installed = Snapshot(20, 4, GENESIS, b"image")
        disk.save_ready(HardState(term=4, commit=20), ents(21, 23, 4), installed)
    with LevelDBStorage(tmp_path / "raft") as disk:
        assert disk.snapshot() == installed
        assert (disk.first_index(), disk.last_index(), disk.term(20)) == (21, 22, 4)
        assert disk.entries(21, 23) == ents(21, 23, 4)


def test_entries_respect_max_bytes_from_cache_and_disk(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "raft", GENESIS, cache_entries=3) as disk:
        disk.append(ents(1, 11, 1))
        one = len(disk.entries(1, 2)[0].data) + 16
        assert disk.entries(1, 11, max_bytes=2 * one) == ents(1, 3, 1)  # disk
        assert disk.entries(9, 11, max_bytes=one) == ents(9, 10, 1)  # cache
        assert disk.entries(1, 11, max_bytes=0) == ents(1, 2, 1)  # never empty


def test_append_never_rewrites_the_snapshot(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "raft", GENESIS) as disk:
        disk.append(ents(1, 6, 1))
        disk.create_snapshot(4, GENESIS, b"")
        with pytest.raises(ConsensusError):
            disk.append(ents(3, 5, 2))
        disk.append(ents(5, 7, 2))
        assert disk.entries(4, 7) == ents(4, 5, 1) + ents(5, 7, 2)


def test_refuses_a_directory_that_is_not_a_raft_log(tmp_path: Path) -> None:
    other = plyvel.DB(str(tmp_path / "ledger"), create_if_missing=True)
    other.put(b"M", b"someone else's data")
    other.close()
    with pytest.raises(CorruptStoreError):
        LevelDBStorage(tmp_path / "ledger")


def test_store_is_locked_while_open(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "raft", GENESIS), pytest.raises(StorageError):
        LevelDBStorage(tmp_path / "raft")


class _Driver:
    """Random writes applied to a MemoryStorage and a LevelDBStorage alike."""

    def __init__(self, rng: random.Random, mem: MemoryStorage) -> None:
        self.rng, self.mem, self.term = rng, mem, 1

    def step(self, disk: LevelDBStorage) -> None:
        rng, mem = self.rng, self.mem
        op = rng.choice(["ready", "ready", "ready", "snap", "compact", "install"])
        first, last, snap_index = (
            mem.first_index(),
            mem.last_index(),
            mem.snapshot().index,
        )
        if op == "ready":
            self.term += rng.random() < 0.3
            lo = rng.randint(max(first, snap_index + 1), last + 1)
            new = ents(lo, lo + rng.randint(0, 4), self.term)
            hs = HardState(self.term, rng.choice([None, "node-a"]), rng.randint(0, 9))
            mem.append(new)
            mem.set_hard_state(hs)
            disk.save_ready(hs, new, None)
        elif op == "snap" and snap_index < last:
            index, data = rng.randint(snap_index + 1, last), rng.randbytes(8)
            assert disk.create_snapshot(index, GENESIS, data) == mem.create_snapshot(
                index, GENESIS, data
            )
        elif op == "compact" and first <= snap_index:
            index = rng.randint(first, snap_index)
            mem.compact(index)
            disk.compact(index)
        elif op == "install":
            snap = Snapshot(last + rng.randint(-1, 3), self.term, GENESIS, b"s")
            if snap.index > snap_index:
                mem.apply_snapshot(snap)
                disk.save_ready(None, (), snap)


def test_restart_restores_exactly_what_memory_storage_holds(tmp_path: Path) -> None:
    rng = random.Random(2024)
    mem = MemoryStorage(GENESIS)
    driver = _Driver(rng, mem)
    disk = LevelDBStorage(tmp_path / "raft", GENESIS, cache_entries=4)
    try:
        for _ in range(250):
            driver.step(disk)
            assert view(disk) == view(mem)
            if rng.random() < 0.1:
                disk.close()
                disk = LevelDBStorage(tmp_path / "raft", cache_entries=4)
                assert view(disk) == view(mem)
    finally:
        disk.close()


# Each batch: ten entries and a hard state committing them, in one Ready;
# every fifth batch a new term rewrites the last three entries first.
WRITER = """
import sys
from consensus.durable import LevelDBStorage
from consensus.messages import Entry, HardState
from consensus.storage import MemoryStorage
disk = LevelDBStorage(sys.argv[1])
term = 1
for batch in range(10**6):
    last = disk.last_index()
    if batch % 5 == 4:
        term += 1
        last = max(0, last - 3)
    new = [
        Entry(term, i, data=b"%d:%d" % (i, term) * 50)
        for i in range(last + 1, last + 11)
    ]
    disk.save_ready(HardState(term, "node-a", new[-1].index), new, None)
    print(new[-1].index, flush=True)
"""


def test_sigkilled_writer_reopens_consistent(tmp_path: Path) -> None:
    path = tmp_path / "raft"
    LevelDBStorage(path, GENESIS).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for kill_after in (7, 31, 64):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        acked = 0
        for _ in range(kill_after):
            acked = int(proc.stdout.readline())
        # Killed mid-stream: the writer is busy with its next batch by now.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        with LevelDBStorage(path) as disk:
            hs, last = disk.hard_state, disk.last_index()
            # Entries and hard state of one Ready land together or not at all.
            assert hs.commit == last >= acked
            entries = disk.entries(disk.first_index(), last + 1)
            assert [e.index for e in entries] == list(range(1, last + 1))
            assert all(e.data == b"%d:%d" % (e.index, e.term) * 50 for e in entries)
            assert entries[-1].term == hs.term
