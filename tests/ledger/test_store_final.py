"""Finality: the search for the latest final checkpoint reads little."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ledger.store import LedgerStore
from ledger.store_final import Finality
from ledger.store_keys import COSIG, LevelKV
from tests.ledger.store_helpers import Chain, anchor, make_agencies, make_genesis

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)


class _CountingKV:
    """A store's reads, counting the pairs the full cosignature scan yields."""

    def __init__(self, kv: LevelKV) -> None:
        self.kv = kv
        self.scanned = 0

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        for pair in self.kv.scan(start, stop, reverse=reverse):
            if start == COSIG:
                self.scanned += 1
            yield pair


def test_a_new_trust_list_search_reads_from_the_top_only(tmp_path: Path) -> None:
    # After a trust-list change every height may need a look (a rotated key
    # can take finality away), but the search runs under the writer lock:
    # it reads cosignatures from the top and stops at the first final one,
    # rather than reading every cosignature of the chain first.
    with LedgerStore.open(tmp_path / "db", GENESIS) as store:
        chain = Chain(store, AGENCIES)
        for i in range(40):
            chain.apply(("moj", [anchor("moj", i)]))
        chain.apply(("moj", [anchor("moj", 99)]), final=False)
        kv = _CountingKV(LevelKV(store._db))
        final, changed = Finality().latest(kv, store.trust, store.checkpoint)
        assert changed and final is not None
        assert final[0] == store.checkpoint(40)  # the tip is not final
        assert kv.scanned == 1  # the one record of height 40's cosignatures
