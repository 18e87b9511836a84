"""Agency submissions, and the operator's health, metrics and cluster routes.

A submission is answered only once its batch is committed on a quorum and
applied on this node (``wait=applied``) or covered by a final checkpoint
(``wait=final``). A follower forwards the request to the leader unchanged
and relays the leader's answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from typing import Literal

import httpx
import msgpack
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import NodeLike
from api.limits import BodyBudget, Held
from api.problems import ProblemError
from ledger.block import block_hash
from ledger.errors import (
    EncodingError,
    NotLeaderError,
)
from ledger.store import LedgerStore
from ledger.submission import (
    Submission,
    decode_submission,
    encode_submission,
)

logger = logging.getLogger(__name__)
router = APIRouter()
MSGPACK = "application/msgpack"
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
JSON = "application/json"
MEDIA_TYPES = (JSON, MSGPACK, "application/x-msgpack", "application/octet-stream")
# Bodies above this are parsed in a worker thread (node.server checks
# signatures of submissions this large there too).
OFF_LOOP_BYTES = 256 * 1024


def _node(request: Request) -> NodeLike:
    node: NodeLike = request.app.state.node
    return node


# The JSON form's members; anything else is refused, as the msgpack form
# refuses unknown fields.
JSON_FIELDS = frozenset(
    {"agency", "key_id", "nonce", "timestamp", "entries", "signature"}
)


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a member is given twice")
    return obj


def _from_json(body: bytes) -> bytes:
    """The canonical bytes of a JSON-encoded submission (UTF-8, each member
    once, no other members)."""
    try:
        obj = json.loads(body.decode("utf-8"), object_pairs_hook=_unique)
    except (ValueError, RecursionError) as exc:
        raise ProblemError("malformed", f"bad JSON submission: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProblemError("malformed", "bad JSON submission: expected an object")
    unknown = sorted(set(obj) - JSON_FIELDS)
    if unknown:
        raise ProblemError("malformed", f"bad JSON submission: unknown {unknown}")
    entries = _field(obj, "entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ProblemError(
            "malformed", "bad JSON submission: 'entries' must be a list of base64"
        )
    try:
        decoded = tuple(base64.b64decode(e, validate=True) for e in entries)
    except ValueError:
        raise ProblemError(
            "malformed", "bad JSON submission: an entry is not base64"
        ) from None
    agency = _field(obj, "agency")
    if not isinstance(agency, str):
        raise ProblemError("malformed", "bad JSON submission: 'agency' is text")
    try:
        sub = Submission(
            agency=agency,
            key_id=_hex_field(obj, "key_id"),
            nonce=_hex_field(obj, "nonce"),
            timestamp_ms=_json_int(_field(obj, "timestamp")),
            entries=decoded,
            signature=_hex_field(obj, "signature"),
        )
        return encode_submission(sub)
    except EncodingError as exc:
        raise ProblemError("malformed", f"bad JSON submission: {exc}") from exc


def _field(obj: dict[str, object], name: str) -> object:
    if name not in obj:
        raise ProblemError("malformed", f"bad JSON submission: no {name!r}")
    return obj[name]


def _hex_field(obj: dict[str, object], name: str) -> bytes:
    value = _field(obj, name)
    try:
        # Lowercase hex digits only: fromhex alone takes capitals and spaces.
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise ProblemError(
            "malformed", f"bad JSON submission: {name!r} must be hex"
        ) from None


def _json_int(value: object) -> int:
    # int() would also take 1.5, "12" or true, and raise OverflowError (a
    # 500) on 1e400, which json.loads reads as infinity.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProblemError(
            "malformed", "bad JSON submission: 'timestamp' must be an integer"
        )
    return value


async def _read_body(request: Request, held: Held) -> bytes:
    limit: int = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError("payload-too-large", f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError("payload-too-large", f"body over {limit} bytes")
        held.grow(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/v1/submissions", tags=["write"])
async def submit(
    request: Request, wait: Literal["applied", "final"] = "applied"
) -> Response:
    """Take one signed batch of 1 to 10,000 entries from one agency."""
    budget: BodyBudget = request.app.state.body_budget
    with budget.hold() as held:
        return await _submit(request, wait, held)


async def _submit(
    request: Request, wait: Literal["applied", "final"], held: Held
) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype not in MEDIA_TYPES:
        raise ProblemError(
            "unsupported-media-type", "send application/msgpack or application/json"
        )
    body = await _read_body(request, held)
    # Parsing megabytes takes milliseconds: off the event loop, which runs
    # Raft, for a large body.
    if len(body) > OFF_LOOP_BYTES:
        raw, sub = await asyncio.to_thread(_parse, body, ctype)
    else:
        raw, sub = _parse(body, ctype)
    node = _node(request)
    started = time.perf_counter()
    try:
        # The leader charges the agency's rate bucket only once the signature,
        # the time window and the nonce hold: neither forged submissions
        # naming an agency nor replays of its public ones can spend its
        # quota, and a forwarded request is charged once, by the leader.
        accepted = await node.submit(
            raw,
            wait_final=wait == "final",
            admit=request.app.state.limiter.check,
            decoded=sub,
            # Checked: it is the agency's own (or refused), so its bytes
            # leave the budget while it waits for its block.
            checked=held.release,
        )
    except NotLeaderError:
        # Held while forwarded: nothing is checked here, and the body stays
        # in memory until the leader answers.
        return await _forward(request, raw, wait)
    request.app.state.metrics.commit_latency.observe(time.perf_counter() - started)
    # 202: committed and applied, but no final checkpoint covered it within
    # the node's submit timeout; the receipts hold, finality is to come.
    final: bool = accepted.final  # type: ignore[attr-defined]
    return Response(
        orjson.dumps(_receipts(node, accepted, sub, wait == "final" and final)),
        status_code=200 if final else 202,
        media_type="application/json",
    )


def _parse(body: bytes, ctype: str) -> tuple[bytes, Submission]:
    """The canonical bytes of the submission in ``body``, and it decoded."""
    raw = _from_json(body) if ctype == JSON else body
    try:
        return raw, decode_submission(raw)
    except EncodingError as exc:
        raise ProblemError("malformed", str(exc)) from exc


def _receipts(
    node: NodeLike, accepted: object, sub: Submission, with_checkpoint: bool
) -> dict[str, object]:
    block = accepted.block  # type: ignore[attr-defined]
    first: int = accepted.first_leaf  # type: ignore[attr-defined]
    header = block.header
    receipts = []
    for i, data in enumerate(sub.entries):
        # Plain msgpack: the submission was accepted, so every entry was
        # decoded and checked when its block was applied (decode_entry
        # again cost each single submission about 9 us of the leader's loop).
        entry = msgpack.unpackb(data)
        doc_id = entry.get("doc_id", entry.get("old_doc_id"))
        receipts.append(
            {
                "kind": entry["kind"],
                "doc_id": None if doc_id is None else doc_id.hex(),
                "leaf_index": first + i,
                "block_height": header.height,
            }
        )
    note: str | None = None
    if with_checkpoint:
        got = node.store.latest_final()
        note = None if got is None else got[1]
    return {
        "status": "accepted",
        "height": header.height,
        "block_hash": block_hash(header).hex(),
        "first_leaf": first,
        "receipts": receipts,
        "checkpoint": note,
    }


async def _forward(request: Request, raw: bytes, wait: str) -> Response:
    node = _node(request)
    url = node.leader_url()
    if url is None or request.headers.get("x-ledger-forwarded"):
        raise ProblemError(
            "unavailable",
            "no leader is known; try again shortly",
            headers={"Retry-After": "1"},
        )
    client: httpx.AsyncClient = request.app.state.http
    try:
        resp = await client.post(
            f"{url}/v1/submissions",
            params={"wait": wait},
            content=raw,
            headers={"content-type": MSGPACK, "x-ledger-forwarded": node.agency},
        )
    except httpx.HTTPError as exc:
        raise ProblemError(
            "unavailable", f"leader unreachable: {exc}", headers={"Retry-After": "1"}
        ) from exc
    # The leader's Retry-After (429, 503) is what the client must honour.
    relayed = {k: v for k, v in resp.headers.items() if k.lower() == "retry-after"}
    return Response(
        resp.content,
        status_code=resp.status_code,
        headers=relayed,
        media_type=resp.headers.get("content-type", "application/json"),
    )


# HEAD too, as on every GET route (api.app.HeadAsGet).
@router.get("/healthz", tags=["operator"])
def healthz(request: Request) -> dict[str, object]:
    """Liveness: the node runs and its store is open; 503 once its agency
    has left the trust list (the node then only serves what it had)."""
    node = _node(request)
    if _removed(node.store, node.agency):
        raise ProblemError(
            "unavailable",
            f"agency {node.agency} was removed from the trust list at block "
            f"{node.store.height} or before; this node takes no part any more: "
            "stop it",
        )
    return {"status": "ok", "agency": node.agency, "height": node.store.height}


def _removed(store: LedgerStore, agency: str) -> bool:
    """Whether ``agency`` was in an earlier trust list and is not in the
    current one. A newcomer is in none until its ``add_agency`` applies,
    and is healthy meanwhile."""
    trust = store.trust
    if any(a.id == agency for a in trust.agencies):
        return False
    return any(
        any(a.id == agency for a in store.trust_list(version).agencies)
        for version in range(1, trust.version)
    )


@router.get("/v1/cluster", tags=["operator"])
def cluster(request: Request) -> dict[str, object]:
    """Raft role, term, leader, commit and applied index, members."""
    return _node(request).cluster_info()


@router.get("/metrics", tags=["operator"])
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    body, ctype = request.app.state.metrics.render()
    return Response(body, media_type=ctype)
