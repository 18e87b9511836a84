"""Entries: the leaves of the log, and their one canonical encoding.

Every entry is a map whose first key is ``kind``; the other keys follow the
schema order in ``docs/internals.md`` and optional keys are left out. The leaf
bytes of the log are exactly ``encode_entry(entry)``, so ``decode_entry``
refuses anything that would not re-encode to the same bytes.

Invariants held by every entry value (checked on construction; field types
are held to the schema by ``encode_entry`` and ``decode_entry``, so an
invalid entry never reaches the wire nor comes off it):
- agency ids match ``[a-z0-9][a-z0-9-]{1,39}``; doc types and registries
  match ``[a-z0-9_]{1,40}``;
- hashes (doc ids, digests) are 32 bytes, signatures 64, record ids 1..64;
- ``valid_from < valid_until`` when both are present; versions are >= 1.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, TypeAlias

from ledger import domains
from ledger.codec import (
    Field,
    Value,
    build_record,
    check_record,
    get_bytes,
    get_int,
    get_list,
    get_opt_int,
    get_str,
    is_u64,
    pack,
    unpack,
)
from ledger.errors import EncodingError

if TYPE_CHECKING:
    from ledger.keys import SigningKey

REVOKE_REASONS: Final = (
    "issued_in_error",
    "withdrawn",
    "court_order",
    "holder_request",
    "key_compromise",
    "other",
)
# Samples only: any name matching NAME_RE may be granted by governance.
DOC_TYPES: Final = (
    "criminal_record",
    "birth_registration",
    "marriage_registration",
    "land_use",
    "health_record",
)
# Governance actions and the keys of their params map, in canonical order.
GOVERNANCE_ACTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "add_agency": ("agency",),
    "remove_agency": ("id",),
    "rotate_node_key": ("id", "node_key"),
    "rotate_issuer_key": ("id", "issuer_key", "retire"),
    "grant_doc_types": ("id", "doc_types"),
}

AGENCY_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")
NAME_RE: Final = re.compile(r"[a-z0-9_]{1,40}")
MAX_RECORD_ID: Final = 64
# Far above any real trust list; bounds the work a hostile entry can cause.
MAX_APPROVALS: Final = 256


def check_agency_id(value: str, what: str = "agency id") -> None:
    """Raise EncodingError unless ``value`` is a well-formed agency id."""
    if AGENCY_RE.fullmatch(value) is None:
        raise EncodingError(f"{what} {value!r} is not a valid agency id")


def check_name(value: str, what: str = "name") -> None:
    """Raise EncodingError unless ``value`` is a doc type / registry name."""
    if NAME_RE.fullmatch(value) is None:
        raise EncodingError(f"{what} {value!r} must match [a-z0-9_]{{1,40}}")


def _check_size(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise EncodingError(f"{what} must be {size} bytes, got {len(value)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor:
    """A document was issued. ``valid_from``/``valid_until`` are optional."""

    kind: ClassVar[str] = "anchor"
    issuer: str
    doc_id: bytes
    doc_type: str
    issued_at: int
    valid_from: int | None = None
    valid_until: int | None = None

    def __post_init__(self) -> None:
        check_agency_id(self.issuer, "issuer")
        _check_size(self.doc_id, 32, "doc_id")
        check_name(self.doc_type, "doc_type")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_from >= self.valid_until
        ):
            raise EncodingError("valid_from must be before valid_until")


@dataclass(frozen=True, slots=True, kw_only=True)
class Revoke:
    """A document is no longer valid, from ``at`` on, for ``reason``."""

    kind: ClassVar[str] = "revoke"
    issuer: str
    doc_id: bytes
    reason: str
    at: int

    def __post_init__(self) -> None:
        check_agency_id(self.issuer, "issuer")
        _check_size(self.doc_id, 32, "doc_id")
        if self.reason not in REVOKE_REASONS:
            raise EncodingError(f"unknown revocation reason {self.reason!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Supersede:
    """``old_doc_id`` was amended and reissued as ``new_doc_id``."""

    kind: ClassVar[str] = "supersede"
    issuer: str
    old_doc_id: bytes
    new_doc_id: bytes
    at: int

    def __post_init__(self) -> None:
        check_agency_id(self.issuer, "issuer")
        _check_size(self.old_doc_id, 32, "old_doc_id")
        _check_size(self.new_doc_id, 32, "new_doc_id")
        if self.old_doc_id == self.new_doc_id:
            raise EncodingError("a document cannot supersede itself")


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Version ``version`` of registry record ``(registry, record_id)``."""

    kind: ClassVar[str] = "record"
    issuer: str
    registry: str
    record_id: bytes  # opaque to the ledger; 1..64 bytes
    version: int  # >= 1; the rules require previous + 1
    digest: bytes

    def __post_init__(self) -> None:
        check_agency_id(self.issuer, "issuer")
        check_name(self.registry, "registry")
        if not 1 <= len(self.record_id) <= MAX_RECORD_ID:
            raise EncodingError(f"record_id must be 1..{MAX_RECORD_ID} bytes")
        if self.version < 1:
            raise EncodingError("record version must be >= 1")
        _check_size(self.digest, 32, "digest")


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """One agency's admin signature over ``governance_message``."""

    agency: str
    signature: bytes

    def __post_init__(self) -> None:
        check_agency_id(self.agency, "approving agency")
        _check_size(self.signature, 64, "approval signature")


