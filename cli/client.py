"""A client of one node's HTTP API, importable by an agency's own issuing system.

``LedgerClient`` speaks the public read API and ``POST /v1/submissions``
(DESIGN.md, docs/internals.md "HTTP details"). Answers in
``application/problem+json`` become a ``ClientError`` that carries the
problem's ``status``, ``type``, ``title``, ``detail`` and rule ``code``;
a failure to reach the node at all is a ``NetworkError``.

Retries. A 503 (no leader or no quorum yet), a 504 (not committed in time:
it may still commit) and a 429 are retried with exponential backoff
(``Retry-After`` wins when the node sends it). A 503 of type ``not-leader``
that names the leader sends the request there and keeps talking to it. A
submission is sent again byte for byte, so if an earlier attempt did commit
after all, the nonce makes the node refuse the copy (409 ``replay``) rather
than apply it twice; that ``ClientError`` has ``retried`` set, because the
batch may well be on the ledger, or in a block that refused it (a refused
submission's nonce is spent too): look its documents up to know which
(``recover_receipts``).

The helpers (``anchor_files``, ``revoke``, ``supersede``, ``record``) build
the entries, sign them with the agency's issuer key in batches of at most
``MAX_ENTRIES`` and return receipts. Documents never leave the machine:
only their salted hashes do.
"""

from __future__ import annotations

import logging
import time
from base64 import b64decode
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, Self

import httpx

from cli.documents import (
    AnchorReceipt,
    PreparedDocument,
    as_doc_id,
    now_ms,
    prepare_documents,
    unhex,
)
from cli.wire import (
    ClientError,
    NetworkError,
    Receipt,
    SubmitResult,
    parsed_answer,
    trust_from_api,
)
from ledger.bundle_binary import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from ledger.bundle_binary import BundleFormat
from ledger.entries import (
    Anchor,
    Entry,
    Record,
    Revoke,
    Supersede,
    decode_entry,
    encode_entry,
)
from ledger.errors import EncodingError, LedgerError
from ledger.keys import SigningKey
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    encode_submission,
    sign_submission,
)
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

__all__ = [
    "AnchorReceipt",
    "ClientError",
    "LedgerClient",
    "NetworkError",
    "Receipt",
    "SubmitResult",
    "trust_from_api",
]

Wait = Literal["applied", "final"]
JSON = dict[str, Any]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
MSGPACK_MEDIA_TYPE: Final = "application/msgpack"
# The API pages leaves by at most this many per request.
LEAVES_PAGE: Final = 1_000
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_RETRIES: Final = 6
DEFAULT_BACKOFF: Final = 0.1
MAX_BACKOFF: Final = 5.0
# Leader hops per request; more means the cluster is electing, and the 503
# retries (with their backoff) take over.
MAX_REDIRECTS: Final = 3
_RETRY_STATUSES: Final = frozenset({429, 503, 504})


