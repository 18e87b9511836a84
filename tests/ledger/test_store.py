"""The LevelDB store: apply, reads, proofs, integrity checks, snapshots."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.store
from ledger import store_write
from ledger.block import block_hash, verify_body
from ledger.checkpoint import verify_checkpoint
from ledger.entries import record_key
from ledger.errors import (
    ConfigError,
    CorruptStoreError,
    StorageError,
    VerificationError,
)
from ledger.merkle import (
    leaf_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from ledger.statemap import StateMap, verify_state
from ledger.status import StatusRecord
from ledger.store import LedgerStore, NoFinalCheckpointError, NotFoundError
from ledger.store_check import state_root_of_values
from ledger.store_keys import (
    CHUNK,
    STORED_MIN_LEVEL,
    block_key,
    chunk_roots,
    leaf_key,
    node_key,
    prefix_end,
)
from ledger.store_read import CachedNodes, read_status
from ledger.submission import batch_root, decode_submission, signing_message
from tests.ledger.store_helpers import (
    ORIGIN,
    T0,
    Agency,
    Chain,
    anchor,
    batch,
    cosign,
    doc_id,
    make_agencies,
    make_genesis,
    record,
    revoke,
    submission,
    supersede,
)

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)
MOJ, MOH, MPI = (AGENCIES[a] for a in ("moj", "moh", "mpi"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def chain(db_path: Path) -> Iterator[Chain]:
    store = LedgerStore.open(db_path, GENESIS)
    yield Chain(store, AGENCIES)
    store.close()


def _fill(chain: Chain) -> None:
    """Four blocks: big and small batches, a revoke, a supersede, a record."""
    chain.apply(("moj", [anchor("moj", i) for i in range(70)]))
    chain.apply(("moh", [anchor("moh", 100)]), ("moj", [revoke("moj", 3)]))
    chain.apply(
        ("moj", [anchor("moj", 200), supersede("moj", 4, 200)]),
        ("mpi", [record("mpi", b"parcel-1", 1)]),
    )
    chain.apply(("mpi", [record("mpi", b"parcel-1", 2)]), final=False)


def _raw_db(path: Path) -> plyvel.DB:
    return plyvel.DB(str(path))


# --- apply and reads ------------------------------------------------------------


def test_apply_round_trip(chain: Chain) -> None:
    _fill(chain)
    store = chain.store
    assert (store.height, store.tree_size, store.applied_index) == (4, 76, 4)
    leaves = store.leaves(0, store.tree_size)
    assert store.log_root(store.tree_size) == root_of([leaf_hash(x) for x in leaves])
    for h in range(1, 5):
        block = store.block(h)
        verify_body(block)  # submissions rebuilt byte for byte from the leaves
        assert block.header.height == h
    assert block_hash(store.header(4)) == store.last_hash
    assert store.header(4).state_root == store.state_root
    assert [b.header.height for b in store.blocks(2, 10)] == [2, 3, 4]


def test_rejected_submission_is_stored_whole(chain: Chain) -> None:
    chain.apply(("moj", [anchor("moj", 1)]))
    replay = chain.store.block(1).submissions[0]
    chain.raft_index += 1
    block = chain.store.apply(batch([replay], chain.now()), raft_index=chain.raft_index)
    assert block.outcomes[0].code == "replay"
    assert chain.store.block(2).submissions == (replay,)
    assert chain.store.tree_size == 1


def test_status_history_and_locate(chain: Chain) -> None:
    _fill(chain)
    store = chain.store
    rec = store.status(doc_id(3))
    assert rec is not None and rec.status == "revoked" and rec.anchor_leaf == 3
    assert store.history(doc_id(3)) == [(3, 1), (71, 2)]
    assert store.history(doc_id(200)) == [(72, 3), (73, 3)]  # anchor, supersede
    rkey = record_key("land", b"parcel-1")
    assert [i for i, _ in store.history(rkey)] == [74, 75]
    assert store.status(doc_id("nope")) is None
    assert store.history(doc_id("nope")) == []
    for key in (doc_id(3), doc_id(200), rkey, doc_id("nope")):
        found = store.status_and_history(key)
        assert (found.status, found.rows) == (store.status(key), store.history(key))
        assert found.height == store.height
    assert store.changes(doc_id(3)) == [(71, 2)]
    assert store.changes(doc_id(200)) == [(73, 3)]
    loc = store.locate(73)
    assert (loc.height, loc.submission, loc.position) == (3, 0, 1)


def test_status_and_history_are_of_one_block(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block applied between the status read and the history scan (apply
    runs on another thread than the reads) is in neither of them."""
    _fill(chain)
    store = chain.store
    before = store.height
    read = read_status  # what ledger.store calls

    def read_then_revoke(value: bytes | None) -> StatusRecord | None:
        monkeypatch.setattr(ledger.store, "read_status", read)
        chain.apply(("moh", [revoke("moh", 100)]))
        return read(value)

    monkeypatch.setattr(ledger.store, "read_status", read_then_revoke)
    found = store.status_and_history(doc_id(100))
    assert store.height == before + 1  # the revoke landed mid-read
    assert found.status is not None and found.status.status == "valid"
    assert found.rows == [(70, 2)] and found.height == before
    now = store.status_and_history(doc_id(100))
    assert now.status is not None and now.status.status == "revoked"
    assert [h for _, h in now.rows] == [2, before + 1] and now.height == before + 1


