"""The public read API over the log: trust list, checkpoint, proofs, leaves, blocks.

Every answer comes from the node's own store. A proof is only served for
sizes the store holds, so the node never serves a proof it cannot back.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.deps import NodeLike, block_json, json_response
from api.problems import ProblemError
from ledger.keys import verifier_key_string

router = APIRouter()
MAX_LEAVES = 1000
MAX_BLOCKS = 100
# A page of blocks stops once its submissions reach this many bytes (after
# at least one block): a hundred blocks of 10,000 entries would be a
# response of hundreds of megabytes, held in the node's memory at once.
MAX_PAGE_SUBMISSION_BYTES = 8 << 20
UINT = Annotated[int, Query(ge=0, le=2**63 - 1)]


def _node(request: Request) -> NodeLike:
    node: NodeLike = request.app.state.node
    return node


@router.get("/v1/trust", tags=["read"])
def trust(request: Request) -> Response:
    """The trust list in force, with verifier key strings for node keys."""
    tl = _node(request).store.trust
    return json_response(
        {
            "origin": tl.origin,
            "version": tl.version,
            "quorum": tl.quorum,
            "chain_id": _node(request).store.chain_id.hex(),
            "agencies": [
                {
                    "id": a.id,
                    "names": dict(a.names),
                    "node_key": verifier_key_string(a.id, a.node_key),
                    "node_public_key": a.node_key.hex(),
                    "issuer_keys": [k.hex() for k in a.issuer_keys],
                    "retired_issuer_keys": [k.hex() for k in a.retired_issuer_keys],
                    "admin_keys": [k.hex() for k in a.admin_keys],
                    "doc_types": list(a.doc_types),
                }
                for a in tl.agencies
            ],
            "trust_list": tl.to_json(),
        }
    )


@router.get("/v1/checkpoint", tags=["read"])
def checkpoint(request: Request) -> Response:
    """The latest final checkpoint (signed by a quorum of agencies)."""
    final = _node(request).store.latest_final()
    if final is None:
        raise ProblemError("not-found", "no final checkpoint yet")
    cp, note = final
    return json_response(
        {
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root.hex(),
            "state_root": cp.state_root.hex(),
            "height": cp.height,
            "block_hash": cp.block_hash.hex(),
            "time": cp.time_ms,
            "note": note,
        }
    )


def _check_size(request: Request, size: int) -> None:
    have = _node(request).store.tree_size
    if size > have:
        raise ProblemError(
            "invalid-range", f"size {size} exceeds the log's size {have}"
        )


@router.get("/v1/proofs/inclusion", tags=["proofs"])
def inclusion(request: Request, index: UINT, size: UINT) -> Response:
    """An RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``."""
    if not index < size:
        raise ProblemError("invalid-range", "need 0 <= index < size")
    _check_size(request, size)
    proof = _node(request).store.inclusion_proof(index, size)
    return json_response(
        {"index": index, "size": size, "proof": [p.hex() for p in proof]}
    )


@router.get("/v1/proofs/consistency", tags=["proofs"])
def consistency(request: Request, first: UINT, second: UINT) -> Response:
    """An RFC 9162 consistency proof between two tree sizes."""
    if not 0 < first <= second:
        raise ProblemError("invalid-range", "need 0 < first <= second")
    _check_size(request, second)
    proof = _node(request).store.consistency_proof(first, second)
    return json_response(
        {"first": first, "second": second, "proof": [p.hex() for p in proof]}
    )


@router.get("/v1/leaves", tags=["read"])
def leaves(request: Request, start: UINT, end: UINT) -> Response:
    """Leaves ``[start, end)`` as base64 of their canonical bytes (at most 1,000)."""
    if not start < end or end - start > MAX_LEAVES:
        raise ProblemError(
            "invalid-range", f"need start < end and at most {MAX_LEAVES} leaves"
        )
    _check_size(request, end)
    data = _node(request).store.leaves(start, end)
    return json_response(
        {
            "start": start,
            "end": end,
            "leaves": [base64.b64encode(leaf).decode() for leaf in data],
        }
    )


@router.get("/v1/blocks/{height}", tags=["read"])
def block(request: Request, height: int, raw: bool = False) -> Response:
    """One block with its submissions and their outcomes."""
    store = _node(request).store
    if not 1 <= height <= store.height:
        raise ProblemError("block-not-found", f"no block at height {height}")
    return json_response(block_json(store.block(height), raw=raw))


@router.get("/v1/blocks", tags=["read"])
def blocks(
    request: Request,
    start: Annotated[int, Query(ge=1, le=2**63 - 1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_BLOCKS)] = 20,
    raw: bool = False,
) -> Response:
    """Blocks from ``start``, at most ``limit`` (100) of them, and fewer when
    they are large (about 8 MiB of submissions a page): go on from the last
    height returned."""
    store = _node(request).store
    last = min(store.height, start + limit - 1)
    items = []
    size = 0
    for height in range(start, last + 1):
        block = store.block(height)
        items.append(block_json(block, raw=raw))
        size += sum(len(sub) for sub in block.submissions)
        if size >= MAX_PAGE_SUBMISSION_BYTES:
            break
    return json_response({"start": start, "height": store.height, "blocks": items})