@dataclass(frozen=True, slots=True, kw_only=True)
class Governance:
    """A change to the trust list, approved by agencies' admin keys.

    ``params`` keys are exactly ``GOVERNANCE_ACTIONS[action]`` in that order;
    their contents are checked when the trust list applies the change.
    ``version`` is the trust-list version this change produces, so a
    signed approval can take effect once only.
    """

    kind: ClassVar[str] = "governance"
    issuer: str
    action: str
    params: dict[str, Value]
    version: int
    approvals: tuple[Approval, ...] = field(default=())

    def __post_init__(self) -> None:
        check_agency_id(self.issuer, "issuer")
        keys = GOVERNANCE_ACTIONS.get(self.action)
        if keys is None:
            raise EncodingError(f"unknown governance action {self.action!r}")
        if tuple(self.params) != keys:
            raise EncodingError(f"{self.action} params must be {list(keys)}")
        if self.version < 1:
            raise EncodingError("governance version must be >= 1")
        if len(self.approvals) > MAX_APPROVALS:
            raise EncodingError("too many approvals")


Entry: TypeAlias = Anchor | Revoke | Supersede | Record | Governance

ANCHOR_FIELDS: Final = (
    Field("kind", str),
    Field("issuer", str, max_len=40),
    Field("doc_id", bytes, size=32),
    Field("doc_type", str, max_len=40),
    Field("issued_at", int),
    Field("valid_from", int, optional=True),
    Field("valid_until", int, optional=True),
)
REVOKE_FIELDS: Final = (
    Field("kind", str),
    Field("issuer", str, max_len=40),
    Field("doc_id", bytes, size=32),
    Field("reason", str, max_len=40),
    Field("at", int),
)
SUPERSEDE_FIELDS: Final = (
    Field("kind", str),
    Field("issuer", str, max_len=40),
    Field("old_doc_id", bytes, size=32),
    Field("new_doc_id", bytes, size=32),
    Field("at", int),
)
RECORD_FIELDS: Final = (
    Field("kind", str),
    Field("issuer", str, max_len=40),
    Field("registry", str, max_len=40),
    Field("record_id", bytes, max_len=MAX_RECORD_ID),
    Field("version", int, low=1),
    Field("digest", bytes, size=32),
)
GOVERNANCE_FIELDS: Final = (
    Field("kind", str),
    Field("issuer", str, max_len=40),
    Field("action", str, max_len=40),
    Field("params", dict),
    Field("version", int, low=1),
    Field("approvals", list, max_len=MAX_APPROVALS),
)


