"""Offline verification of a proof bundle with nothing but the trust list.

``verify_bundle`` returns a ``Verdict`` for the statuses a document can
have (valid, revoked, superseded, expired, not_yet_valid, not_found) and
raises ``VerificationError`` for the failures (tampered, unknown_issuer,
stale, malformed). Any input, however mangled, ends in one of the two:
the bundle is untrusted data from the network or a QR code.

Steps (each opens with its number below):
 (1) shape: exact keys, types, canonical hex and base64, bounds (malformed);
 (2) the checkpoint note carries a quorum of the trust list's node keys
     and names this log (tampered);
 (3) freshness: now - checkpoint time <= max_age (stale);
 (4) the anchor leaf is in the checkpoint's tree and anchors this doc id;
 (5) its issuer signed it: batch path to the batch root, signature by one
     of the agency's issuer keys, active or retired (unknown_issuer,
     tampered);
 (6) each change leaf, the same way, and it changes this document;
 (7) the state proof of this doc id against the checkpoint's state root,
     and the status record equal to the one the leaves produce;
 (8) the file and salt, when given, derive this doc id;
 (9) the status, from the record and the time.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.entries import Anchor, Entry, Revoke, Supersede, decode_entry, derive_doc_id
from ledger.errors import EncodingError, VerificationError
from ledger.keys import decode_base64, key_id, verify_ed25519
from ledger.merkle import leaf_hash, root_from_inclusion, verify_inclusion
from ledger.stateproof import StateProof, verify_state
from ledger.status import StatusRecord
from ledger.submission import MAX_ENTRIES, MAX_ENTRY_SIZE, signing_message
from ledger.trust import TrustList

__all__ = ["Verdict", "verify_bundle"]

BUNDLE_VERSION: Final = 1
# Bounds on untrusted input, far above what an honest bundle holds.
MAX_PATH: Final = 64  # hashes in an inclusion or batch path
MAX_CHANGES: Final = 16  # an honest document changes status twice at most
MAX_NOTE: Final = 16 * 1024
MAX_BLOB: Final = 4 * MAX_ENTRY_SIZE // 3 + 4  # base64 of the largest leaf

_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
_TOP_KEYS: Final = (
    "version",
    "origin",
    "doc_id",
    "checkpoint",
    "anchor",
    "changes",
    "state",
)
_LEAF_KEYS: Final = ("leaf", "index", "inclusion", "submission")
_SUB_KEYS: Final = (
    "agency",
    "key_id",
    "nonce",
    "timestamp",
    "signature",
    "batch_size",
    "batch_index",
    "batch_path",
)
_STATE_KEYS: Final = ("key", "value", "proof")


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What a bundle proves about one document as of ``checkpoint``."""

    status: str  # valid | revoked | superseded | expired | not_yet_valid | not_found
    doc_id: bytes
    checkpoint: Checkpoint
    issuer: str | None = None
    doc_type: str | None = None
    issued_at: int | None = None
    valid_from: int | None = None
    valid_until: int | None = None
    revoked_at: int | None = None
    reason: str | None = None
    superseded_by: bytes | None = None


# --- (1): shape -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signed:
    agency: str
    key_id: bytes
    nonce: bytes
    timestamp_ms: int
    signature: bytes
    batch_size: int
    batch_index: int
    batch_path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Leaf:
    leaf: bytes
    index: int
    inclusion: tuple[bytes, ...]
    signed: _Signed


@dataclass(frozen=True, slots=True)
class _Bundle:
    origin: str
    doc_id: bytes
    note: str
    anchor: _Leaf | None
    changes: tuple[_Leaf, ...]
    key: bytes
    value: bytes | None
    proof: StateProof


def _malformed(message: str) -> VerificationError:
    return VerificationError("malformed", message)


def _tampered(message: str) -> VerificationError:
    return VerificationError("tampered", message)


