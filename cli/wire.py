"""What a node answers, as the client reads it: errors, receipts, trust lists.

Kept apart from the transport (``cli.client``) so that code which only reads
saved answers (a receipt, a trust file, a submission result) needs no HTTP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from cli.documents import unhex
from ledger.errors import ConfigError, LedgerError, VerificationError
from ledger.keys import parse_verifier_key
from ledger.trust import AGENCY_KEYS, TrustList

T = TypeVar("T")


class ClientError(LedgerError):
    """The node answered with an error (problem+json, RFC 9457).

    ``type`` is the stable problem type URI (branch on it or on ``slug``),
    ``code`` the ledger rule's reason code when a rule refused a submission.
    ``retried`` is set when the request was sent more than once: a 409
    ``replay`` then means an earlier copy may have been applied.
    """

    def __init__(
        self,
        status: int,
        type: str,  # the RFC 9457 member's name, kept for clients
        title: str,
        detail: str | None = None,
        code: str | None = None,
        *,
        body: Mapping[str, Any] | None = None,
        retried: bool = False,
    ) -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.code = code
        self.body: dict[str, Any] = dict(body or {})
        self.retried = retried

    @property
    def slug(self) -> str:
        """The last path segment of ``type`` (``not-leader``, ``replay``...)."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_response(cls, response: httpx.Response, *, retried: bool) -> ClientError:
        """The error an HTTP answer means; tolerant of non-problem bodies."""
        body: dict[str, Any] = {}
        try:
            parsed = response.json()
            if isinstance(parsed, dict):
                body = parsed
        except ValueError:
            pass
        title = str(body.get("title") or response.reason_phrase or "error")
        detail = body.get("detail")
        if detail is None and not body:
            detail = response.text[:200] or None
        # The lead's problems name the rule code `reason`; internals.md says
        # `code`. Take either.
        code = body.get("code", body.get("reason"))
        return cls(
            response.status_code,
            str(body.get("type") or "about:blank"),
            title,
            None if detail is None else str(detail),
            None if code is None else str(code),
            body=body,
            retried=retried,
        )


def parsed_answer(what: str, answer: Any, parse: Callable[[Any], T]) -> T:
    """``parse(answer)`` of a node's 200 answer, or ClientError if it does not
    have the expected shape (a missing field, a wrong type, bad hex)."""
    try:
        return parse(answer)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ClientError(
            200, "about:blank", "unexpected answer", f"{what}: {exc!r}"
        ) from exc


class NetworkError(LedgerError):
    """The node could not be reached, or it did not answer in time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """One entry's place on the ledger, as the node reported it."""

    kind: str
    doc_id: bytes | None
    leaf_index: int
    block_height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitResult:
    """The node's answer to one accepted submission."""

    height: int
    block_hash: bytes
    first_leaf: int
    receipts: tuple[Receipt, ...]
    checkpoint: str | None  # the final checkpoint note, with wait="final"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SubmitResult:
        try:
            receipts = tuple(
                Receipt(
                    kind=str(r["kind"]),
                    doc_id=None if r.get("doc_id") is None else unhex(r["doc_id"]),
                    leaf_index=int(r["leaf_index"]),
                    block_height=int(r["block_height"]),
                )
                for r in obj["receipts"]
            )
            return cls(
                height=int(obj["height"]),
                block_hash=unhex(obj["block_hash"]),
                first_leaf=int(obj["first_leaf"]),
                receipts=receipts,
                checkpoint=obj.get("checkpoint"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(
                200, "about:blank", "unexpected answer", f"submission answer: {exc}"
            ) from exc


def trust_from_api(obj: Mapping[str, Any]) -> TrustList:
    """The trust list from ``GET /v1/trust`` (or a genesis.json object).

    The API writes node keys as verifier key strings and may leave out the
    fields a verifier does not need (admin keys, version). Only fields a
    verifier uses matter here; a missing admin key is replaced by a
    placeholder unique to the agency, since ``TrustList`` requires one.
    The result is for verifying, never for deriving a chain id.
    """
    if not isinstance(obj, Mapping):
        raise ConfigError(f"trust list: a {type(obj).__name__}, not an object")
    # The node also serves the full genesis.json form under "trust_list";
    # when it is there it is exact (retired and admin keys included).
    for name in ("trust_list", "trust"):
        inner = obj.get(name)
        if isinstance(inner, dict):
            return TrustList.from_json(inner)
    if "created_ms" in obj and "quorum" not in obj:
        return TrustList.from_json(dict(obj))
    agencies = []
    for i, raw in enumerate(_list(obj.get("agencies"), "agencies")):
        if not isinstance(raw, dict):
            raise ConfigError(f"trust list: agencies[{i}] is not an object")
        agency = {k: raw[k] for k in AGENCY_KEYS if k in raw}
        agency_id = str(agency.get("id", ""))
        agency["node_key"] = _api_key(agency.get("node_key"), agency_id)
        for field in ("issuer_keys", "retired_issuer_keys", "admin_keys"):
            keys = _list(raw.get(field), f"agencies[{i}].{field}")
            agency[field] = [_api_key(k, agency_id) for k in keys]
        if not agency["admin_keys"]:
            placeholder = hashlib.sha256(
                b"agency-ledger/no-admin-key/" + agency_id.encode()
            )
            agency["admin_keys"] = [placeholder.hexdigest()]
        agency.setdefault("doc_types", [])
        agencies.append(agency)
    value = {
        "origin": obj.get("origin"),
        "version": obj.get("version", 1),
        "created_ms": obj.get("created_ms", 0),
        "agencies": agencies,
    }
    return TrustList.from_json(value)


def _list(value: object, where: str) -> list[Any]:
    """A JSON array, or [] for a missing or null one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"trust list: {where} is not a list")
    return value


def _api_key(value: object, agency_id: str) -> str:
    """A key as 64 hex digits, from hex or a verifier key string."""
    if isinstance(value, str) and "+" in value:
        try:
            verifier = parse_verifier_key(value)
        except VerificationError as exc:
            raise ConfigError(f"trust list: {agency_id}: {exc}") from exc
        return verifier.public_key.hex()
    if not isinstance(value, str):
        raise ConfigError(f"trust list: {agency_id}: a key is not a string")
    return value