class LedgerClient:
    """A synchronous client of one node (and of its leader, for writes).

    Not thread-safe; one client per thread. Use as a context manager or
    call ``close``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify_tls: bool | str = True,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        follow_leader: bool = True,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._retries = retries
        self._backoff = backoff
        self._follow_leader = follow_leader
        self._sleep = sleep
        self._origin: str | None = None
        self._http = httpx.Client(
            timeout=timeout,
            verify=verify_tls,
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport ---------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request with the retry and leader-following rules above."""
        attempt = hops = 0
        while True:
            url = self.base_url + path
            try:
                response = self._http.request(
                    method, url, params=params, content=content, headers=headers
                )
            except httpx.ConnectError as exc:
                # Nothing reached the node, so even a write is safe to resend.
                if attempt >= self._retries:
                    raise NetworkError(f"cannot connect to {url}: {exc}") from exc
                self._pause(attempt, None)
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise NetworkError(f"{method} {url}: {exc}") from exc
            if response.is_success:
                return response
            # A hop to the leader resends what a follower did not propose:
            # only a resend after a 429, 503 or 504 may follow an applied copy.
            error = ClientError.from_response(response, retried=attempt > 0)
            if error.slug == "not-leader" and hops < MAX_REDIRECTS:
                leader = self._leader_url(error)
                if leader is not None and leader != self.base_url:
                    logger.info("following leader url=%s", leader)
                    self.base_url = leader
                    hops += 1
                    continue
            if response.status_code in _RETRY_STATUSES and attempt < self._retries:
                self._pause(attempt, response.headers.get("retry-after"))
                attempt += 1
                continue
            raise error

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self._backoff * (2**attempt), MAX_BACKOFF)
        if retry_after is not None and retry_after.isdigit():
            delay = min(float(retry_after), MAX_BACKOFF)
        logger.debug("retrying attempt=%d delay=%.2f", attempt + 1, delay)
        self._sleep(delay)

    def _leader_url(self, error: ClientError) -> str | None:
        """Where the leader takes writes, if the node told us or knows."""
        if not self._follow_leader:
            return None
        url = error.body.get("leader_url")
        if isinstance(url, str) and url:
            return url.rstrip("/")
        leader = error.body.get("leader")
        if not isinstance(leader, str):
            return None
        try:
            members = self.cluster().get("members", [])
        except LedgerError:
            return None
        for member in members:
            if member.get("id") == leader and member.get("api_url"):
                return str(member["api_url"]).rstrip("/")
        return None

    def _get(self, path: str, **params: str | int) -> Any:
        response = self._send("GET", path, params=params or None)
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                response.status_code, "about:blank", "not JSON", f"GET {path}"
            ) from exc

    # --- the public read API -----------------------------------------------

    def trust(self) -> JSON:
        """``GET /v1/trust``: the trust list in force (JSON)."""
        result: JSON = self._get("/v1/trust")
        return result

    def trust_list(self) -> TrustList:
        """The trust list in force, parsed (see ``trust_from_api``)."""
        return trust_from_api(self.trust())

    def origin(self) -> str:
        """The chain's origin (checkpoint first line), fetched once."""
        if self._origin is None:
            origin = self.trust().get("origin")
            if not isinstance(origin, str):
                raise ClientError(200, "about:blank", "trust list without origin")
            self._origin = origin
        return self._origin

    def checkpoint(self) -> JSON:
        """``GET /v1/checkpoint``: the latest final checkpoint."""
        result: JSON = self._get("/v1/checkpoint")
        return result

    def cluster(self) -> JSON:
        """``GET /v1/cluster``: Raft role, leader, indexes and members."""
        result: JSON = self._get("/v1/cluster")
        return result

    def healthz(self) -> bool:
        """True if ``/healthz`` answers 2xx (no retries: a probe)."""
        try:
            return self._http.get(self.base_url + "/healthz").is_success
        except httpx.HTTPError:
            return False

    def public_url(self) -> str:
        """The base of verify URLs: the answering node's public URL."""
        info = self.cluster()
        for key in ("public_url", "api_url"):
            if isinstance(info.get(key), str):
                return str(info[key]).rstrip("/")
        for member in info.get("members", []):
            if member.get("id") == info.get("agency") and member.get("api_url"):
                return str(member["api_url"]).rstrip("/")
        return self.base_url

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Proof of leaf ``index`` in the tree of ``size``; ``0 <= index < size``."""
        obj = self._get("/v1/proofs/inclusion", index=index, size=size)
        return parsed_answer("inclusion proof", obj, _proof)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """Proof that tree ``first`` is a prefix of tree ``second``."""
        obj = self._get("/v1/proofs/consistency", first=first, second=second)
        return parsed_answer("consistency proof", obj, _proof)

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaf bytes of ``[start, end)``, however many pages that takes."""
        return [leaf for page in self.iter_leaves(start, end) for leaf in page]

    def iter_leaves(self, start: int, end: int) -> Iterator[list[bytes]]:
        """Pages of leaf bytes covering ``[start, end)`` in order."""
        while start < end:
            stop = min(end, start + LEAVES_PAGE)
            obj = self._get("/v1/leaves", start=start, end=stop)
            page = parsed_answer("leaves", obj, _leaves)
            if not page:
                raise ClientError(200, "about:blank", "empty leaves page", str(start))
            yield page
            start += len(page)

    def block(self, height: int) -> JSON:
        """``GET /v1/blocks/{height}``."""
        result: JSON = self._get(f"/v1/blocks/{height}")
        return result

    def blocks(self, start: int, limit: int, *, raw: bool = False) -> list[JSON]:
        """``GET /v1/blocks?start=&limit=``: up to ``limit`` blocks from ``start``.

        ``raw``: each block also carries ``raw``, base64 of its canonical
        encoding (what an auditor re-hashes).
        """
        params: dict[str, str | int] = {"start": start, "limit": limit}
        if raw:
            params["raw"] = "true"
        obj = self._get("/v1/blocks", **params)
        blocks = obj["blocks"] if isinstance(obj, dict) else obj
        return list(blocks)

    def document(self, doc_id: bytes | str) -> JSON:
        """``GET /v1/documents/{doc_id}``: status and history."""
        result: JSON = self._get(f"/v1/documents/{as_doc_id(doc_id).hex()}")
        return result

    def bundle(self, doc_id: bytes | str) -> JSON:
        """``GET /v1/documents/{doc_id}/bundle``: the proof bundle."""
        result: JSON = self._get(f"/v1/documents/{as_doc_id(doc_id).hex()}/bundle")
        return result

    def bundle_binary(self, doc_id: bytes | str) -> bytes:
        """``GET /v1/documents/{doc_id}/bundle?format=binary``: the proof
        bundle's binary form, as the node sent it (``ledger.bundle_binary``
        decodes it). A ClientError if the answer is not that form (a node
        from before it ignores the query and answers JSON)."""
        path = f"/v1/documents/{as_doc_id(doc_id).hex()}/bundle"
        params = {"format": BundleFormat.BINARY.value}
        response = self._send("GET", path, params=params)
        media_type = response.headers.get("content-type", "").split(";")[0]
        if media_type.strip() != BUNDLE_MEDIA_TYPE:
            raise ClientError(
                response.status_code,
                "about:blank",
                "not a binary bundle",
                f"GET {path} answered {media_type or 'no content type'}",
            )
        return response.content

    # --- writes ------------------------------------------------------------

    def submit(
        self, submission: Submission | bytes, wait: Wait = "applied"
    ) -> SubmitResult:
        """Send a signed batch (msgpack) and wait until applied or final."""
        body = (
            submission
            if isinstance(submission, bytes)
            else encode_submission(submission)
        )
        response = self._send(
            "POST",
            "/v1/submissions",
            params={"wait": wait},
            content=body,
            headers={"content-type": MSGPACK_MEDIA_TYPE},
        )
        result = SubmitResult.from_json(response.json())
        if response.status_code == 202:
            logger.warning(
                "submission applied at height=%d but not final yet: no final "
                "checkpoint covered it in time; its receipts hold",
                result.height,
            )
        return result

    def submit_entries(
        self,
        entries: Sequence[Entry],
        key: SigningKey,
        agency: str,
        *,
        wait: Wait = "applied",
        batch_size: int = MAX_ENTRIES,
        progress: Callable[[int], None] | None = None,
    ) -> list[SubmitResult]:
        """Sign ``entries`` in batches of ``batch_size`` and submit each in turn.

        ``progress`` is called with the number of entries of each accepted
        batch. Batches are sent in order; the first refusal stops the rest.
        """
        if not 1 <= batch_size <= MAX_ENTRIES:
            raise ValueError(f"batch_size must be 1..{MAX_ENTRIES}")
        origin = self.origin()
        results = []
        for start in range(0, len(entries), batch_size):
            chunk = [encode_entry(e) for e in entries[start : start + batch_size]]
            sub = sign_submission(origin, agency, chunk, key)
            results.append(self.submit(sub, wait))
            if progress is not None:
                progress(len(chunk))
        return results

    def anchor_files(
        self,
        paths: Sequence[Path],
        key: SigningKey,
        agency: str,
        doc_type: str,
        *,
        wait: Wait = "applied",
        issued_at: int | None = None,
        valid_from: int | None = None,
        valid_until: int | None = None,
        public_url: str | None = None,
        batch_size: int = MAX_ENTRIES,
        progress: Callable[[int], None] | None = None,
        before_submit: Callable[[Sequence[PreparedDocument]], None] | None = None,
    ) -> list[AnchorReceipt]:
        """Anchor files as ``agency``'s documents of ``doc_type``; one receipt each.

        Files are hashed here; only salted hashes are sent. Receipts come
        back in the order of ``paths``. ``public_url`` is the base of the
        verify URLs (the node's own public URL when None).
        ``before_submit`` gets the salted documents before anything is sent:
        a salt lost after its document reached the ledger can never be
        recovered, so a caller keeps them first (see ``recover_receipts``).
        """
        docs = prepare_documents(
            paths,
            agency=agency,
            doc_type=doc_type,
            issued_at=issued_at,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        # Asked before anything is sent: once documents are on the ledger, a
        # failure to build their receipts must not come from here.
        base = public_url or self.public_url()
        if before_submit is not None:
            before_submit(docs)
        results = self.submit_entries(
            [d.anchor for d in docs],
            key,
            agency,
            wait=wait,
            batch_size=batch_size,
            progress=progress,
        )
        return _anchor_receipts(docs, results, base)

    def recover_receipts(
        self,
        docs: Sequence[PreparedDocument],
        *,
        public_url: str,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[list[AnchorReceipt], list[PreparedDocument]]:
        """Receipts of those ``docs`` the ledger holds, found by doc id: for
        when a submission's answer was lost (a timeout, a dropped connection,
        a retry refused as a replay). A document counts as found only if the
        leaf its history starts with is, byte for byte, its anchor.

        Returns the receipts found and the documents that could not be
        checked (the node did not answer); the others are not on the ledger.
        ``progress`` is called with 1 after each document.
        """
        found: list[AnchorReceipt] = []
        unchecked: list[PreparedDocument] = []
        for doc in docs:
            try:
                receipt = self._find_anchor(doc, public_url)
            except (ClientError, NetworkError) as exc:
                if not (isinstance(exc, ClientError) and exc.status == 404):
                    unchecked.append(doc)
                receipt = None
            if receipt is not None:
                found.append(receipt)
            if progress is not None:
                progress(1)
        return found, unchecked

    def anchor_of(self, doc_id: bytes) -> Anchor | None:
        """The anchor entry of ``doc_id`` as the ledger holds it (the leaf its
        history starts with), None if it holds none; ClientError or
        NetworkError when the node cannot tell."""
        try:
            history = self.document(doc_id).get("history") or [{}]
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise
        index = history[0].get("leaf_index")
        if not isinstance(index, int):
            return None
        try:
            entry = decode_entry(self.leaves(index, index + 1)[0])
        except EncodingError:
            return None
        if not isinstance(entry, Anchor) or entry.doc_id != doc_id:
            return None
        return entry

    def _find_anchor(
        self, doc: PreparedDocument, public_url: str
    ) -> AnchorReceipt | None:
        history = self.document(doc.doc_id).get("history") or [{}]
        first = history[0]
        index = first.get("leaf_index")
        if not isinstance(index, int) or first.get("kind") not in (None, "anchor"):
            return None
        if self.leaves(index, index + 1) != [encode_entry(doc.anchor)]:
            return None
        return _receipt_of(doc, index, int(first["block"]), public_url)

    def revoke(
        self,
        doc_ids: Sequence[bytes],
        key: SigningKey,
        agency: str,
        reason: str,
        *,
        at: int | None = None,
        wait: Wait = "applied",
    ) -> list[SubmitResult]:
        """Revoke ``agency``'s documents for ``reason`` (``REVOKE_REASONS``)."""
        when = now_ms() if at is None else at
        entries = [
            Revoke(issuer=agency, doc_id=d, reason=reason, at=when) for d in doc_ids
        ]
        return self.submit_entries(entries, key, agency, wait=wait)

    def supersede(
        self,
        old_doc_id: bytes,
        new_doc_id: bytes,
        key: SigningKey,
        agency: str,
        *,
        at: int | None = None,
        wait: Wait = "applied",
    ) -> SubmitResult:
        """Record that ``old_doc_id`` was replaced by the anchored ``new_doc_id``."""
        entry = Supersede(
            issuer=agency,
            old_doc_id=old_doc_id,
            new_doc_id=new_doc_id,
            at=now_ms() if at is None else at,
        )
        return self.submit_entries([entry], key, agency, wait=wait)[0]

    def supersede_with_file(
        self,
        old_doc_id: bytes,
        path: Path,
        key: SigningKey,
        agency: str,
        doc_type: str,
        *,
        wait: Wait = "applied",
        issued_at: int | None = None,
        valid_from: int | None = None,
        valid_until: int | None = None,
        public_url: str | None = None,
    ) -> tuple[AnchorReceipt, SubmitResult]:
        """Anchor the amended file and supersede the old one in ONE submission.

        One submission is accepted or rejected whole, so there is never a
        moment where the new document exists but the old still looks valid.
        """
        (doc,) = prepare_documents(
            [path],
            agency=agency,
            doc_type=doc_type,
            issued_at=issued_at,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        entry = Supersede(
            issuer=agency,
            old_doc_id=old_doc_id,
            new_doc_id=doc.doc_id,
            at=now_ms(),
        )
        (result,) = self.submit_entries([doc.anchor, entry], key, agency, wait=wait)
        base = public_url or self.public_url()
        (receipt,) = _anchor_receipts([doc], [result], base)
        return receipt, result

    def record(
        self,
        registry: str,
        record_id: bytes,
        version: int,
        digest: bytes,
        key: SigningKey,
        agency: str,
        *,
        wait: Wait = "applied",
    ) -> SubmitResult:
        """Record version ``version`` of a registry record (previous + 1)."""
        entry = Record(
            issuer=agency,
            registry=registry,
            record_id=record_id,
            version=version,
            digest=digest,
        )
        return self.submit_entries([entry], key, agency, wait=wait)[0]


def _receipt_of(
    doc: PreparedDocument, leaf_index: int, block_height: int, public_url: str
) -> AnchorReceipt:
    """The holder's receipt of ``doc``, anchored at ``leaf_index``."""
    from api.qr import qr_url

    return AnchorReceipt(
        doc_id=doc.doc_id,
        salt=doc.salt,
        file_sha256=doc.file_sha256,
        file_name=doc.path.name,
        doc_type=doc.anchor.doc_type,
        issuer=doc.anchor.issuer,
        leaf_index=leaf_index,
        block_height=block_height,
        verify_url=qr_url(public_url, doc.doc_id, doc.salt),
    )


def _anchor_receipts(
    docs: Sequence[PreparedDocument],
    results: Sequence[SubmitResult],
    public_url: str,
) -> list[AnchorReceipt]:
    """Pair prepared documents with the node's receipts, by doc id."""

    placed: dict[bytes, Receipt] = {}
    for result in results:
        for item in result.receipts:
            if item.kind == "anchor" and item.doc_id is not None:
                placed[item.doc_id] = item
    out = []
    for doc in docs:
        receipt = placed.get(doc.doc_id)
        if receipt is None:
            raise ClientError(
                200,
                "about:blank",
                "receipt missing",
                f"the node returned no receipt for {doc.doc_id.hex()}",
            )
        out.append(
            _receipt_of(doc, receipt.leaf_index, receipt.block_height, public_url)
        )
    return out


def _proof(obj: Any) -> list[bytes]:
    return [unhex(h, 32) for h in obj["proof"]]


def _leaves(obj: Any) -> list[bytes]:
    return [b64decode(x, validate=True) for x in obj["leaves"]]
