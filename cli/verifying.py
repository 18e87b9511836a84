"""``ledger verify``: gather a bundle, a trust list and a document, then verify.

The verdict always comes from ``ledger.verify.verify_bundle`` run here, on
this machine: a node only ever supplies material (the bundle and, when no
trust file is given, the trust list), never the answer. Each status has its
own exit code (``EXIT_CODES``) so scripts can branch on it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cli.client import LedgerClient, trust_from_api
from cli.documents import AnchorReceipt, read_receipt
from ledger.errors import ConfigError, LedgerError, VerificationError
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

EXIT_CODES: Final[Mapping[str, int]] = {
    "valid": 0,
    "revoked": 10,
    "superseded": 11,
    "expired": 12,
    "not_yet_valid": 13,
    "not_found": 14,
    "tampered": 20,
    "unknown_issuer": 21,
    "stale": 22,
    "malformed": 23,
}
EXIT_USAGE: Final = 2
EXIT_NETWORK: Final = 3

EXIT_HELP: Final = (
    "Exit status: 0 valid, 10 revoked, 11 superseded, 12 expired, "
    "13 not_yet_valid, 14 not_found, 20 tampered, 21 unknown_issuer, "
    "22 stale, 23 malformed, 2 usage or file error, 3 network error."
)

_VERIFY_PATH: Final = re.compile(r"(.*)/v/([0-9a-f]{64})/?")
_SALT: Final = re.compile(r"[0-9a-f]{32}")


class UsageError(ConfigError):
    """The command line or an input file does not make sense (exit 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyLink:
    """What a verify URL (a QR code's content) carries."""

    node_url: str
    doc_id: bytes
    salt: bytes | None


def parse_verify_url(url: str) -> VerifyLink:
    """``{public_url}/v/{doc_id}#{salt}`` split into its parts (UsageError)."""
    parts = urlsplit(url.strip())
    match = _VERIFY_PATH.fullmatch(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or match is None:
        raise UsageError(f"not a verify URL: {url[:120]!r}")
    salt: bytes | None = None
    if parts.fragment:
        if _SALT.fullmatch(parts.fragment) is None:
            raise UsageError("the URL fragment is not a 32-hex-digit salt")
        salt = bytes.fromhex(parts.fragment)
    return VerifyLink(
        node_url=f"{parts.scheme}://{parts.netloc}{match.group(1)}",
        doc_id=bytes.fromhex(match.group(2)),
        salt=salt,
    )


def decode_qr(image: Path) -> str:
    """The text of the one QR code in ``image`` (zbar); UsageError otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        from pyzbar import pyzbar
    except ImportError as exc:
        # pyzbar is installed with us; the zbar C library is a system package.
        raise UsageError(
            f"reading QR images needs the zbar library ({exc}); on Debian or "
            "Ubuntu: sudo apt install libzbar0. Or verify with --receipt."
        ) from None
    try:
        with Image.open(image) as picture:
            found = pyzbar.decode(picture)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UsageError(f"cannot read image {image}: {exc}") from exc
    codes = [c for c in found if c.type == "QRCODE"]
    if len(codes) != 1:
        raise UsageError(f"{image}: expected one QR code, found {len(codes)}")
    data: bytes = codes[0].data
    return data.decode("utf-8", errors="replace")


def load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from exc


def load_bundle(path: Path) -> Any:
    """A bundle file: its bytes if it is the binary form (told by the first
    byte; ``check_bundle`` decodes them), else its parsed JSON. UsageError
    if it cannot be read; VerificationError("malformed") if it is neither
    form, as a bundle of either form that does not parse is."""
    # Imported here, as the verifier is (check_bundle): every command
    # imports this module, few read bundles.
    from ledger.bundle_binary import is_binary_bundle

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read bundle {path}: {exc}") from exc
    if is_binary_bundle(data):
        return data
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise VerificationError(
            "malformed", f"bundle {path} is neither JSON nor the binary form: {exc}"
        ) from exc


def load_trust(path: Path) -> TrustList:
    """A trust file: genesis.json, or a saved ``GET /v1/trust`` answer."""
    obj = load_json(path, "trust file")
    if not isinstance(obj, dict):
        raise UsageError(f"trust file {path}: expected a JSON object")
    try:
        return trust_from_api(obj)
    except ConfigError as exc:
        raise UsageError(f"trust file {path}: {exc}") from exc


def load_receipt(path: Path) -> AnchorReceipt:
    try:
        return read_receipt(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def read_document(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read document {path}: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """A verification's result: the status, its exit code and the details."""

    status: str
    detail: str | None
    verdict: Any | None  # ledger.verify.Verdict when one was returned
    trust: TrustList | None
    doc_id: bytes | None
    trust_from_node: bool = False

    @classmethod
    def unverified(
        cls,
        status: str,
        detail: str,
        trust: TrustList,
        doc_id: bytes | None,
        *,
        trust_from_node: bool,
    ) -> Outcome:
        """A failure that left no verdict (``detail`` says why)."""
        return cls(
            status=status,
            detail=detail,
            verdict=None,
            trust=trust,
            doc_id=doc_id,
            trust_from_node=trust_from_node,
        )

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": self.status,
            "exit_code": self.exit_code,
            "doc_id": None if self.doc_id is None else self.doc_id.hex(),
        }
        v = self.verdict
        if v is not None:
            out.update(
                issuer=v.issuer,
                issuer_names=_names(self.trust, v.issuer),
                doc_type=v.doc_type,
                issued_at=v.issued_at,
                valid_from=v.valid_from,
                valid_until=v.valid_until,
                revoked_at=v.revoked_at,
                reason=v.reason,
                superseded_by=None
                if v.superseded_by is None
                else v.superseded_by.hex(),
                checkpoint={
                    "origin": v.checkpoint.origin,
                    "size": v.checkpoint.size,
                    "height": v.checkpoint.height,
                    "time": v.checkpoint.time_ms,
                },
            )
        if self.detail:
            out["detail"] = self.detail
        out["trust_from_node"] = self.trust_from_node
        return out


def _names(trust: TrustList | None, agency: str | None) -> dict[str, str] | None:
    if trust is None or agency is None:
        return None
    try:
        return dict(trust.agency(agency).names)
    except KeyError:
        return None


@dataclass(slots=True, kw_only=True)
class VerifyRequest:
    """What the command line gave (paths not yet read)."""

    node: str | None = None
    trust: Path | None = None
    max_age_s: int | None = None
    receipt: Path | None = None
    qr: Path | None = None
    bundle: Path | None = None
    document: Path | None = None
    doc_id: bytes | None = None
    now_ms: int | None = None


def run_verify(req: VerifyRequest, *, client_factory: Any = LedgerClient) -> Outcome:
    """Verify as the request says; raise UsageError, NetworkError, ClientError.

    (1) find the document id and salt (receipt, QR or bundle); (2) get the
    trust list (file, else the node); (3) get the bundle (file, else the
    node); (4) run the offline verifier with the document if one was given.
    """
    # (1): which document, and the salt that ties a file to it.
    salt: bytes | None = None
    doc_id = req.doc_id
    node_url = req.node
    if sum(x is not None for x in (req.receipt, req.qr, req.bundle)) == 0:
        raise UsageError("give --receipt FILE DOCUMENT, --qr IMAGE or --bundle FILE")
    if req.receipt is not None:
        receipt = load_receipt(req.receipt)
        doc_id, salt = receipt.doc_id, receipt.salt
        if req.document is None:
            raise UsageError("--receipt needs the DOCUMENT it was issued for")
        if node_url is None and receipt.verify_url and req.bundle is None:
            node_url = parse_verify_url(receipt.verify_url).node_url
    if req.qr is not None:
        link = parse_verify_url(decode_qr(req.qr))
        if doc_id is not None and doc_id != link.doc_id:
            raise UsageError("the QR code names another document than the receipt")
        doc_id, salt = link.doc_id, salt or link.salt
        node_url = node_url or link.node_url
    document = None if req.document is None else read_document(req.document)
    if document is not None and salt is None:
        raise UsageError("checking a DOCUMENT needs its salt (--receipt or --qr)")

    # (2): the trust list. A pinned file is the only way not to take the
    # node's word for which keys count; without one the output says so.
    clients: list[Any] = []

    def client() -> Any:
        if node_url is None:
            raise UsageError("give --node URL (or a QR code or receipt naming one)")
        if not clients:
            clients.append(client_factory(node_url))
        return clients[0]

    try:
        trust_from_node = req.trust is None
        if req.trust is not None:
            trust = load_trust(req.trust)
        elif req.bundle is not None and node_url is None:
            raise UsageError("offline verification needs --trust FILE")
        else:
            trust = client().trust_list()

        # (3): the bundle.
        if req.bundle is not None:
            try:
                bundle = load_bundle(req.bundle)
            except VerificationError as exc:
                return Outcome.unverified(
                    exc.reason,
                    exc.message,
                    trust,
                    doc_id,
                    trust_from_node=trust_from_node,
                )
        elif doc_id is None:
            raise UsageError("no document id: give --receipt, --qr or --bundle")
        else:
            # Any error answer, a 404 too, propagates (exit 3): an honest
            # node proves an unknown document's absence in a bundle, so only
            # a verified bundle may say "not found", never the node's word.
            bundle = client().bundle(doc_id)
    finally:
        for opened in clients:
            opened.close()
    if not isinstance(bundle, dict | bytes):
        return Outcome.unverified(
            "malformed",
            "the bundle is not a JSON object",
            trust,
            doc_id,
            trust_from_node=trust_from_node,
        )

    # (4): the verdict, computed here.
    return check_bundle(
        bundle,
        trust,
        document=document,
        salt=salt,
        doc_id=doc_id,
        now_ms=req.now_ms,
        max_age_ms=None if req.max_age_s is None else req.max_age_s * 1000,
        trust_from_node=trust_from_node,
    )


def check_bundle(
    bundle: Mapping[str, Any] | bytes,
    trust: TrustList,
    *,
    document: bytes | None = None,
    salt: bytes | None = None,
    doc_id: bytes | None = None,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
    trust_from_node: bool = False,
) -> Outcome:
    """Run the offline verifier on a bundle in either form (bytes: the
    binary form); every failure becomes an ``Outcome``."""
    from ledger.bundle_binary import decode_bundle
    from ledger.verify import verify_bundle

    try:
        # A binary bundle that does not decode is as malformed as a JSON one
        # of the wrong shape: the decoder raises the verifier's error.
        parsed = decode_bundle(bundle) if isinstance(bundle, bytes) else bundle
        verdict = verify_bundle(
            parsed,
            trust,
            document=document,
            salt=salt,
            now_ms=now_ms,
            max_age_ms=max_age_ms,
        )
    except VerificationError as exc:
        return Outcome.unverified(
            exc.reason, exc.message, trust, doc_id, trust_from_node=trust_from_node
        )
    except LedgerError as exc:
        # Anything else the verifier could not even read is malformed input.
        return Outcome.unverified(
            "malformed", str(exc), trust, doc_id, trust_from_node=trust_from_node
        )
    # (5): a bundle for another document than the receipt or QR names is
    # a swapped bundle, whatever it says about its own document.
    if doc_id is not None and verdict.doc_id != doc_id:
        return Outcome.unverified(
            "tampered",
            f"the bundle is for {verdict.doc_id.hex()}, not {doc_id.hex()}",
            trust,
            doc_id,
            trust_from_node=trust_from_node,
        )
    return Outcome(
        status=verdict.status,
        detail=None,
        verdict=verdict,
        trust=trust,
        doc_id=verdict.doc_id,
        trust_from_node=trust_from_node,
    )