def entry_value(entry: Entry) -> dict[str, Value]:
    """The canonical map of ``entry`` (``kind`` first, schema order)."""
    if isinstance(entry, Anchor):
        return build_record(
            ANCHOR_FIELDS,
            {
                "kind": entry.kind,
                "issuer": entry.issuer,
                "doc_id": entry.doc_id,
                "doc_type": entry.doc_type,
                "issued_at": entry.issued_at,
                "valid_from": entry.valid_from,
                "valid_until": entry.valid_until,
            },
        )
    if isinstance(entry, Revoke):
        return {
            "kind": entry.kind,
            "issuer": entry.issuer,
            "doc_id": entry.doc_id,
            "reason": entry.reason,
            "at": entry.at,
        }
    if isinstance(entry, Supersede):
        return {
            "kind": entry.kind,
            "issuer": entry.issuer,
            "old_doc_id": entry.old_doc_id,
            "new_doc_id": entry.new_doc_id,
            "at": entry.at,
        }
    if isinstance(entry, Record):
        return {
            "kind": entry.kind,
            "issuer": entry.issuer,
            "registry": entry.registry,
            "record_id": entry.record_id,
            "version": entry.version,
            "digest": entry.digest,
        }
    return {
        "kind": entry.kind,
        "issuer": entry.issuer,
        "action": entry.action,
        "params": entry.params,
        "version": entry.version,
        "approvals": [[a.agency, a.signature] for a in entry.approvals],
    }


_SCHEMAS: Final[Mapping[str, tuple[Field, ...]]] = {
    "anchor": ANCHOR_FIELDS,
    "revoke": REVOKE_FIELDS,
    "supersede": SUPERSEDE_FIELDS,
    "record": RECORD_FIELDS,
    "governance": GOVERNANCE_FIELDS,
}


def encode_entry(entry: Entry) -> bytes:
    """The leaf bytes of ``entry``; they always decode back to ``entry``."""
    value = entry_value(entry)
    # Holding our own output to the schema catches a wrongly typed field
    # (say an int where bytes belong) before it reaches the log.
    check_record(value, _SCHEMAS[entry.kind], entry.kind)
    return pack(value)


def peek_kind(data: bytes) -> str | None:
    """The kind of canonical entry bytes without decoding them, or None if
    they do not start as a canonical entry of a known kind does.

    A canonical entry is a map whose first key is "kind", so its kind is
    the fixstr right after that key. Nothing else is checked: for bytes of
    unknown origin, ``decode_entry`` is the check.
    """
    if len(data) > 7 and data[1:6] == b"\xa4kind" and 0xA0 <= data[6] <= 0xBF:
        kind = data[7 : 7 + (data[6] & 0x1F)].decode("ascii", "replace")
        if kind in _SCHEMAS:
            return kind
    return None


def decode_entry(data: bytes) -> Entry:
    """Parse leaf bytes; raises EncodingError unless canonical and valid."""
    value = unpack(data)
    if not isinstance(value, dict) or not value:
        raise EncodingError("entry: expected a non-empty map")
    if next(iter(value)) != "kind":
        raise EncodingError("entry: 'kind' must be the first key")
    kind = value["kind"]
    if kind == "anchor":
        fast = _fast_anchor(value)
        if fast is not None:
            return fast
    if not isinstance(kind, str) or kind not in _SCHEMAS:
        raise EncodingError(f"entry: unknown kind {kind!r}")
    rec = check_record(value, _SCHEMAS[kind], kind)
    return _from_record(rec)


_ANCHOR_KEYS: Final = frozenset(
    ("kind", "issuer", "doc_id", "doc_type", "issued_at", *extra)
    for extra in ((), ("valid_from",), ("valid_until",), ("valid_from", "valid_until"))
)


