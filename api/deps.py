"""What the routes need from a node, and the parsing of path and query values.

The routes see the node through ``NodeLike`` so that the web application
does not depend on how the node drives Raft.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Final, Protocol

import orjson
from fastapi import Response

from api.problems import ProblemError
from ledger.block import Block, block_hash, encode_block
from ledger.store import LedgerStore
from ledger.submission import Submission, decode_submission

HEX64: Final = re.compile(r"[0-9a-f]{64}")


class NodeLike(Protocol):
    """The node as the web application sees it (``node.server.Node``)."""

    store: LedgerStore
    agency: str

    @property
    def is_leader(self) -> bool: ...

    def leader_url(self) -> str | None: ...

    def cluster_info(self) -> dict[str, object]: ...

    async def submit(
        self,
        raw: bytes,
        *,
        wait_final: bool = False,
        admit: Callable[[str], None] | None = None,
        decoded: Submission | None = None,
        checked: Callable[[], None] | None = None,
    ) -> object: ...


def json_response(body: object) -> Response:
    """A JSON answer written straight from plain values.

    Routes hand over dicts of str, int, None and lists only, so the generic
    encoder FastAPI applies to returned values (which walks every value) is
    pure cost on the busiest reads (bundles, proofs).
    """
    return Response(orjson.dumps(body), media_type="application/json")


def parse_doc_id(value: str, *, parameter: str = "doc_id") -> bytes:
    """A document id from a URL: 64 lowercase hex digits.

    ``parameter`` is the name the route gives it, which the ``invalid-hex``
    problem names (its documented ``parameter`` member).
    """
    if not HEX64.fullmatch(value):
        raise ProblemError(
            "invalid-hex",
            "a document id is 64 lowercase hexadecimal digits",
            extra={"parameter": parameter},
        )
    return bytes.fromhex(value)


def block_json(block: Block, *, raw: bool = False) -> dict[str, object]:
    """A block as the API shows it: header, submissions and their outcomes."""
    h = block.header
    subs: list[dict[str, object]] = []
    for data, outcome in zip(block.submissions, block.outcomes, strict=True):
        item: dict[str, object] = {
            "sha256": _sha256_hex(data),
            "outcome": outcome.code,
            "entry": outcome.entry,
        }
        try:
            sub = decode_submission(data)
            item.update(agency=sub.agency, entries=len(sub.entries))
        except Exception:
            item.update(agency=None, entries=None)
        subs.append(item)
    out: dict[str, object] = {
        "height": h.height,
        "hash": block_hash(h).hex(),
        "prev_hash": h.prev_hash.hex(),
        "time": h.time_ms,
        "first_leaf": h.first_leaf,
        "tree_size": h.tree_size,
        "log_root": h.log_root.hex(),
        "state_root": h.state_root.hex(),
        "body_hash": h.body_hash.hex(),
        "trust_version": h.trust_version,
        "submissions": subs,
        "cosignatures": [
            {"height": c.height, "agency": c.agency, "signature": c.signature.hex()}
            for c in block.cosignatures
        ],
    }
    if raw:
        out["raw"] = base64.b64encode(encode_block(block)).decode()
    return out


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
