"""The cosigner: what a node signs, on a real store (the network is a list)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.keys import SigningKey
from ledger.store import LedgerStore
from node.cosign import MAX_AHEAD_MS, Cosigner
from node.frames import cosig_frame
from tests.ledger.store_helpers import (
    Chain,
    anchor,
    cosign,
    make_agencies,
    make_genesis,
)

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)


class _Links:
    """The peer links: records every frame broadcast."""

    def __init__(self, agency: str, key: SigningKey) -> None:
        self.agency = agency
        self.key = key
        self.sent: list[bytes] = []

    def broadcast(self, frame: bytes) -> None:
        self.sent.append(frame)


@pytest.mark.parametrize(
    ("clock_behind_ms", "signs"),
    [(0, True), (MAX_AHEAD_MS - 1_000, True), (MAX_AHEAD_MS + 1_000, False)],
    ids=["in-time", "just-within", "from-the-future"],
)
def test_a_checkpoint_from_the_future_is_not_cosigned(
    tmp_path: Path, clock_behind_ms: int, signs: bool
) -> None:
    # The leader alone stamps a block's time; a checkpoint dated ahead of
    # this node's clock must not get its signature (it would go final and
    # then never look stale to a verifier, and expire documents early).
    with LedgerStore.open(tmp_path / "db", GENESIS) as store:
        chain = Chain(store, AGENCIES)
        chain.apply(("moj", [anchor("moj", 1)]), final=False)
        block_time = store.checkpoint(1).time_ms
        links = _Links("moh", AGENCIES["moh"].node)
        cosigner = Cosigner(
            store=store, peers=links, now_ms=lambda: block_time - clock_behind_ms
        )
        # A peer's signature that came before the block was applied here.
        (early,) = cosign(store, 1, [AGENCIES["moj"]])
        cosigner._orphans.append(early)
        cosigner.sign(1)
        signers = {sig.agency for sig in store.cosignatures(1)}
        if signs:
            own = [s for s in store.cosignatures(1) if s.agency == "moh"]
            assert signers == {"moj", "moh"}
            assert links.sent == [cosig_frame(tuple(own))]
        else:
            assert signers == {"moj"}  # the peer's is still taken
            assert links.sent == []
