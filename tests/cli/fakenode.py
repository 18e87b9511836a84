"""A fake node for the client tests: the HTTP API over a ``LocalChain``.

Each accepted submission becomes one block at once (and a final checkpoint,
so bundles can be built); answers follow docs/internals.md "HTTP details".
Only what the command line calls is served.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from cli.sources import store_document
from ledger.block import OK, block_hash, encode_block
from ledger.bundle import build_bundle
from ledger.bundle_binary import MEDIA_TYPE as BINARY_MEDIA_TYPE
from ledger.bundle_binary import encode_bundle
from ledger.entries import Anchor, Record, Revoke, Supersede, decode_entry
from ledger.errors import EncodingError
from ledger.submission import decode_submission
from tests.cli.chain import LocalChain

NODE = "http://fake.node:7200"
PROBLEMS = "https://agency-ledger.example/problems/"


def problem(status: int, slug: str, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": PROBLEMS + slug, "title": slug, "status": status, "detail": detail}
    return httpx.Response(
        status,
        content=json.dumps({**body, **extra}),
        headers={"content-type": "application/problem+json"},
    )


class FakeNode:
    def __init__(self, chain: LocalChain, *, public_url: str = NODE) -> None:
        self.chain = chain
        self.public_url = public_url
        self.submissions: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        store = self.chain.store
        if request.method == "POST" and path == "/v1/submissions":
            self.submissions.append(request)
            return self.submit(request)
        if path == "/v1/trust":
            return httpx.Response(
                200,
                json={
                    "origin": self.chain.trust.origin,
                    "chain_id": store.chain_id.hex(),
                    "trust_list": self.chain.trust.to_json(),
                },
            )
        if path == "/v1/cluster":
            return httpx.Response(
                200,
                json={
                    "agency": "police",
                    "role": "leader",
                    "leader": "police",
                    "height": store.height,
                    "tree_size": store.tree_size,
                    "members": [{"id": "police", "voter": True, "api_url": NODE}],
                },
            )
        if path.startswith("/v1/documents/"):
            doc_id = bytes.fromhex(path.split("/")[3])
            if path.endswith("/bundle"):
                bundle = build_bundle(store, doc_id)
                if request.url.params.get("format") == "binary":
                    return httpx.Response(
                        200,
                        content=encode_bundle(bundle),
                        headers={"content-type": BINARY_MEDIA_TYPE},
                    )
                return httpx.Response(200, json=bundle)
            doc = store_document(store, doc_id)
            if doc is None:
                return problem(404, "not-found", "no such document")
            return httpx.Response(200, json=doc)
        if path == "/v1/checkpoint":
            final = store.latest_final()
            if final is None:
                return problem(404, "not-found", "no final checkpoint")
            cp, note = final
            return httpx.Response(
                200,
                json={
                    "origin": cp.origin,
                    "size": cp.size,
                    "root": cp.root.hex(),
                    "state_root": cp.state_root.hex(),
                    "height": cp.height,
                    "time": cp.time_ms,
                    "note": note,
                },
            )
        if path == "/v1/blocks":
            start = int(request.url.params["start"])
            limit = int(request.url.params["limit"])
            blocks = store.blocks(start, limit) if start <= store.height else []
            return httpx.Response(
                200,
                json={
                    "blocks": [
                        {
                            "height": b.header.height,
                            "hash": block_hash(b.header).hex(),
                            "raw": base64.b64encode(encode_block(b)).decode(),
                        }
                        for b in blocks
                    ]
                },
            )
        if path == "/v1/leaves":
            start = int(request.url.params["start"])
            end = int(request.url.params["end"])
            leaves = store.leaves(start, end)
            return httpx.Response(
                200, json={"leaves": [base64.b64encode(x).decode() for x in leaves]}
            )
        if path == "/v1/proofs/inclusion":
            proof = store.inclusion_proof(
                int(request.url.params["index"]), int(request.url.params["size"])
            )
            return httpx.Response(200, json={"proof": [p.hex() for p in proof]})
        if path == "/v1/proofs/consistency":
            proof = store.consistency_proof(
                int(request.url.params["first"]), int(request.url.params["second"])
            )
            return httpx.Response(200, json={"proof": [p.hex() for p in proof]})
        return problem(404, "not-found", path)

    def submit(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("content-type") != "application/msgpack":
            return problem(415, "unsupported-media-type", "msgpack please")
        raw = request.content
        try:
            sub = decode_submission(raw)
        except EncodingError as exc:
            return problem(400, "malformed", str(exc))
        # Submissions are signed "now"; the fake leader's clock follows.
        self.chain.time_ms = max(self.chain.time_ms, sub.timestamp_ms)
        block = self.chain.block([raw])
        outcome = block.outcomes[0]
        if outcome.code != OK:
            return problem(
                422,
                "invalid-submission",
                "refused",
                reason=outcome.code,
                entry=outcome.entry,
            )
        self.chain.finalize()
        first = block.header.first_leaf
        receipts = []
        for i, data in enumerate(sub.entries):
            entry = decode_entry(data)
            doc_id = None
            if isinstance(entry, Anchor | Revoke):
                doc_id = entry.doc_id.hex()
            elif isinstance(entry, Supersede):
                doc_id = entry.old_doc_id.hex()
            elif isinstance(entry, Record):
                doc_id = None
            receipts.append(
                {
                    "kind": type(entry).__name__.lower(),
                    "doc_id": doc_id,
                    "leaf_index": first + i,
                    "block_height": block.header.height,
                }
            )
        wait = request.url.params.get("wait", "applied")
        final = self.chain.store.latest_final()
        return httpx.Response(
            200,
            json={
                "status": "accepted",
                "height": block.header.height,
                "block_hash": block_hash(block.header).hex(),
                "first_leaf": first,
                "receipts": receipts,
                "checkpoint": final[1] if wait == "final" and final else None,
            },
        )