@pytest.mark.parametrize("count", [1, 2, CHUNK, CHUNK + 1, 70, 3 * CHUNK])
def test_batch_proof_reaches_the_signed_root(db_path: Path, count: int) -> None:
    with LedgerStore.open(db_path, GENESIS) as store:
        chain = Chain(store, AGENCIES)
        chain.apply(("moh", [anchor("moh", "x")]))  # the batch does not start at 0
        chain.apply(("moj", [anchor("moj", i) for i in range(count)]))
        sub = decode_submission(store.block(2).submissions[0])
        for index in {1, min(2, count), count // 2 + 1, count}:
            proof = store.leaf_proof(index, store.tree_size).batch
            rec = proof.location.record
            assert proof.batch_size == count
            root = root_from_inclusion(
                leaf_hash(store.leaf(index)),
                proof.location.position,
                count,
                proof.path,
            )
            assert root == batch_root(sub.entries)
            message = signing_message(ORIGIN, "moj", rec.nonce, rec.timestamp_ms, root)
            assert message == signing_message(
                ORIGIN, sub.agency, sub.nonce, sub.timestamp_ms, batch_root(sub.entries)
            )


def test_leaf_proof_is_the_leaf_and_both_proofs(db_path: Path) -> None:
    """One read for a bundle's leaf part gives the leaf, the log's own
    inclusion proof, and one batch proof whatever the size asked for: for
    leaves in and out of whole stored nodes, near the edge of the tree asked
    for, and in batches that do not start on a node."""
    with LedgerStore.open(db_path, GENESIS) as store:
        chain = Chain(store, AGENCIES)
        chain.apply(("moh", [anchor("moh", i) for i in range(3)]))
        chain.apply(("moj", [anchor("moj", 10 + i) for i in range(2 * CHUNK + 5)]))
        chain.apply(("mpi", [anchor("mpi", 100 + i) for i in range(11)]))
        top = store.tree_size
        for size in sorted({1, 7, 8, 9, 40, top - 3, top}):
            for index in range(size):
                proof = store.leaf_proof(index, size)
                assert proof.leaf == store.leaf(index)
                assert proof.inclusion == store.inclusion_proof(index, size)
                # A leaf's batch proof is the same whatever the tree's size.
                assert proof.batch == store.leaf_proof(index, top).batch
        with pytest.raises(ValueError):
            store.leaf_proof(5, 5)
        with pytest.raises(NotFoundError):
            store.leaf_proof(0, top + 1)


class _CountingReader:
    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    def node(self, level: int, index: int) -> bytes:
        self.reads.append((level, index))
        return hashlib.sha256(bytes([level]) + index.to_bytes(8, "big")).digest()


def test_kept_log_nodes_go_as_low_as_the_tree_allows() -> None:
    """Kept levels come down to where a whole tree's nodes fit in half the
    limit, and never below the floor; below them every read goes through."""
    reader = _CountingReader()
    nodes = CachedNodes(reader, min_level=3, limit=1024)
    fits = [(0, 3), (1000, 3), (4096, 4), (4200, 5), (300_000, 11), (10**9, 22)]
    for size, level in fits:
        nodes.fit(size)
        assert nodes.min_level == level
        # A tree that size has at most half the limit in nodes at the kept
        # levels, and more than that one level lower (unless at the floor).
        assert size >> (level - 1) <= 512
        assert size >> (level - 2) > 512 or level == 3
    nodes.fit(4096)
    for _ in range(2):
        assert nodes.node(4, 7) == reader.node(4, 7)
        nodes.node(3, 7)
    assert reader.reads.count((4, 7)) == 3  # once kept, twice by the test
    assert reader.reads.count((3, 7)) == 2


@given(st.integers(1, 200))
def test_chunk_roots_fold_to_the_batch_root(count: int) -> None:
    hashes = [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(count)]
    chunks = chunk_roots(hashes)
    assert root_of(list(chunks) if chunks else hashes) == root_of(hashes)


def test_log_proofs(chain: Chain) -> None:
    _fill(chain)
    store = chain.store
    n = store.tree_size
    for size in (1, 5, 64, 71, n):
        root = store.log_root(size)
        for index in (0, size // 2, size - 1):
            proof = store.inclusion_proof(index, size)
            verify_inclusion(leaf_hash(store.leaf(index)), index, size, proof, root)
        if size < n:
            proof = store.consistency_proof(size, n)
            verify_consistency(size, n, proof, root, store.log_root(n))
    with pytest.raises(NotFoundError):
        store.inclusion_proof(0, n + 1)
    with pytest.raises(NotFoundError):
        store.leaf(n)
    with pytest.raises(ValueError):
        store.leaves(0, 1001)


def test_kept_log_nodes_and_ranges_give_right_proofs_as_the_log_grows(
    chain: Chain,
) -> None:
    # Past 2**10 leaves the store keeps the nodes it reads and the log its
    # edge ranges; the sizes in between make the edges differ each block.
    store = chain.store
    for block, count in enumerate((700, 700, 900)):
        chain.apply(("moj", [anchor("moj", f"{block}-{i}") for i in range(count)]))
        n = store.tree_size
        for size in (n - 1, n):
            root = store.log_root(size)
            for index in {0, 1023, size // 2, size - 1} & set(range(size)):
                proof = store.inclusion_proof(index, size)
                verify_inclusion(leaf_hash(store.leaf(index)), index, size, proof, root)
            if size > 1500:
                proof = store.consistency_proof(1500, size)
                verify_consistency(1500, size, proof, store.log_root(1500), root)


def test_apply_refuses_an_applied_raft_index(chain: Chain) -> None:
    chain.apply(("moj", [anchor("moj", 1)]))
    with pytest.raises(StorageError, match="already applied"):
        chain.store.apply(batch([], chain.now()), raft_index=1)
    chain.store.mark_applied(7)
    assert chain.store.applied_index == 7
    assert chain.store.height == 1


# --- atomicity and reopening -----------------------------------------------------


def _tip(store: LedgerStore) -> tuple[object, ...]:
    return (
        store.height,
        store.tree_size,
        store.last_hash,
        store.state_root,
        store.applied_index,
    )


def test_apply_is_atomic(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    chain.apply(("moj", [anchor("moj", 1)]))
    before = _tip(chain.store)
    real = store_write.stage_block

    def half_then_fail(wb: plyvel.WriteBatch, *args: object, **kw: object) -> set[int]:
        real(wb, *args, **kw)  # type: ignore[arg-type]
        raise StorageError("disk full (simulated)")

    monkeypatch.setattr("ledger.store.stage_block", half_then_fail)
    sub = submission(MOJ, [anchor("moj", 2)], chain.now())
    with pytest.raises(StorageError, match="simulated"):
        chain.store.apply(batch([sub], chain.now()), raft_index=2)
    assert _tip(chain.store) == before
    with pytest.raises(NotFoundError):
        chain.store.leaf(1)
    chain.store.close()
    store = LedgerStore.open(chain.store.path, GENESIS, full_check=True)
    assert _tip(store) == before
    assert store.status(doc_id(2)) is None
    with pytest.raises(StorageError, match="simulated"):
        store.apply(batch([sub], chain.now()), raft_index=2)
    monkeypatch.undo()
    # The same store object goes on: nothing of the failed block lingers.
    block = store.apply(batch([sub], chain.now()), raft_index=2)
    assert block.outcomes[0].code == "ok"
    store.verify_integrity(full=True)
    store.close()


def test_reopen_gives_identical_roots_and_proofs(chain: Chain) -> None:
    _fill(chain)
    store = chain.store
    tip = _tip(store)
    final = store.latest_final()
    proofs = [store.inclusion_proof(i, 76) for i in (0, 40, 75)]
    state = store.prove_state(doc_id(3))
    root = store.header(4).log_root
    store.close()
    with LedgerStore.open(store.path, GENESIS, full_check=True) as again:
        assert _tip(again) == tip
        assert again.latest_final() == final
        assert [again.inclusion_proof(i, 76) for i in (0, 40, 75)] == proofs
        assert again.prove_state(doc_id(3)) == state
        assert again.log_root(76) == root


def test_a_store_that_does_not_sync_builds_the_same_chain(tmp_path: Path) -> None:
    """An auditor's scratch replay leaves its writes to the OS: the chain it
    builds, and what a reopen finds, are a synced store's."""
    tips = []
    for name, durable in (("synced", True), ("scratch", False)):
        with LedgerStore.open(tmp_path / name, GENESIS, durable=durable) as store:
            chain = Chain(store, AGENCIES)
            _fill(chain)
            tips.append(_tip(store))
        with LedgerStore.open(tmp_path / name, GENESIS, full_check=True) as again:
            assert _tip(again) == tips[-1]
    assert tips[0] == tips[1]


def test_open_refuses_another_chain(chain: Chain) -> None:
    chain.store.close()
    other = make_genesis(AGENCIES, origin="other.example/log")
    with pytest.raises(ConfigError, match="belongs to chain"):
        LedgerStore.open(chain.store.path, other)


def test_a_second_open_of_the_same_path_fails_cleanly(chain: Chain) -> None:
    with pytest.raises(StorageError):
        LedgerStore.open(chain.store.path, GENESIS)


# --- corruption -------------------------------------------------------------------


def _corrupt_at(path: Path, key: bytes, flip: int | None = 0) -> None:
    db = _raw_db(path)
    value = db.get(key)
    assert value is not None
    if flip is None:
        db.delete(key)
    else:
        changed = bytearray(value)
        changed[flip] ^= 0x01
        db.put(key, bytes(changed))
    db.close()


def _filled(db_path: Path) -> None:
    with LedgerStore.open(db_path, GENESIS) as store:
        _fill(Chain(store, AGENCIES))


@pytest.mark.parametrize("index,height", [(0, 1), (40, 1), (70, 2), (73, 3)])
def test_an_altered_leaf_byte_names_its_block(
    db_path: Path, index: int, height: int
) -> None:
    """Regression: one byte of one stored leaf altered anywhere in the chain."""
    _filled(db_path)
    _corrupt_at(db_path, leaf_key(index), flip=-1)
    with pytest.raises(CorruptStoreError) as err:
        LedgerStore.open(db_path, GENESIS, full_check=True)
    assert err.value.height == height


def test_the_cheap_check_catches_the_tip_block(db_path: Path) -> None:
    _filled(db_path)
    _corrupt_at(db_path, leaf_key(75), flip=-1)
    with pytest.raises(CorruptStoreError) as err:
        LedgerStore.open(db_path, GENESIS, full_check=False)
    assert err.value.height == 4


def test_default_open_checks_everything_while_small(db_path: Path) -> None:
    _filled(db_path)
    _corrupt_at(db_path, leaf_key(10), flip=-1)
    with pytest.raises(CorruptStoreError) as err:
        LedgerStore.open(db_path, GENESIS)
    assert err.value.height == 1


@pytest.mark.parametrize("missing", [1, 2, 4])
def test_a_missing_block_is_refused(db_path: Path, missing: int) -> None:
    _filled(db_path)
    _corrupt_at(db_path, block_key(missing), flip=None)
    with pytest.raises(CorruptStoreError) as err:
        LedgerStore.open(db_path, GENESIS, full_check=missing != 4)
    assert err.value.height == missing


def test_an_altered_log_node_is_refused(db_path: Path) -> None:
    _filled(db_path)
    _corrupt_at(db_path, node_key(STORED_MIN_LEVEL, 3), flip=5)
    with pytest.raises(CorruptStoreError) as err:
        LedgerStore.open(db_path, GENESIS, full_check=True)
    assert err.value.height == 1


def test_an_altered_block_header_breaks_the_chain(db_path: Path) -> None:
    _filled(db_path)
    _corrupt_at(db_path, block_key(2), flip=20)  # inside the previous hash
    with pytest.raises(CorruptStoreError) as err:
        LedgerStore.open(db_path, GENESIS, full_check=False)
    assert err.value.height == 2


def test_an_altered_status_is_refused(db_path: Path) -> None:
    _filled(db_path)
    db = _raw_db(db_path)
    key = next(k for k, _ in db.iterator(prefix=b"sv"))
    db.close()
    _corrupt_at(db_path, key, flip=-1)
    with pytest.raises(CorruptStoreError, match="state"):
        LedgerStore.open(db_path, GENESIS, full_check=True)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3), min_size=0, max_size=40, unique=True)
)
def test_state_root_of_values_matches_the_state_map(prefixes: list[bytes]) -> None:
    """Keys sharing long prefixes (chosen by issuers) are the hard case."""

    class KV:
        def __init__(self) -> None:
            self.data: dict[bytes, bytes] = {}

        def get(self, key: bytes) -> bytes | None:
            return self.data.get(key)

        def scan(
            self, start: bytes, stop: bytes, *, reverse: bool = False
        ) -> Iterator[tuple[bytes, bytes]]:
            keys = sorted(k for k in self.data if start <= k < stop)
            for k in reversed(keys) if reverse else keys:
                yield k, self.data[k]

    kv = KV()
    smap = StateMap(kv, bytes(32))
    items: dict[bytes, bytes | None] = {p.ljust(32, b"\x00"): p for p in prefixes}
    root, writes = smap.update(items)
    for key, value in writes.items():
        if value is not None:
            kv.data[key] = value
    assert state_root_of_values(kv) == root


# --- checkpoints and cosignatures ---------------------------------------------------


def test_finality_needs_a_quorum_of_distinct_agencies(chain: Chain) -> None:
    store = chain.store
    chain.apply(("moj", [anchor("moj", 1)]), final=False)
    assert store.latest_final() is None
    sigs = cosign(store, 1, [MOJ])
    assert store.add_cosignatures(1, sigs) == 1
    assert store.add_cosignatures(1, sigs) == 0  # one agency counts once
    assert store.latest_final() is None
    store.add_cosignatures(1, cosign(store, 1, [MOH]))
    final = store.latest_final()
    assert final is not None
    cp, note = final
    got, _ = verify_checkpoint(note, GENESIS.note_verifiers(), 2, origin=ORIGIN)
    assert got == cp == store.checkpoint(1)
    assert [c.agency for c in store.cosignatures(1)] == ["moh", "moj"]


def test_bad_cosignatures_are_refused(chain: Chain) -> None:
    store = chain.store
    chain.apply(("moj", [anchor("moj", 1)]), final=False)
    chain.apply(("moj", [anchor("moj", 2)]), final=False)
    wrong_height = cosign(store, 2, [MOJ])[0]
    forged = dataclasses.replace(wrong_height, height=1)
    with pytest.raises(VerificationError) as err:
        store.add_cosignatures(1, [forged])
    assert err.value.reason == "tampered"
    stranger = Agency("evil", MOJ.issuer, MOJ.issuer, MOJ.issuer)
    with pytest.raises(VerificationError) as err:
        store.add_cosignatures(1, cosign(store, 1, [stranger]))
    assert err.value.reason == "unknown_issuer"
    assert store.cosignatures(1) == []


def test_carried_cosignatures_become_final(chain: Chain) -> None:
    store = chain.store
    chain.apply(("moj", [anchor("moj", 1)]), final=False)
    carried = cosign(store, 1, [MOJ, MPI])
    chain.raft_index += 1
    store.apply(batch([], chain.now(), carried), raft_index=chain.raft_index)
    assert store.block(2).cosignatures == tuple(carried)
    final = store.latest_final()
    assert final is not None and final[0].height == 1


def test_state_proofs_at_the_final_checkpoint_behind_the_tip(chain: Chain) -> None:
    store = chain.store
    chain.apply(("moj", [anchor("moj", i) for i in range(10)]))
    final = store.latest_final()
    assert final is not None
    cp = final[0]
    chain.apply(("moj", [revoke("moj", 3), anchor("moj", 50)]), final=False)
    chain.apply(("moj", [anchor("moj", 60)]), final=False)
    for n in (3, 50, 60, 7):
        value, proof = store.prove_state(doc_id(n), height=cp.height)
        verify_state(cp.state_root, doc_id(n), value, proof)
        rec = store.status_at(doc_id(n), cp.height)
        assert (rec is not None and rec.status) == (n in (3, 7) and "valid")
    # Once the tip is final, the undo records behind it are gone.
    store.add_cosignatures(3, cosign(store, 3, [MOJ, MOH]))
    with pytest.raises(NoFinalCheckpointError):
        store.prove_state(doc_id(3), height=cp.height)


# --- nonces -----------------------------------------------------------------------


def test_nonces_are_pruned_from_the_block_time(chain: Chain) -> None:
    store = chain.store
    chain.apply(("moj", [anchor("moj", 1)]))
    sub = store.locate(0).record
    assert store.view().nonce_seen("moj", sub.nonce)
    chain.raft_index += 1
    late = T0 + 10 * 60 * 1000 + 5000
    store.apply(batch([], late), raft_index=chain.raft_index)
    assert not store.view().nonce_seen("moj", sub.nonce)


# --- disk ---------------------------------------------------------------------------


def test_disk_bytes_per_anchored_document(db_path: Path) -> None:
    """Goal: under 300 bytes per anchored document, everything included."""
    docs = 0
    with LedgerStore.open(db_path, GENESIS) as store:
        chain = Chain(store, AGENCIES)
        for b in range(6):
            chain.apply(("moj", [anchor("moj", f"{b}-{i}") for i in range(1000)]))
            docs += 1000
        chunks = list(store.export_snapshot())
    # A fresh copy of the live data is what a fully compacted store takes
    # (LevelDB keeps overwritten state nodes until it compacts them away).
    copy = db_path.with_name("copy")
    with LedgerStore.open(copy, GENESIS) as fresh:
        fresh.import_snapshot(chunks)
    size = sum(f.stat().st_size for f in copy.iterdir())
    assert size / docs < 300, size / docs


# --- snapshots ----------------------------------------------------------------------


def test_snapshot_round_trip(chain: Chain, tmp_path: Path) -> None:
    _fill(chain)
    chunks = list(chain.store.export_snapshot(chunk_bytes=2048))
    assert len(chunks) > 1
    with LedgerStore.open(tmp_path / "follower", GENESIS) as follower:
        Chain(follower, AGENCIES).apply(("moh", [anchor("moh", 9)]))
        follower.import_snapshot(iter(chunks))
        assert _tip(follower) == _tip(chain.store)
        assert follower.latest_final() == chain.store.latest_final()
        assert follower.prove_state(doc_id(3)) == chain.store.prove_state(doc_id(3))
        follower.verify_integrity(full=True)
        assert not (tmp_path / "follower.incoming").exists()


def test_a_snapshot_of_another_chain_keeps_the_old_store(
    chain: Chain, tmp_path: Path
) -> None:
    _fill(chain)
    other = make_genesis(AGENCIES, origin="other.example/log")
    with LedgerStore.open(tmp_path / "other", other) as foreign:
        chunks = list(foreign.export_snapshot())
    before = _tip(chain.store)
    with pytest.raises(ConfigError):
        chain.store.import_snapshot(chunks)
    assert _tip(chain.store) == before
    chain.store.verify_integrity(full=True)


def test_open_finishes_a_swap_interrupted_by_a_crash(
    chain: Chain, tmp_path: Path
) -> None:
    _fill(chain)
    store = chain.store
    tip = _tip(store)
    store.close()
    path = store.path
    shutil.copytree(path, tmp_path / "ledger.incoming")
    path.rename(tmp_path / "ledger.old")  # crashed between the two renames
    with LedgerStore.open(path, GENESIS) as again:
        assert _tip(again) == tip
    assert not (tmp_path / "ledger.old").exists()
    assert not (tmp_path / "ledger.incoming").exists()


def test_prefix_end() -> None:
    assert prefix_end(b"sv") == b"sw"
    assert prefix_end(b"a\xff") == b"b"


def test_a_reader_during_a_database_swap_waits_for_the_new_one(
    chain: Chain, tmp_path: Path
) -> None:
    """Consistent reads take no lock while they can; while a snapshot install
    has the database closed they wait for the swap instead of failing."""
    import threading

    _fill(chain)
    store = chain.store
    real = store._db
    closed = plyvel.DB(str(tmp_path / "closed"), create_if_missing=True)
    closed.close()
    key = doc_id(3)
    got: list[bytes | None] = []
    with store._publish:  # what import_snapshot holds while it swaps
        store._db = closed
        reader = threading.Thread(target=lambda: got.append(store.prove_state(key)[0]))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive() and not got  # waiting, not failed
        store._db = real
    reader.join(5)
    assert got == [store.prove_state(key)[0]] and got[0] is not None


def test_state_at_an_older_height_is_cheap_once_read(chain: Chain) -> None:
    """What the web application asks before building a bundle on its event
    loop: the tip's state is at hand, an older one after a first read."""
    _fill(chain)
    store = chain.store
    assert store.state_at_is_cheap(store.height)
    older = store.height - 1
    assert not store.state_at_is_cheap(older)
    store.prove_state(doc_id(3), height=older)
    assert store.state_at_is_cheap(older)
    chain.apply(("moj", [anchor("moj", 999)]))  # the tip moves on
    assert not store.state_at_is_cheap(older)