def _fast_anchor(value: dict[str, Value]) -> Anchor | None:
    """The anchor in ``value`` if it plainly fits ANCHOR_FIELDS, else None.

    Anchors are most of the traffic and the generic ``check_record`` is the
    larger part of decoding one. This accepts only maps that check_record
    would accept too (exact key order, exact types, the same bounds);
    anything else returns None and takes the generic path, which raises
    with a precise message.
    """
    if tuple(value) not in _ANCHOR_KEYS:
        return None
    issuer, doc_id, doc_type = value["issuer"], value["doc_id"], value["doc_type"]
    issued_at = value["issued_at"]
    valid_from, valid_until = value.get("valid_from"), value.get("valid_until")
    if not (
        type(issuer) is str
        and type(doc_id) is bytes
        and type(doc_type) is str
        and type(issued_at) is int
        and len(issuer) <= 40
        and len(doc_id) == 32
        and len(doc_type) <= 40
        and is_u64(issued_at)
        # Present means an integer: a nil is refused by the generic path
        # (and would not encode back to the same bytes).
        and ("valid_from" not in value or is_u64(valid_from))
        and ("valid_until" not in value or is_u64(valid_until))
    ):
        return None
    return Anchor(
        issuer=issuer,
        doc_id=doc_id,
        doc_type=doc_type,
        issued_at=issued_at,
        valid_from=valid_from,  # type: ignore[arg-type]
        valid_until=valid_until,  # type: ignore[arg-type]
    )


def _from_record(rec: dict[str, Value]) -> Entry:
    kind = rec["kind"]
    if kind == "anchor":
        return Anchor(
            issuer=get_str(rec, "issuer"),
            doc_id=get_bytes(rec, "doc_id"),
            doc_type=get_str(rec, "doc_type"),
            issued_at=get_int(rec, "issued_at"),
            valid_from=get_opt_int(rec, "valid_from"),
            valid_until=get_opt_int(rec, "valid_until"),
        )
    if kind == "revoke":
        return Revoke(
            issuer=get_str(rec, "issuer"),
            doc_id=get_bytes(rec, "doc_id"),
            reason=get_str(rec, "reason"),
            at=get_int(rec, "at"),
        )
    if kind == "supersede":
        return Supersede(
            issuer=get_str(rec, "issuer"),
            old_doc_id=get_bytes(rec, "old_doc_id"),
            new_doc_id=get_bytes(rec, "new_doc_id"),
            at=get_int(rec, "at"),
        )
    if kind == "record":
        return Record(
            issuer=get_str(rec, "issuer"),
            registry=get_str(rec, "registry"),
            record_id=get_bytes(rec, "record_id"),
            version=get_int(rec, "version"),
            digest=get_bytes(rec, "digest"),
        )
    params = rec["params"]
    assert isinstance(params, dict)
    return Governance(
        issuer=get_str(rec, "issuer"),
        action=get_str(rec, "action"),
        params=params,
        version=get_int(rec, "version"),
        approvals=tuple(_approval(v) for v in get_list(rec, "approvals")),
    )


def _approval(value: Value) -> Approval:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], bytes)
    ):
        raise EncodingError("approval must be [agency, signature]")
    return Approval(agency=value[0], signature=value[1])


def derive_doc_id(salt: bytes, file_hash: bytes) -> bytes:
    """``SHA-256(DOC_ID || salt || file_hash)``; salt 16 bytes, hash 32."""
    _check_size(salt, 16, "salt")
    _check_size(file_hash, 32, "file hash")
    return hashlib.sha256(domains.DOC_ID + salt + file_hash).digest()


def record_key(registry: str, record_id: bytes) -> bytes:
    """The state-map key of a registry record.

    Domain-separated from doc ids (which hash under ``DOC_ID``), so an honest
    record and an honest document never share a key.
    """
    return hashlib.sha256(domains.RECORD_KEY + pack([registry, record_id])).digest()


def governance_message(origin: str, action: str, params: Value, version: int) -> bytes:
    """What each admin key signs to approve a governance change."""
    return domains.GOVERNANCE + pack([origin, action, params, version])


def sign_approval(
    origin: str,
    *,
    action: str,
    params: dict[str, Value],
    version: int,
    agency: str,
    key: SigningKey,
) -> Approval:
    """``agency``'s approval of a change, signed with one of its admin keys."""
    message = governance_message(origin, action, params, version)
    return Approval(agency=agency, signature=key.sign(message))
