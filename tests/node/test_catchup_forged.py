"""Catch-up takes nothing on a peer's word (node.catchup).

A lagging follower is given, through Raft, a snapshot naming a height and a
block hash. A peer that serves well-formed blocks of another chain (real
submissions left out, another batch time) must be refused before any of its
blocks is stored; an honest peer brings the follower to the snapshot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI

from api import routes_read
from api.problems import install_problem_handlers
from consensus.messages import Snapshot
from ledger.errors import ConsensusError
from ledger.store import LedgerStore
from node.catchup import catch_up, snapshot_data
from tests.api.browser import serve
from tests.ledger.store_helpers import (
    Chain,
    anchor,
    make_agencies,
    make_genesis,
)

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)


def _chain(path: Path, tag: str, blocks: int) -> LedgerStore:
    store = LedgerStore.open(path, GENESIS)
    chain = Chain(store, AGENCIES)
    for k in range(blocks):
        chain.apply(("moj", [anchor("moj", f"{tag}-{k}-{i}") for i in range(3)]))
    return store


def _peer_app(store: LedgerStore) -> FastAPI:
    app = FastAPI()
    app.state.node = SimpleNamespace(store=store)
    install_problem_handlers(app)
    app.include_router(routes_read.router)
    return app


def _snapshot_of(store: LedgerStore) -> Snapshot:
    return Snapshot(
        index=store.applied_index + 100,
        term=1,
        data=snapshot_data(store.height, store.last_hash),
    )


def test_a_peer_serving_another_chain_is_refused_before_anything_is_stored(
    tmp_path: Path,
) -> None:
    honest = _chain(tmp_path / "honest", "real", 5)
    forged = _chain(tmp_path / "forged", "fake", 5)
    follower = LedgerStore.open(tmp_path / "follower", GENESIS)
    with serve(_peer_app(forged)) as url, pytest.raises(ConsensusError):
        asyncio.run(catch_up(follower, _snapshot_of(honest), [url], timeout_s=1.0))
    assert follower.height == 0
    assert follower.tree_size == 0


def test_an_honest_peer_brings_the_follower_to_the_snapshot(tmp_path: Path) -> None:
    honest = _chain(tmp_path / "honest", "real", 5)
    follower = LedgerStore.open(tmp_path / "follower", GENESIS)
    snap = _snapshot_of(honest)
    with serve(_peer_app(honest)) as url:
        asyncio.run(catch_up(follower, snap, [url], timeout_s=10.0))
    assert follower.height == honest.height
    assert follower.last_hash == honest.last_hash
    assert follower.state_root == honest.state_root
    assert follower.applied_index == snap.index
