"""The batcher's bookkeeping (node/batcher.py): where each submission of an
applied block starts in the log, which is what a receipt's leaf index is."""

from __future__ import annotations

from pathlib import Path

from ledger.store import LedgerStore
from ledger.submission import decode_submission
from node.batcher import first_leaves
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
