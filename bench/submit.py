"""Signed submissions for the cluster benchmarks, and the check of their
receipts.

Requests are made lazily, one per ``next()``, so a time-bounded run signs
only what it sends. Each anchor gets a fresh random doc_id; the ``Ledger``
record keeps, for every acknowledged anchor, the leaf bytes sent and the
leaf index its receipt names, so the check afterwards can compare every
node's leaf at that index byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from bench.http1 import Reply, TransportError
from bench.leaves import LeafMaker
from bench.load import (
    KEEP_ERRORS,
    LostWriteError,
    Request,
    get_json,
    verify_documents,
)
from ledger.keys import SigningKey
from ledger.submission import encode_submission, sign_submission

MSGPACK: Final = "application/msgpack"
LEAVES_PAGE: Final = 1_000  # the API's cap per /v1/leaves request


@dataclass(frozen=True, slots=True)
class Issuer:
    agency: str
    key: SigningKey
    maker: LeafMaker


@dataclass(slots=True)
class Ledger:
    """Every anchor a node acknowledged: doc_id hex -> (leaf index, bytes)."""

    origin: str
    issuers: Sequence[Issuer]
    sent: dict[str, bytes] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    _turn: int = 0

    def submission(self, url: str, entries: int) -> Request:
        """One signed submission of ``entries`` fresh anchors to ``url``;
        the agencies take turns."""
        issuer = self.issuers[self._turn % len(self.issuers)]
        self._turn += 1
        leaves = issuer.maker.leaves(entries)
        sub = sign_submission(self.origin, issuer.agency, leaves, issuer.key)
        off = issuer.maker.offset
        tags = tuple(leaf[off : off + 32].hex() for leaf in leaves)
        for tag, leaf in zip(tags, leaves, strict=True):
            self.sent[tag] = leaf
        return Request(
            "POST",
            f"{url}/v1/submissions",
            encode_submission(sub),
            (("content-type", MSGPACK),),
            entries,
            tags,
        )

    def requests(self, url: str, entries: int) -> Iterator[Request]:
        """Endless submissions of ``entries`` anchors each."""
        while True:
            yield self.submission(url, entries)

    def accept(self, req: Request, reply: Reply) -> str | None:
        """None when ``reply`` acknowledges every anchor of ``req``."""
        if reply.status_code != 200:
            return f"{reply.status_code} {reply.text[:200]}"
        try:
            body = reply.json()
            assert isinstance(body, dict)
            receipts = body["receipts"]
        except (ValueError, KeyError, TypeError, AssertionError):
            return f"not a receipt: {reply.text[:200]}"
        if body.get("status") != "accepted" or len(receipts) != req.items:
            return f"not accepted whole: {reply.text[:200]}"
        for tag, receipt in zip(req.tags, receipts, strict=True):
            if receipt.get("doc_id") != tag:
                return f"receipt names {receipt.get('doc_id')}, sent {tag}"
        for tag, receipt in zip(req.tags, receipts, strict=True):
            self.acked[tag] = int(receipt["leaf_index"])
        return None


async def check_leaves(node_urls: Sequence[str], ledger: Ledger) -> None:
    """Every acknowledged anchor is, on every node, the leaf its receipt
    names, byte for byte. ``LostWriteError`` otherwise."""
    if not ledger.acked:
        return
    by_index = {index: ledger.sent[tag] for tag, index in ledger.acked.items()}
    top = max(by_index) + 1
    for url in node_urls:
        wrong: list[int] = []
        for start in range(0, top, LEAVES_PAGE):
            end = min(start + LEAVES_PAGE, top)
            try:
                page = await get_json(f"{url}/v1/leaves?start={start}&end={end}")
                assert isinstance(page, dict)
                served = page["leaves"]
            except (TransportError, ValueError, KeyError, AssertionError) as exc:
                raise LostWriteError(
                    f"{url} cannot serve leaves [{start}, {end}): {exc}"
                ) from exc
            for offset, text in enumerate(served):
                want = by_index.get(start + offset)
                if want is not None and base64.b64decode(text) != want:
                    wrong.append(start + offset)
            wrong += [i for i in range(start + len(served), end) if i in by_index]
        if wrong:
            raise LostWriteError(
                f"{url}: {len(wrong)} acknowledged anchors are not the leaf "
                f"their receipt names (first leaf indexes {wrong[:KEEP_ERRORS]})"
            )


async def check_documents(
    node_urls: Sequence[str],
    doc_ids: Sequence[str],
    *,
    concurrency: int,
    limit: int | None,
) -> int:
    """``GET /v1/documents/{doc_id}`` on every node for ``doc_ids`` (a
    random ``limit`` of them when given); returns how many were read."""
    chosen = list(doc_ids)
    if limit is not None and len(chosen) > limit:
        chosen = random.Random(11).sample(chosen, limit)
    await verify_documents(node_urls, chosen, concurrency=concurrency)
    return len(chosen)


async def leader_url(node_urls: Sequence[str], *, timeout_s: float) -> str:
    """The API URL of the leader the reachable nodes agree on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        votes: collections.Counter[str] = collections.Counter()
        for url in node_urls:
            try:
                info = await get_json(f"{url}/v1/cluster")
            except (TransportError, ValueError):
                continue
            if not isinstance(info, dict):
                continue
            if info.get("role") == "leader":
                votes[url] += 2
            elif isinstance(info.get("leader_url"), str):
                votes[str(info["leader_url"]).rstrip("/")] += 1
        if votes:
            best, count = votes.most_common(1)[0]
            if count >= 2 and best in node_urls:
                return best
        if loop.time() > deadline:
            raise RuntimeError(f"no leader among {list(node_urls)}")
        await asyncio.sleep(0.05)