def _obj(value: object, keys: tuple[str, ...], where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or set(value) != set(keys):
        raise _malformed(f"{where}: expected an object with keys {list(keys)}")
    return value


def _str(value: object, where: str, limit: int = 256) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _malformed(f"{where}: expected a string of at most {limit}")
    return value


def _uint(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(f"{where}: expected an integer")
    if not 0 <= value < 2**64:
        raise _malformed(f"{where}: out of range")
    return value


def hex_field(value: object, where: str, size: int) -> bytes:
    """``size`` bytes spelled as ``value``, lowercase hex (the one spelling);
    VerificationError("malformed") naming ``where`` otherwise."""
    text = _str(value, where, 2 * size)
    if len(text) != 2 * size or not _HEX.fullmatch(text):
        raise _malformed(f"{where}: expected {size} bytes of lowercase hex")
    return bytes.fromhex(text)


def hash_list(value: object, where: str) -> tuple[bytes, ...]:
    """A list of at most ``MAX_PATH`` hashes in lowercase hex, as bytes."""
    if not isinstance(value, list) or len(value) > MAX_PATH:
        raise _malformed(f"{where}: expected a list of at most {MAX_PATH} hashes")
    return tuple(hex_field(item, f"{where}[{i}]", 32) for i, item in enumerate(value))


def _b64(value: object, where: str, limit: int = MAX_BLOB) -> bytes:
    try:
        return decode_base64(_str(value, where, limit))
    except ValueError as exc:
        raise _malformed(f"{where}: {exc}") from exc


def _parse_signed(value: object, where: str) -> _Signed:
    rec = _obj(value, _SUB_KEYS, where)
    return _Signed(
        agency=_str(rec["agency"], f"{where}.agency", 40),
        key_id=hex_field(rec["key_id"], f"{where}.key_id", 4),
        nonce=hex_field(rec["nonce"], f"{where}.nonce", 16),
        timestamp_ms=_uint(rec["timestamp"], f"{where}.timestamp"),
        signature=_b64(rec["signature"], f"{where}.signature", 88),
        batch_size=_uint(rec["batch_size"], f"{where}.batch_size"),
        batch_index=_uint(rec["batch_index"], f"{where}.batch_index"),
        batch_path=hash_list(rec["batch_path"], f"{where}.batch_path"),
    )


def _parse_leaf(value: object, where: str) -> _Leaf:
    rec = _obj(value, _LEAF_KEYS, where)
    return _Leaf(
        leaf=_b64(rec["leaf"], f"{where}.leaf"),
        index=_uint(rec["index"], f"{where}.index"),
        inclusion=hash_list(rec["inclusion"], f"{where}.inclusion"),
        signed=_parse_signed(rec["submission"], f"{where}.submission"),
    )


def _parse(bundle: object) -> _Bundle:
    top = _obj(bundle, _TOP_KEYS, "bundle")
    if _uint(top["version"], "version") != BUNDLE_VERSION:
        raise _malformed(f"bundle version {top['version']}, expected {BUNDLE_VERSION}")
    changes = top["changes"]
    if not isinstance(changes, list) or len(changes) > MAX_CHANGES:
        raise _malformed(f"changes: expected a list of at most {MAX_CHANGES}")
    state = _obj(top["state"], _STATE_KEYS, "state")
    anchor = top["anchor"]
    value = state["value"]
    return _Bundle(
        origin=_str(top["origin"], "origin"),
        doc_id=hex_field(top["doc_id"], "doc_id", 32),
        note=_str(top["checkpoint"], "checkpoint", MAX_NOTE),
        anchor=None if anchor is None else _parse_leaf(anchor, "anchor"),
        changes=tuple(_parse_leaf(c, f"changes[{i}]") for i, c in enumerate(changes)),
        key=hex_field(state["key"], "state.key", 32),
        value=None if value is None else _b64(value, "state.value"),
        proof=StateProof.from_json(state["proof"]),
    )


# --- (4) - (6): leaves ---------------------------------------------------------


def _check_leaf(part: _Leaf, cp: Checkpoint, trust: TrustList) -> Entry:
    """Steps (4) and (5) for one leaf: in the log, signed by its issuer."""
    digest = leaf_hash(part.leaf)
    verify_inclusion(digest, part.index, cp.size, part.inclusion, cp.root)
    try:
        entry = decode_entry(part.leaf)
    except EncodingError as exc:
        raise _tampered(f"leaf {part.index} does not decode: {exc}") from exc
    _check_issuer(part.signed, digest, entry, trust)
    return entry


def _check_issuer(
    signed: _Signed, digest: bytes, entry: Entry, trust: TrustList
) -> None:
    # An entry only means something if its own issuer signed the batch: the
    # rules refuse `not_issuer`, so a leaf whose issuer is not the signer
    # was never accepted.
    if entry.issuer != signed.agency:
        raise _tampered(f"leaf issued by {entry.issuer}, signed by {signed.agency}")
    try:
        agency = trust.agency(signed.agency)
    except KeyError:
        raise VerificationError(
            "unknown_issuer", f"agency {signed.agency} is not in the trust list"
        ) from None
    # Retired keys still verify what they signed before a rotation.
    keys = (*agency.issuer_keys, *agency.retired_issuer_keys)
    key = next((k for k in keys if key_id(agency.id, k) == signed.key_id), None)
    if key is None:
        raise VerificationError(
            "unknown_issuer", f"key {signed.key_id.hex()} is not a key of {agency.id}"
        )
    if not 0 < signed.batch_size <= MAX_ENTRIES:
        raise _tampered(f"batch of {signed.batch_size} entries")
    root = root_from_inclusion(
        digest, signed.batch_index, signed.batch_size, signed.batch_path
    )
    message = signing_message(
        trust.origin, agency.id, signed.nonce, signed.timestamp_ms, root
    )
    verify_ed25519(key, message, signed.signature)


def _check_changes(
    parsed: _Bundle, anchor_index: int, cp: Checkpoint, trust: TrustList
) -> list[tuple[int, Revoke | Supersede]]:
    """Step (6): every change is in the log, signed, after the anchor, in
    order, and changes this document's status."""
    out: list[tuple[int, Revoke | Supersede]] = []
    last = anchor_index
    for part in parsed.changes:
        entry = _check_leaf(part, cp, trust)
        if part.index <= last:
            raise _tampered(f"change leaf {part.index} out of order")
        concerns = (isinstance(entry, Revoke) and entry.doc_id == parsed.doc_id) or (
            isinstance(entry, Supersede) and entry.old_doc_id == parsed.doc_id
        )
        if not concerns or not isinstance(entry, Revoke | Supersede):
            raise _tampered(f"leaf {part.index} does not change this document")
        out.append((part.index, entry))
        last = part.index
    return out


# --- (7): the state ------------------------------------------------------------


def _expected_record(
    anchor: Anchor, index: int, changes: Sequence[tuple[int, Revoke | Supersede]]
) -> StatusRecord:
    """The status record the rules derive from these leaves; tampered if no
    record can be (a change after a revocation: the rules refuse it, so no
    genuine log holds that sequence)."""
    rec = StatusRecord.anchored(anchor, leaf=index)
    try:
        for leaf, change in changes:
            if isinstance(change, Revoke):
                rec = rec.revoked(change, leaf=leaf)
            else:
                rec = rec.superseded(change, leaf=leaf)
    except EncodingError as exc:
        raise _tampered(f"the changes cannot follow one another: {exc}") from exc
    return rec


def _check_state(parsed: _Bundle, cp: Checkpoint) -> StatusRecord | None:
    if parsed.key != parsed.doc_id:
        raise _tampered("the state proof is for another key")
    # Stale-state attack: a state proof from an older checkpoint (before a
    # revocation) paired with this checkpoint does not reach its state root.
    verify_state(cp.state_root, parsed.key, parsed.value, parsed.proof)
    if parsed.value is None:
        return None
    try:
        return StatusRecord.decode(parsed.value)
    except EncodingError as exc:
        raise _tampered(f"the proven status record does not decode: {exc}") from exc


# --- the pipeline --------------------------------------------------------------


def verify_bundle(
    bundle: Mapping[str, object],
    trust: TrustList,
    *,
    document: bytes | None = None,
    salt: bytes | None = None,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
) -> Verdict:
    """Verify ``bundle`` (parsed JSON) against ``trust``; see the module doc.

    ``now_ms`` defaults to the wall clock; it decides freshness (only if
    ``max_age_ms`` is given) and validity dates. A document counts as
    expired once ``valid_until`` is at or before now or the checkpoint's
    time, whichever is later, so a verifier clock set back cannot revive it.
    ``document`` needs ``salt`` (ValueError otherwise).
    """
    if document is not None and salt is None:
        raise ValueError("checking a document needs its salt")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms

    # (1): shape, before anything is hashed or verified.
    parsed = _parse(bundle)

    # (2): a final checkpoint: a quorum of distinct node keys of the trust
    # list. A checkpoint signed by one agency (a lone compromised node, or
    # a fork it signed alone) is refused, as is one of another log.
    if parsed.origin != trust.origin:
        raise _tampered(
            f"bundle of log {parsed.origin!r}, trust list of {trust.origin!r}"
        )
    cp, _ = verify_checkpoint(
        parsed.note, trust.note_verifiers(), trust.quorum, origin=trust.origin
    )

    # (3): freshness. An old but genuine bundle (from before a revocation)
    # is refused when the verifier sets a limit.
    if max_age_ms is not None and now - cp.time_ms > max_age_ms:
        raise VerificationError(
            "stale", f"checkpoint is {now - cp.time_ms} ms old, limit {max_age_ms}"
        )

    # (4), (5): the anchor, in the log and signed by its issuer. Leaf
    # substitution: a genuine anchor of another document is refused.
    anchor: Anchor | None = None
    if parsed.anchor is not None:
        entry = _check_leaf(parsed.anchor, cp, trust)
        if not isinstance(entry, Anchor) or entry.doc_id != parsed.doc_id:
            raise _tampered("the anchor leaf does not anchor this document")
        anchor = entry

    # (6): the changes, the same way.
    if anchor is None and parsed.changes:
        raise _tampered("changes without an anchor")
    index = parsed.anchor.index if parsed.anchor is not None else 0
    changes = _check_changes(parsed, index, cp, trust) if anchor else []

    # (7): the proven status agrees with the leaves. Withholding a change
    # (dropping the revoke leaf) or claiming another status fails here.
    record = _check_state(parsed, cp)
    if (anchor is None) != (record is None):
        raise _tampered("the state and the log disagree on whether it exists")
    if anchor is not None and record != _expected_record(anchor, index, changes):
        raise _tampered("the proven status is not the one its leaves produce")

    # (8): the file, when given, is the one anchored (a forged or altered
    # file with a genuine QR code).
    if document is not None and salt is not None:
        try:
            derived = derive_doc_id(salt, hashlib.sha256(document).digest())
        except EncodingError as exc:
            raise _malformed(f"salt: {exc}") from exc
        if derived != parsed.doc_id:
            raise _tampered("the file does not match this document id")

    # (9): the status.
    return _verdict(parsed.doc_id, cp, record, now)


def _verdict(
    doc_id: bytes, cp: Checkpoint, record: StatusRecord | None, now: int
) -> Verdict:
    if record is None:
        return Verdict(status="not_found", doc_id=doc_id, checkpoint=cp)
    if record.status in ("revoked", "superseded"):
        status = record.status
    elif record.valid_until is not None and record.valid_until <= max(now, cp.time_ms):
        status = "expired"
    elif record.valid_from is not None and now < record.valid_from:
        status = "not_yet_valid"
    else:
        status = "valid"
    return Verdict(
        status=status,
        doc_id=doc_id,
        checkpoint=cp,
        issuer=record.issuer,
        doc_type=record.doc_type,
        issued_at=record.issued_at,
        valid_from=record.valid_from,
        valid_until=record.valid_until,
        revoked_at=record.revoked_at,
        reason=record.reason,
        superseded_by=record.superseded_by,
    )
