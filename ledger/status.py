"""The current status of a document or registry record: state-map values.

The state map holds, under a doc id or a ``record_key``, the canonical
encoding of one ``StatusRecord``. Which optional fields are present depends
on ``status`` (checked on construction, so a half-filled or over-filled
record cannot be built or decoded):

- documents (``valid``, ``revoked``, ``superseded``) carry ``doc_type``,
  ``issued_at`` and ``anchor_leaf`` (the leaf index of their anchor);
  ``revoked`` adds ``revoked_at`` and ``reason``; ``superseded`` adds
  ``superseded_by``. A superseded document may later be revoked; it then
  keeps ``superseded_by`` so the record still says what replaced it.
- ``record`` carries ``registry``, ``record_id``, ``version``, ``digest``.

``leaf`` is always the index of the leaf that produced this status (the
last change), so a verifier can fetch and check that leaf.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Final

from ledger.codec import (
    Field,
    Value,
    check_record,
    get_int,
    get_opt_bytes,
    get_opt_int,
    get_opt_str,
    get_str,
    is_u64,
    pack,
    unpack,
)
from ledger.entries import Anchor, Record, Revoke, Supersede
from ledger.errors import EncodingError

DOCUMENT_STATUSES: Final = ("valid", "revoked", "superseded")
STATUSES: Final = (*DOCUMENT_STATUSES, "record")

STATUS_FIELDS: Final = (
    Field("status", str, max_len=16),
    Field("issuer", str, max_len=40),
    Field("doc_type", str, optional=True, max_len=40),
    Field("issued_at", int, optional=True),
    Field("valid_from", int, optional=True),
    Field("valid_until", int, optional=True),
    Field("anchor_leaf", int, optional=True),
    Field("leaf", int),
    Field("revoked_at", int, optional=True),
    Field("reason", str, optional=True, max_len=40),
    Field("superseded_by", bytes, optional=True, size=32),
    Field("registry", str, optional=True, max_len=40),
    Field("record_id", bytes, optional=True, max_len=64),
    Field("version", int, optional=True, low=1),
    Field("digest", bytes, optional=True, size=32),
)
_NAMES: Final = tuple(f.name for f in STATUS_FIELDS)
# Every field's value in schema order, read in one C call (the hot path:
# one status record per entry of every block).
_FIELD_VALUES: Final = operator.attrgetter(*_NAMES)
# Fields each status requires beyond status, issuer and leaf.
_REQUIRED: Final = {
    "valid": ("doc_type", "issued_at", "anchor_leaf"),
    "revoked": ("doc_type", "issued_at", "anchor_leaf", "revoked_at", "reason"),
    "superseded": ("doc_type", "issued_at", "anchor_leaf", "superseded_by"),
    "record": ("registry", "record_id", "version", "digest"),
}
_REGISTRY_FIELDS: Final = ("registry", "record_id", "version", "digest")
_DOCUMENT_FIELDS: Final = (
    "doc_type",
    "issued_at",
    "valid_from",
    "valid_until",
    "anchor_leaf",
    "revoked_at",
    "reason",
    "superseded_by",
)
# Fields each status must leave absent, because the rules never write them
# for it; so a record decodes only in the shapes the rules produce. A
# revoked document keeps ``superseded_by`` if it was superseded first.
_ABSENT_NAMES: Final = {
    "valid": ("revoked_at", "reason", "superseded_by", *_REGISTRY_FIELDS),
    "revoked": _REGISTRY_FIELDS,
    "superseded": ("revoked_at", "reason", *_REGISTRY_FIELDS),
    "record": _DOCUMENT_FIELDS,
}
# Per status: a getter of those fields in one C call (this runs for every
# record built or decoded) and the all-None tuple it must return.
_ABSENT: Final = {
    status: (operator.attrgetter(*names), (None,) * len(names))
    for status, names in _ABSENT_NAMES.items()
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRecord:
    """One state-map value; see the module docstring for which fields apply."""

    status: str
    issuer: str
    leaf: int  # leaf index of the change that produced this status
    doc_type: str | None = None
    issued_at: int | None = None
    valid_from: int | None = None
    valid_until: int | None = None
    anchor_leaf: int | None = None
    revoked_at: int | None = None
    reason: str | None = None
    superseded_by: bytes | None = None
    registry: str | None = None
    record_id: bytes | None = None
    version: int | None = None
    digest: bytes | None = None

    def __post_init__(self) -> None:
        required = _REQUIRED.get(self.status)
        if required is None:
            raise EncodingError(f"unknown status {self.status!r}")
        for name in required:
            if getattr(self, name) is None:
                raise EncodingError(f"{self.status} status needs {name!r}")
        getter, nones = _ABSENT[self.status]
        if getter(self) != nones:
            names = _ABSENT_NAMES[self.status]
            extra = [n for n in names if getattr(self, n) is not None]
            raise EncodingError(f"{self.status} status cannot carry {extra}")

    @property
    def is_document(self) -> bool:
        return self.status != "record"

    def shown_status(self, now_ms: int) -> str:
        """The status a reader is told at ``now_ms``: a valid document is
        expired from its ``valid_until`` on, not yet valid before its
        ``valid_from``; any other status is told as it is."""
        if self.status != "valid":
            return self.status
        if self.valid_until is not None and self.valid_until <= now_ms:
            return "expired"
        if self.valid_from is not None and self.valid_from > now_ms:
            return "not_yet_valid"
        return "valid"

    def to_value(self) -> dict[str, Value]:
        """The canonical map (schema order, absent optionals left out)."""
        return {
            name: val
            for name, val in zip(_NAMES, _FIELD_VALUES(self), strict=True)
            if val is not None
        }

    def encode(self) -> bytes:
        return pack(self.to_value())

    @classmethod
    def from_value(cls, value: Value) -> StatusRecord:
        fast = _fast_document(value)
        if fast is not None:
            return fast
        rec = check_record(value, STATUS_FIELDS, "status")
        return cls(
            status=get_str(rec, "status"),
            issuer=get_str(rec, "issuer"),
            leaf=get_int(rec, "leaf"),
            doc_type=get_opt_str(rec, "doc_type"),
            issued_at=get_opt_int(rec, "issued_at"),
            valid_from=get_opt_int(rec, "valid_from"),
            valid_until=get_opt_int(rec, "valid_until"),
            anchor_leaf=get_opt_int(rec, "anchor_leaf"),
            revoked_at=get_opt_int(rec, "revoked_at"),
            reason=get_opt_str(rec, "reason"),
            superseded_by=get_opt_bytes(rec, "superseded_by"),
            registry=get_opt_str(rec, "registry"),
            record_id=get_opt_bytes(rec, "record_id"),
            version=get_opt_int(rec, "version"),
            digest=get_opt_bytes(rec, "digest"),
        )

    @classmethod
    def decode(cls, data: bytes) -> StatusRecord:
        """Parse a state-map value; EncodingError unless canonical and whole."""
        return cls.from_value(unpack(data))

    # --- the transitions the rules make --------------------------------------

    @classmethod
    def anchored(cls, entry: Anchor, *, leaf: int) -> StatusRecord:
        """A freshly anchored document at leaf index ``leaf``."""
        required = (entry.doc_type, entry.issued_at, leaf)
        if cls is StatusRecord and None not in required:
            # The hot path (every anchor of every block): the fields a
            # valid document requires are all there and it has no others,
            # so the record passes __post_init__ as built.
            return _unchecked(
                (
                    "valid",
                    entry.issuer,
                    entry.doc_type,
                    entry.issued_at,
                    entry.valid_from,
                    entry.valid_until,
                    leaf,
                    leaf,
                    *_NO_CHANGE,
                )
            )
        return cls(
            status="valid",
            issuer=entry.issuer,
            leaf=leaf,
            doc_type=entry.doc_type,
            issued_at=entry.issued_at,
            valid_from=entry.valid_from,
            valid_until=entry.valid_until,
            anchor_leaf=leaf,
        )

    def revoked(self, entry: Revoke, *, leaf: int) -> StatusRecord:
        """This document revoked by ``entry`` at leaf index ``leaf``."""
        return dataclasses.replace(
            self, status="revoked", leaf=leaf, revoked_at=entry.at, reason=entry.reason
        )

    def superseded(self, entry: Supersede, *, leaf: int) -> StatusRecord:
        """This document replaced by ``entry.new_doc_id`` at leaf ``leaf``."""
        return dataclasses.replace(
            self, status="superseded", leaf=leaf, superseded_by=entry.new_doc_id
        )

    @classmethod
    def recorded(cls, entry: Record, *, leaf: int) -> StatusRecord:
        """Registry record ``entry`` as of leaf index ``leaf``."""
        return cls(
            status="record",
            issuer=entry.issuer,
            leaf=leaf,
            registry=entry.registry,
            record_id=entry.record_id,
            version=entry.version,
            digest=entry.digest,
        )


# Each field's slot setter, in schema order (``_NAMES``), and the values of
# the fields after ``leaf`` in a record nothing changed since its anchor.
_SETTERS: Final = tuple(vars(StatusRecord)[name].__set__ for name in _NAMES)
_NO_CHANGE: Final = (None,) * (len(_NAMES) - _NAMES.index("leaf") - 1)


def _unchecked(values: tuple[Value, ...]) -> StatusRecord:
    """The record holding ``values`` (every field, in schema order) without
    ``__init__``'s keyword binding or ``__post_init__``'s checks: 1.5 µs
    an anchored record instead of 2.2 µs. Precondition: the caller knows
    the record passes those checks."""
    rec = object.__new__(StatusRecord)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(rec, value)
    return rec


# The key orders of a document's record that has only been anchored: what
# almost every status read decodes.
_ANCHORED_KEYS: Final = frozenset(
    ("status", "issuer", "doc_type", "issued_at", *window, "anchor_leaf", "leaf")
    for window in ((), ("valid_from",), ("valid_until",), ("valid_from", "valid_until"))
)


def _fast_document(value: Value) -> StatusRecord | None:
    """The record in ``value`` if it plainly is an anchored document's, else
    None.

    Like ``entries._fast_anchor``: it accepts only maps that
    ``check_record(value, STATUS_FIELDS)`` accepts too (the exact key order,
    exact types, the same bounds), and the constructor's checks still run;
    anything else takes the generic path, which raises with a precise
    message.
    """
    if type(value) is not dict or tuple(value) not in _ANCHORED_KEYS:
        return None
    status, issuer, doc_type = value["status"], value["issuer"], value["doc_type"]
    if not (
        type(status) is str
        and type(issuer) is str
        and type(doc_type) is str
        and len(status) <= 16
        and len(issuer) <= 40
        and len(doc_type) <= 40
        and is_u64(value["issued_at"])
        and is_u64(value["anchor_leaf"])
        and is_u64(value["leaf"])
        # Present means an integer: a nil is refused by the generic path.
        and ("valid_from" not in value or is_u64(value["valid_from"]))
        and ("valid_until" not in value or is_u64(value["valid_until"]))
    ):
        return None
    return StatusRecord(**value)  # type: ignore[arg-type]
