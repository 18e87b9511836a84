"""Documents: status, history, proof bundle, QR codes and the verify page.

The verify page does not take the node's word for a status: it builds the
proof bundle and runs the same offline verifier an integrator runs, against
the trust list, and shows what that verifier says.

The bundle route answers JSON unless asked for the binary form
(``?format=binary``, ``ledger.bundle_binary``): the same content in about
60 % of the bytes.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import NodeLike, json_response, parse_doc_id
from api.i18n import normalize_lang
from api.problems import ProblemError
from api.qr import QrBusyError, QrKind, QrRenderer, qr_url
from api.verify_page import VERIFY_PAGE_HEADERS, VerifyView, render_verify_page
from ledger.bundle import build_bundle
from ledger.bundle_binary import MEDIA_TYPE as BINARY_BUNDLE_MEDIA_TYPE
from ledger.bundle_binary import BundleFormat, encode_bundle
from ledger.entries import decode_entry, peek_kind
from ledger.errors import LedgerError, StorageError, VerificationError
from ledger.store import LedgerStore, NotFoundError
from ledger.verify import Verdict, verify_bundle

router = APIRouter()


def _node(request: Request) -> NodeLike:
    node: NodeLike = request.app.state.node
    return node


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@router.get("/v1/documents/{doc_id}", tags=["documents"])
def document(request: Request, doc_id: str) -> Response:
    """The current status of a document and every change to it."""
    return document_response(_node(request).store, doc_id)


FormatQuery = Annotated[
    BundleFormat,
    Query(
        alias="format",
        description="json, or binary: canonical msgpack, about 60 % of the size",
    ),
]
# The binary answer in the OpenAPI document (the JSON one FastAPI writes).
_BINARY_BUNDLE_ANSWER: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The bundle, in the form asked for",
        "content": {
            BINARY_BUNDLE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}
        },
    }
}


@router.get(
    "/v1/documents/{doc_id}/bundle",
    tags=["documents"],
    responses=_BINARY_BUNDLE_ANSWER,
)
def bundle(
    request: Request, doc_id: str, format_: FormatQuery = BundleFormat.JSON
) -> Response:
    """Everything needed to verify the document offline with the trust list."""
    return bundle_response(_node(request).store, doc_id, format_)


def document_response(store: LedgerStore, doc_id: str) -> Response:
    """The answer of ``GET /v1/documents/{doc_id}`` (ProblemError if none)."""
    key = parse_doc_id(doc_id)
    found = store.status_and_history(key)
    rec, rows = found.status, found.rows
    if rec is None or rec.status == "record":
        raise ProblemError("document-not-found", f"no document {doc_id}")
    status = rec.shown_status(_now_ms())
    history = [
        {
            "leaf_index": leaf,
            "block": height,
            # A document's anchor_leaf is the leaf of the anchor that made it.
            "kind": "anchor" if leaf == rec.anchor_leaf else _kind(store.leaf(leaf)),
        }
        for leaf, height in rows
    ]
    return json_response(
        {
            "doc_id": doc_id,
            "status": status,
            "issuer": rec.issuer,
            "doc_type": rec.doc_type,
            "issued_at": rec.issued_at,
            "valid_from": rec.valid_from,
            "valid_until": rec.valid_until,
            "revoked_at": rec.revoked_at,
            "reason": rec.reason,
            "superseded_by": None
            if rec.superseded_by is None
            else rec.superseded_by.hex(),
            "leaf": rec.leaf,
            "history": history,
            # The tip's block: committed, but maybe not yet under a final
            # checkpoint (the bundle is; it is what a verifier trusts).
            "as_of_block": found.height,
        }
    )


def _kind(leaf: bytes) -> str:
    # A stored leaf was decoded and checked when its block was applied;
    # anything that does not peek as an entry is decoded (and refused).
    return peek_kind(leaf) or decode_entry(leaf).kind


def bundle_response(
    store: LedgerStore, doc_id: str, form: BundleFormat = BundleFormat.JSON
) -> Response:
    """The answer of ``GET /v1/documents/{doc_id}/bundle`` in ``form``
    (ProblemError if none)."""
    key = parse_doc_id(doc_id)
    try:
        built = build_bundle(store, key)
        if form is BundleFormat.BINARY:
            return Response(encode_bundle(built), media_type=BINARY_BUNDLE_MEDIA_TYPE)
        return json_response(built)
    except NotFoundError as exc:
        # The key of a registry record: no document has it.
        raise ProblemError("document-not-found", f"no document {doc_id}") from exc
    except StorageError as exc:
        raise ProblemError("unavailable", str(exc)) from exc


HexSalt = Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")]


def _qr_target(request: Request, doc_id: str, salt: str | None) -> str:
    key = parse_doc_id(doc_id)
    public_url: str = request.app.state.public_url
    if salt is None:
        # Without the salt the page can show the status but cannot check a file.
        return f"{public_url}/v/{doc_id}"
    return qr_url(public_url, key, bytes.fromhex(salt))


async def _qr(request: Request, kind: QrKind, target: str) -> bytes:
    renderer: QrRenderer = request.app.state.qr
    try:
        return await renderer.render(kind, target)
    except QrBusyError as exc:
        raise ProblemError(
            "unavailable", f"busy making QR codes ({exc})", headers={"Retry-After": "1"}
        ) from exc


@router.get("/v1/documents/{doc_id}/qr.png", tags=["documents"])
async def qr_png_route(request: Request, doc_id: str, salt: HexSalt = None) -> Response:
    """The verify link as a PNG QR code (``salt``: the holder's salt, optional)."""
    image = await _qr(request, "png", _qr_target(request, doc_id, salt))
    return Response(image, media_type="image/png")


@router.get("/v1/documents/{doc_id}/qr.svg", tags=["documents"])
async def qr_svg_route(request: Request, doc_id: str, salt: HexSalt = None) -> Response:
    """The verify link as an SVG QR code."""
    image = await _qr(request, "svg", _qr_target(request, doc_id, salt))
    return Response(image, media_type="image/svg+xml")


def verdict_view(request: Request, doc_id: str) -> VerifyView:
    """Verify the node's own bundle offline and describe the outcome."""
    node = _node(request)
    try:
        key = parse_doc_id(doc_id)
    except ProblemError:
        return VerifyView(doc_id_hex=doc_id[:128], status="malformed")
    try:
        data = build_bundle(node.store, key)
    except NotFoundError:
        return VerifyView(doc_id_hex=doc_id, status="not_found")
    except StorageError as exc:
        return VerifyView(doc_id_hex=doc_id, status="stale", detail=str(exc))
    trust = node.store.trust
    max_age = request.app.state.max_age_ms
    try:
        verdict = verify_bundle(data, trust, now_ms=_now_ms(), max_age_ms=max_age)
    except VerificationError as exc:
        return VerifyView(doc_id_hex=doc_id, status=exc.reason, detail=exc.message)
    except LedgerError as exc:
        return VerifyView(doc_id_hex=doc_id, status="malformed", detail=str(exc))
    return _view(doc_id, verdict, request)


def _view(doc_id: str, v: Verdict, request: Request) -> VerifyView:
    names: dict[str, str] | None = None
    if v.issuer is not None:
        try:
            names = dict(_node(request).store.trust.agency(v.issuer).names)
        except KeyError:
            names = None
    return VerifyView(
        doc_id_hex=doc_id,
        status=v.status,
        issuer_id=v.issuer,
        issuer_names=names,
        doc_type=v.doc_type,
        issued_at_ms=v.issued_at,
        valid_from_ms=v.valid_from,
        valid_until_ms=v.valid_until,
        revoked_at_ms=v.revoked_at,
        revoke_reason=v.reason,
        superseded_by_hex=None if v.superseded_by is None else v.superseded_by.hex(),
        checkpoint_time_ms=v.checkpoint.time_ms,
        tree_size=v.checkpoint.size,
        height=v.checkpoint.height,
    )


@router.get("/v/{doc_id}", response_class=HTMLResponse, tags=["verify"])
def verify_page(request: Request, doc_id: str, lang: str | None = None) -> HTMLResponse:
    """The page a QR code opens; the salt stays in the URL fragment."""
    view = verdict_view(request, doc_id)
    html = render_verify_page(view, normalize_lang(lang))
    # The page is for people, but the status code is for machines (link
    # checkers, caches): an unknown or malformed id is not a found page.
    code = {"not_found": 404, "malformed": 400}.get(view.status, 200)
    return HTMLResponse(html, status_code=code, headers=dict(VERIFY_PAGE_HEADERS))
