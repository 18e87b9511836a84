"""Anchor leaves for the benchmarks, made fast."""

from __future__ import annotations

import os

from ledger.entries import Anchor, encode_entry


class LeafMaker:
    """Realistic, distinct anchor leaves without encoding each one.

    One anchor is encoded canonically, then copies get a fresh random
    doc_id at the doc_id's offset: the same bytes ``encode_entry`` would
    give, at a fraction of the cost (making leaves is the client's work).
    """

    def __init__(self, issuer: str = "agency-01") -> None:
        marker = bytes(range(1, 33))
        template = encode_entry(
            Anchor(
                issuer=issuer,
                doc_id=marker,
                doc_type="criminal_record",
                issued_at=1_767_225_600_000,
            )
        )
        self.offset = template.index(marker)
        self.head = template[: self.offset]
        self.tail = template[self.offset + 32 :]

    def leaves(self, count: int) -> list[bytes]:
        ids = os.urandom(32 * count)
        head, tail = self.head, self.tail
        return [head + ids[i : i + 32] + tail for i in range(0, 32 * count, 32)]
