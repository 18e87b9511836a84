"""The binary form of a proof bundle: the JSON form's content in canonical
msgpack (``ledger.codec``), in about 60 % of the bytes (58 % at 10^6
entries: most of a bundle is hashes, 34 bytes here against 66 in JSON).

Layout: the JSON form's fields, names and order (``ledger.bundle``), with
hashes, ids, signatures and leaves as raw ``bin`` instead of hex or base64,
and an optional field left out instead of ``nil``::

    {"version": 1, "origin": str, "doc_id": bin 32,
     "checkpoint": str, the signed note byte for byte (its signatures
                   cover those bytes),
     "anchor": LEAF (left out: the document is not on the ledger),
     "changes": [LEAF, ...],
     "state": {"key": bin 32, "value": bin (left out: no status record),
               "proof": bin, StateProof.to_bytes (docs/statemap.md)}}

    LEAF = {"leaf": bin, "index": uint, "inclusion": [bin 32, ...],
            "submission": {"agency": str, "key_id": bin 4, "nonce": bin 16,
                           "timestamp": uint, "signature": bin,
                           "batch_size": uint, "batch_index": uint,
                           "batch_path": [bin 32, ...]}}

A reader tells the forms apart by the first byte: a msgpack map header
here (``0x86`` or ``0x87``), ``{`` or whitespace for JSON. ``version`` comes
first, so a reader can refuse a version it does not know before anything
else. The bounds are the JSON verifier's (``ledger.verify``): a bundle one
form refuses for its size the other refuses too.

``decode_bundle`` gives back the JSON form, which ``verify_bundle`` takes,
so both forms go through the one verifier; neither function here verifies
anything but the shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from ledger import codec
from ledger.codec import Field
from ledger.errors import EncodingError, VerificationError
from ledger.keys import decode_base64, encode_base64
from ledger.stateproof import StateProof
from ledger.verify import (
    BUNDLE_VERSION,
    MAX_BLOB,
    MAX_CHANGES,
    MAX_NOTE,
    MAX_PATH,
    hash_list,
    hex_field,
)

__all__ = [
    "MAX_SIZE",
    "MEDIA_TYPE",
    "BundleFormat",
    "decode_bundle",
    "encode_bundle",
    "is_binary_bundle",
]


class BundleFormat(StrEnum):
    """The two forms of a bundle, by the names the API and CLI give them."""

    JSON = "json"
    BINARY = "binary"


# What the API answers the binary form as.
MEDIA_TYPE: Final = "application/vnd.agency-ledger.bundle+msgpack"

HASH_SIZE: Final = 32


def _base64_bytes(chars: int) -> int:
    """The most bytes ``chars`` characters of base64 decode to."""
    return chars // 4 * 3


# The JSON verifier bounds blobs by their base64 length; these are the
# same bounds on the raw bytes.
MAX_LEAF: Final = _base64_bytes(MAX_BLOB)
MAX_SIGNATURE: Final = _base64_bytes(88)  # 88: the verifier's signature bound
# A state proof at its deepest (256 siblings) encodes in under 9 KiB.
MAX_STATE_PROOF: Final = 16 * 1024
# Above the largest bundle the bounds above allow (17 leaves of 64 KiB, a
# note of 16 Ki characters: about 1.4 MB), so only those bounds refuse one.
MAX_SIZE: Final = 2 * 1024 * 1024

# The first byte of a msgpack map: fixmap, map 16, map 32.
_MAP_HEADERS: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])

# Strings are bounded as the verifier bounds them (origin 256, agency 40).
_TOP: Final = (
    Field("version", int),
    Field("origin", str, max_len=256),
    Field("doc_id", bytes, size=HASH_SIZE),
    Field("checkpoint", str, max_len=MAX_NOTE),
    Field("anchor", dict, optional=True),
    Field("changes", list, max_len=MAX_CHANGES),
    Field("state", dict),
)
_LEAF: Final = (
    Field("leaf", bytes, max_len=MAX_LEAF),
    Field("index", int),
    Field("inclusion", list, max_len=MAX_PATH),
    Field("submission", dict),
)
_SUBMISSION: Final = (
    Field("agency", str, max_len=40),
    Field("key_id", bytes, size=4),
    Field("nonce", bytes, size=16),
    Field("timestamp", int),
    Field("signature", bytes, max_len=MAX_SIGNATURE),
    Field("batch_size", int),
    Field("batch_index", int),
    Field("batch_path", list, max_len=MAX_PATH),
)
_STATE: Final = (
    Field("key", bytes, size=HASH_SIZE),
    Field("value", bytes, optional=True, max_len=MAX_LEAF),
    Field("proof", bytes, max_len=MAX_STATE_PROOF),
)

JSONBundle = dict[str, object]


def _malformed(message: str) -> VerificationError:
    return VerificationError("malformed", f"binary bundle: {message}")


def is_binary_bundle(data: bytes) -> bool:
    """Whether ``data`` starts as the binary form does (a msgpack map).

    Only the first byte is read: JSON text starts with ``{`` or whitespace,
    never with a map header. Nothing else is checked.
    """
    return bool(data) and data[0] in _MAP_HEADERS


# --- decoding ------------------------------------------------------------------


def decode_bundle(data: bytes) -> JSONBundle:
    """The JSON form of the binary bundle ``data``.

    Any bytes are accepted as input: all but the canonical encoding of a
    bundle within the bounds raise ``VerificationError("malformed")``.
    Nothing is verified: pass the result to ``verify_bundle``.
    """
    try:
        top = codec.unpack(data, max_size=MAX_SIZE)
    except EncodingError as exc:
        raise _malformed(str(exc)) from exc
    # The version first: a later version may have fields this one refuses.
    if not isinstance(top, dict) or "version" not in top:
        raise _malformed("expected a map starting with version")
    version = top["version"]
    if type(version) is not int or version != BUNDLE_VERSION:
        raise _malformed(f"version {version!r}, expected {BUNDLE_VERSION}")
    rec = _record(top, _TOP, "bundle")
    anchor = rec.get("anchor")
    changes = codec.get_list(rec, "changes")
    state = _record(rec["state"], _STATE, "state")
    value = codec.get_opt_bytes(state, "value")
    return {
        "version": BUNDLE_VERSION,
        "origin": codec.get_str(rec, "origin"),
        "doc_id": codec.get_bytes(rec, "doc_id").hex(),
        "checkpoint": codec.get_str(rec, "checkpoint"),
        "anchor": None if anchor is None else _leaf_json(anchor, "anchor"),
        "changes": [_leaf_json(c, f"changes[{i}]") for i, c in enumerate(changes)],
        "state": {
            "key": codec.get_bytes(state, "key").hex(),
            "value": None if value is None else encode_base64(value),
            # Its own decoder holds it to its schema and invariants.
            "proof": StateProof.from_bytes(codec.get_bytes(state, "proof")).to_json(),
        },
    }


def _record(
    value: codec.Value, fields: tuple[Field, ...], where: str
) -> dict[str, codec.Value]:
    try:
        return codec.check_record(value, fields, where)
    except EncodingError as exc:
        raise _malformed(str(exc)) from exc


def _hashes_json(value: codec.Value, where: str) -> list[str]:
    """Precondition: ``value`` is a list (its record's schema said so)."""
    assert isinstance(value, list)
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, bytes) or len(item) != HASH_SIZE:
            raise _malformed(f"{where}[{i}]: expected {HASH_SIZE} bytes")
        out.append(item.hex())
    return out


def _leaf_json(value: codec.Value, where: str) -> JSONBundle:
    rec = _record(value, _LEAF, where)
    sub = _record(rec["submission"], _SUBMISSION, f"{where}.submission")
    return {
        "leaf": encode_base64(codec.get_bytes(rec, "leaf")),
        "index": codec.get_int(rec, "index"),
        "inclusion": _hashes_json(rec["inclusion"], f"{where}.inclusion"),
        "submission": {
            "agency": codec.get_str(sub, "agency"),
            "key_id": codec.get_bytes(sub, "key_id").hex(),
            "nonce": codec.get_bytes(sub, "nonce").hex(),
            "timestamp": codec.get_int(sub, "timestamp"),
            "signature": encode_base64(codec.get_bytes(sub, "signature")),
            "batch_size": codec.get_int(sub, "batch_size"),
            "batch_index": codec.get_int(sub, "batch_index"),
            "batch_path": _hashes_json(sub["batch_path"], f"{where}.batch_path"),
        },
    }


# --- encoding ------------------------------------------------------------------


def encode_bundle(bundle: Mapping[str, object]) -> bytes:
    """The binary form of the JSON-form ``bundle``.

    Precondition: ``bundle`` has the shape ``build_bundle`` gives it (exact
    keys, lowercase hex, canonical base64, the bounds above); anything else
    raises ``VerificationError("malformed")``. Nothing is verified, and
    ``decode_bundle`` of the result gives ``bundle`` back.
    """
    top = _keys(bundle, _TOP, "bundle")
    state = _keys(top["state"], _STATE, "state")
    anchor, changes, value = top["anchor"], top["changes"], state["value"]
    version = top["version"]
    if type(version) is not int or version != BUNDLE_VERSION:
        raise _malformed(f"version {version!r}, expected {BUNDLE_VERSION}")
    # Lists are bounded before their items are converted, not after.
    if not isinstance(changes, list) or len(changes) > MAX_CHANGES:
        raise _malformed(f"changes: expected a list of at most {MAX_CHANGES}")
    raw_state: dict[str, codec.Value] = {
        "key": hex_field(state["key"], "state.key", HASH_SIZE),
        "value": None if value is None else _unbase64(value, "state.value"),
        "proof": StateProof.from_json(state["proof"]).to_bytes(),
    }
    raw: dict[str, codec.Value] = {
        "version": BUNDLE_VERSION,
        "origin": _plain(top["origin"], "origin"),
        "doc_id": hex_field(top["doc_id"], "doc_id", HASH_SIZE),
        "checkpoint": _plain(top["checkpoint"], "checkpoint"),
        "anchor": None if anchor is None else _leaf_raw(anchor, "anchor"),
        "changes": [_leaf_raw(c, f"changes[{i}]") for i, c in enumerate(changes)],
        "state": _built(_STATE, raw_state, "state"),
    }
    return codec.pack(_built(_TOP, raw, "bundle"))


def _built(
    fields: tuple[Field, ...], values: dict[str, codec.Value], where: str
) -> dict[str, codec.Value]:
    """``values`` as a record in schema order, held to the schema the
    decoder holds it to, so that what is encoded decodes again."""
    return _record(codec.build_record(fields, values), fields, where)


def _keys(value: object, fields: tuple[Field, ...], where: str) -> Mapping[str, object]:
    """``value`` as an object with exactly the fields' keys (JSON has no
    left-out fields: a missing value is null)."""
    if not isinstance(value, Mapping) or set(value) != {f.name for f in fields}:
        names = [f.name for f in fields]
        raise _malformed(f"{where}: expected an object with keys {names}")
    return value


def _plain(value: object, where: str) -> codec.Value:
    """A string or an integer, as is: the schema checks which and its bounds."""
    if isinstance(value, str | int):
        return value
    raise _malformed(f"{where}: expected a string or an integer")


def _unbase64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise _malformed(f"{where}: expected base64")
    try:
        return decode_base64(value)
    except ValueError as exc:
        raise _malformed(f"{where}: {exc}") from exc


def _leaf_raw(value: object, where: str) -> dict[str, codec.Value]:
    rec = _keys(value, _LEAF, where)
    sub = _keys(rec["submission"], _SUBMISSION, f"{where}.submission")
    at = f"{where}.submission"
    raw_sub: dict[str, codec.Value] = {
        "agency": _plain(sub["agency"], f"{at}.agency"),
        "key_id": hex_field(sub["key_id"], f"{at}.key_id", 4),
        "nonce": hex_field(sub["nonce"], f"{at}.nonce", 16),
        "timestamp": _plain(sub["timestamp"], f"{at}.timestamp"),
        "signature": _unbase64(sub["signature"], f"{at}.signature"),
        "batch_size": _plain(sub["batch_size"], f"{at}.batch_size"),
        "batch_index": _plain(sub["batch_index"], f"{at}.batch_index"),
        "batch_path": list(hash_list(sub["batch_path"], f"{at}.batch_path")),
    }
    raw: dict[str, codec.Value] = {
        "leaf": _unbase64(rec["leaf"], f"{where}.leaf"),
        "index": _plain(rec["index"], f"{where}.index"),
        "inclusion": list(hash_list(rec["inclusion"], f"{where}.inclusion")),
        "submission": _built(_SUBMISSION, raw_sub, at),
    }
    return _built(_LEAF, raw, where)
