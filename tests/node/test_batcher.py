"""The batcher's bookkeeping (node/batcher.py): where each submission of an
applied block starts in the log, which is what a receipt's leaf index is;
when an idle leader's empty block is due."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ledger.block import Cosignature
from ledger.errors import CommitTimeoutError
from ledger.store import LedgerStore
from ledger.submission import decode_submission
from node.batcher import Batcher, Deadlines, Pending, first_leaves
from tests.ledger.store_helpers import (
    T0,
    anchor,
    batch,
    make_agencies,
    make_genesis,
    revoke,
    submission,
)


def test_first_leaves_skip_rejected_submissions_and_match_the_stored_leaves(
    tmp_path: Path,
) -> None:
    agencies = make_agencies()
    with LedgerStore.open(tmp_path / "ledger", make_genesis(agencies)) as store:
        first = [submission(agencies["moj"], [anchor("moj", "a")], T0)]
        store.apply(batch(first, T0), raft_index=1)
        subs = [
            submission(agencies["moj"], [anchor("moj", i) for i in range(3)], T0),
            # moh revoking moj's document: rejected, so it adds no leaves.
            submission(agencies["moh"], [revoke("moh", "a")], T0),
            submission(agencies["mpi"], [anchor("mpi", "b")], T0),
            submission(agencies["moj"], [anchor("moj", 7), anchor("moj", 8)], T0),
        ]
        block = store.apply(batch(subs, T0 + 1), raft_index=2)
        assert [o.code for o in block.outcomes] == ["ok", "not_owner", "ok", "ok"]
        starts = first_leaves(block)
        assert starts == [1, 4, 4, 5]
        for i, start in enumerate(starts):
            if block.outcomes[i].code != "ok":
                continue
            entries = decode_submission(subs[i]).entries
            for offset, leaf in enumerate(entries):
                assert store.leaf(start + offset) == leaf
        assert starts[-1] + 2 == block.header.tree_size


def test_an_empty_block_is_due_only_when_idle_for_refresh_ms() -> None:
    """What keeps an idle ledger's checkpoints fresh (Node._maybe_refresh)."""
    batcher = Batcher(max_submissions=10, max_entries=100, max_wait_ms=5)
    assert not batcher.refresh_due(10**9, 0, 0)  # refresh_ms None: never
    batcher.refresh_ms = 1_000
    assert not batcher.refresh_due(1_999, 1_000, 0)
    assert batcher.refresh_due(2_000, 1_000, 0)
    assert not batcher.refresh_due(2_000, 1_000, 1)  # a proposal in flight
    loop = asyncio.new_event_loop()
    try:
        batcher.add(Pending(b"raw", 1, 1_000, loop.create_future()))
        assert not batcher.refresh_due(5_000, 1_000, 0)  # a submission waits
    finally:
        loop.close()
    batcher.queue.clear()
    batcher.queued_entries = 0
    sig = Cosignature(height=3, agency="moj", signature=b"\x01" * 64)
    batcher.add_cosignature(sig)
    empty = batcher.empty(2_000)
    assert (empty.time_ms, empty.submissions, empty.cosignatures) == (2_000, (), (sig,))
    assert batcher.cosignatures == {}


def test_a_submission_not_applied_in_time_fails_with_a_timeout() -> None:
    """Node.submit's deadline: one sweep a tick, not a timer each."""
    loop = asyncio.new_event_loop()
    try:
        deadlines = Deadlines()
        first, second, third = (loop.create_future() for _ in range(3))
        deadlines.add(10.0, first)
        deadlines.add(11.0, second)
        deadlines.add(12.0, third)
        second.set_result(None)
        deadlines.expire(9.0)
        assert not first.done() and len(deadlines.waiting) == 3
        deadlines.expire(10.5)
        assert isinstance(first.exception(), CommitTimeoutError)
        # The resolved one behind it leaves untouched; the next waits on.
        assert second.result() is None and not third.done()
        assert [f for _, f in deadlines.waiting] == [third]
        third.set_result(None)
        deadlines.expire(10.6)  # resolved before its deadline: gone
        assert not deadlines.waiting
    finally:
        loop.close()
