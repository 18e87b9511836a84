"""``node.integrity.IntegrityWalk``: the full walk ``LedgerStore.open`` leaves
to the node for a large store finds one altered byte of a leaf and reports
it, naming the block, through the node's fatal path; it passes an honest
store, rests between blocks, and ends when asked to."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest

from cli.cluster import ClusterLayout, init_cluster
from ledger.entries import Anchor, encode_entry
from ledger.errors import CorruptStoreError
from ledger.keys import SigningKey
from ledger.rules import BatchInput
from ledger.store import FULL_CHECK_MAX_LEAVES, LedgerStore
from ledger.store_keys import leaf_key
from ledger.submission import encode_submission, sign_submission
from node.integrity import IntegrityWalk
from tests.ledger.store_helpers import Chain, anchor, make_agencies, make_genesis
from tests.node.harness import NODE_COMMAND, ROOT, free_base_port, now_ms

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger"
    with LedgerStore.open(path, GENESIS) as store:
        chain = Chain(store, AGENCIES)
        for block in range(5):
            chain.apply(("moj", [anchor("moj", block * 100 + i) for i in range(40)]))
    return path


@pytest.fixture
def store(path: Path) -> Iterator[LedgerStore]:
    with LedgerStore.open(path, GENESIS, full_check=False) as store:
        yield store


def _alter_leaf(path: Path, index: int) -> None:
    db = plyvel.DB(str(path))
    value = db.get(leaf_key(index))
    assert value is not None
    db.put(leaf_key(index), value[:-1] + bytes([value[-1] ^ 1]))
    db.close()


def _walk(store: LedgerStore, *, rest: float = 0.0) -> list[BaseException]:
    fatal: list[BaseException] = []

    async def main() -> None:
        walk = IntegrityWalk(store, fatal.append, rest=rest)
        walk.start(asyncio.get_running_loop())
        await asyncio.to_thread(walk.done.wait, 30)
        await asyncio.sleep(0)  # the fatal call the walk scheduled

    asyncio.run(main())
    return fatal


def test_an_altered_leaf_is_reported_naming_its_block(path: Path) -> None:
    # Leaf 130 is in the fourth block (40 leaves each).
    _alter_leaf(path, 130)
    with LedgerStore.open(path, GENESIS, full_check=False) as store:
        (error,) = _walk(store)
    assert isinstance(error, CorruptStoreError)
    assert error.height == 4


def test_an_honest_store_passes_and_the_walk_rests_between_blocks(
    store: LedgerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rests: list[float] = []
    real_wait = threading.Event.wait

    def wait(self: threading.Event, timeout: float | None = None) -> bool:
        if timeout is not None and threading.current_thread().name == "integrity":
            rests.append(timeout)
        return real_wait(self, timeout)

    monkeypatch.setattr(threading.Event, "wait", wait)
    assert _walk(store, rest=2.0) == []
    # Twice as long as each of the four blocks after the first took.
    assert len(rests) == 4 and all(r > 0 for r in rests)


def test_the_walk_ends_when_the_node_stops(store: LedgerStore) -> None:
    fatal: list[BaseException] = []

    async def main() -> bool:
        walk = IntegrityWalk(store, fatal.append, rest=1_000.0)  # would take ages
        walk.start(asyncio.get_running_loop())
        await asyncio.sleep(0.2)
        await walk.stop()
        return walk.done.is_set()

    assert asyncio.run(main())
    assert fatal == []


def test_only_a_store_open_did_not_walk_needs_it(store: LedgerStore) -> None:
    assert store.tree_size <= FULL_CHECK_MAX_LEAVES
    assert not IntegrityWalk.needed(store)


def test_a_node_on_a_large_altered_store_serves_then_stops_naming_the_block(
    tmp_path: Path,
) -> None:
    """Past FULL_CHECK_MAX_LEAVES, ``open`` checks only the tip so the node
    serves at once; the walk then finds the altered leaf and the node
    process stops, naming the block (as a small store refuses to start)."""
    cluster = tmp_path / "cluster"
    layout = ClusterLayout(agencies=("police",), base_port=free_base_port(1))
    trust = init_cluster(cluster, layout)
    issuer = SigningKey.load(cluster / "police" / "issuer.key")
    path = cluster / "police" / "data" / "ledger"
    path.parent.mkdir(parents=True)
    per_block = 10_000
    blocks = FULL_CHECK_MAX_LEAVES // per_block + 1
    now = now_ms()
    with LedgerStore.open(path, trust) as built:
        for height in range(1, blocks + 1):
            ids = [b"%d" % (height * per_block + i) for i in range(per_block)]
            entries = [
                encode_entry(
                    Anchor(
                        issuer="police",
                        doc_id=hashlib.sha256(n).digest(),
                        doc_type="criminal_record",
                        issued_at=now,
                    )
                )
                for n in ids
            ]
            sub = sign_submission(trust.origin, "police", entries, issuer)
            batch = BatchInput(time_ms=now, submissions=(encode_submission(sub),))
            built.apply(batch, raft_index=height)
    _alter_leaf(path, per_block + 7)  # in block 2
    config = cluster / "police" / "node.toml"
    node = subprocess.Popen(
        [*NODE_COMMAND, str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = node.communicate(timeout=120)
    finally:
        node.kill()
    assert node.returncode not in (0, None), out
    assert "integrity walk started" in out, out
    assert "store corrupt at height=2" in out, out
