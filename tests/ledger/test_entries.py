"""Entries: one canonical encoding each, and every way decoding refuses."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from ledger.codec import Value, check_record, pack, unpack
from ledger.entries import (
    ANCHOR_FIELDS,
    Anchor,
    Approval,
    Entry,
    Governance,
    Record,
    Revoke,
    Supersede,
    _fast_anchor,
    _from_record,
    decode_entry,
    derive_doc_id,
    encode_entry,
    governance_message,
    peek_kind,
    record_key,
    sign_approval,
)
from ledger.errors import EncodingError
from ledger.keys import SigningKey, verify_ed25519

DOC = bytes(range(32))
DOC2 = bytes(range(1, 33))

SAMPLES: list[Entry] = [
    Anchor(issuer="moj", doc_id=DOC, doc_type="criminal_record", issued_at=1),
    Anchor(
        issuer="moj",
        doc_id=DOC,
        doc_type="criminal_record",
        issued_at=1_700_000_000_000,
        valid_from=1_700_000_000_000,
        valid_until=1_800_000_000_000,
    ),
    Anchor(issuer="moj", doc_id=DOC, doc_type="land_use", issued_at=5, valid_until=9),
    Revoke(issuer="moj", doc_id=DOC, reason="court_order", at=2),
    Supersede(issuer="moj", old_doc_id=DOC, new_doc_id=DOC2, at=3),
    Record(
        issuer="civil-reg",
        registry="births",
        record_id=b"\x01" * 64,
        version=7,
        digest=DOC2,
    ),
    Governance(
        issuer="moj",
        action="grant_doc_types",
        params={"id": "moh", "doc_types": ["health_record"]},
        version=2,
        approvals=(Approval(agency="moj", signature=b"s" * 64),),
    ),
    Governance(issuer="moj", action="remove_agency", params={"id": "x1"}, version=9),
]


@pytest.mark.parametrize("entry", SAMPLES, ids=lambda e: e.kind)
def test_every_entry_round_trips_through_its_leaf_bytes(entry: Entry) -> None:
    data = encode_entry(entry)
    assert decode_entry(data) == entry
    assert encode_entry(decode_entry(data)) == data


@pytest.mark.parametrize("entry", SAMPLES, ids=lambda e: e.kind)
def test_kind_is_the_first_key(entry: Entry) -> None:
    value = unpack(encode_entry(entry))
    assert isinstance(value, dict)
    assert next(iter(value)) == "kind"
    assert value["kind"] == entry.kind


@pytest.mark.parametrize("entry", SAMPLES, ids=lambda e: e.kind)
def test_the_kind_peeks_out_of_the_leaf_bytes(entry: Entry) -> None:
    assert peek_kind(encode_entry(entry)) == entry.kind


def test_peek_kind_is_none_for_what_is_not_an_entry() -> None:
    good = encode_entry(SAMPLES[0])
    for data in [
        b"",
        good[:7],  # cut before the kind
        pack({"kond": "anchor"}),  # another first key
        pack({"kind": "burn"}),  # no such kind
        pack({"kind": 7}),  # not a string
        msgpack.packb({"kind": "anchor" * 6}),  # longer than a fixstr
    ]:
        assert peek_kind(data) is None, data


def test_key_order_follows_the_schema_and_optionals_are_omitted() -> None:
    full = unpack(encode_entry(SAMPLES[1]))
    assert isinstance(full, dict)
    assert list(full) == [
        "kind",
        "issuer",
        "doc_id",
        "doc_type",
        "issued_at",
        "valid_from",
        "valid_until",
    ]
    bare = unpack(encode_entry(SAMPLES[0]))
    assert isinstance(bare, dict)
    assert "valid_from" not in bare and "valid_until" not in bare
    rec = unpack(encode_entry(SAMPLES[5]))
    assert isinstance(rec, dict)
    assert list(rec) == ["kind", "issuer", "registry", "record_id", "version", "digest"]


def _anchor(**changes: Value) -> dict[str, Value]:
    base: dict[str, Value] = {
        "kind": "anchor",
        "issuer": "moj",
        "doc_id": DOC,
        "doc_type": "criminal_record",
        "issued_at": 1,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def _record(**changes: Value) -> dict[str, Value]:
    base: dict[str, Value] = {
        "kind": "record",
        "issuer": "moj",
        "registry": "births",
        "record_id": b"r1",
        "version": 1,
        "digest": DOC,
    }
    base.update(changes)
    return base


def _governance(**changes: Value) -> dict[str, Value]:
    base: dict[str, Value] = {
        "kind": "governance",
        "issuer": "moj",
        "action": "remove_agency",
        "params": {"id": "moh"},
        "version": 2,
        "approvals": [],
    }
    base.update(changes)
    return base


REJECTED: list[tuple[str, Value]] = [
    ("unknown kind", _anchor(kind="mint")),
    ("kind of the wrong type", _anchor(kind=1)),
    ("kind not first", {"issuer": "moj", **_anchor()}),
    ("not a map", ["anchor", "moj"]),
    ("empty map", {}),
    ("doc_id is text", _anchor(doc_id=DOC.hex())),
    ("doc_id of 31 bytes", _anchor(doc_id=DOC[:31])),
    ("doc_id of 33 bytes", _anchor(doc_id=DOC + b"\x00")),
    ("issued_at is bytes", _anchor(issued_at=b"\x01")),
    ("issued_at is negative", _anchor(issued_at=-1)),
    ("issued_at is a bool", _anchor(issued_at=True)),
    ("missing doc_type", {k: v for k, v in _anchor().items() if k != "doc_type"}),
    ("unknown field", _anchor(colour="red")),
    ("doc_type with capitals", _anchor(doc_type="Criminal")),
    ("doc_type too long", _anchor(doc_type="a" * 41)),
    ("issuer not an agency id", _anchor(issuer="-moj")),
    ("issuer of one character", _anchor(issuer="m")),
    ("valid_from equals valid_until", _anchor(valid_from=5, valid_until=5)),
    ("valid_from after valid_until", _anchor(valid_from=6, valid_until=5)),
    (
        "optional fields out of order",
        {**_anchor(), "valid_until": 9, "valid_from": 1},
    ),
    (
        "unknown revocation reason",
        {"kind": "revoke", "issuer": "moj", "doc_id": DOC, "reason": "bored", "at": 1},
    ),
    (
        "supersede of itself",
        {
            "kind": "supersede",
            "issuer": "moj",
            "old_doc_id": DOC,
            "new_doc_id": DOC,
            "at": 1,
        },
    ),
    ("record version 0", _record(version=0)),
    ("record_id of 65 bytes", _record(record_id=b"x" * 65)),
    ("empty record_id", _record(record_id=b"")),
    ("registry with a dash", _record(registry="birth-reg")),
    ("digest of 16 bytes", _record(digest=DOC[:16])),
    ("unknown governance action", _governance(action="mint_money")),
    ("governance params of another action", _governance(params={"agency": {}})),
    ("governance params is a list", _governance(params=["moh"])),
    ("governance version 0", _governance(version=0)),
    ("approval not a pair", _governance(approvals=[["moj"]])),
    ("approval signature short", _governance(approvals=[["moj", b"s" * 63]])),
    ("approval agency malformed", _governance(approvals=[["MOJ", b"s" * 64]])),
]


@pytest.mark.parametrize(("desc", "value"), REJECTED, ids=[d for d, _ in REJECTED])
def test_decode_refuses(desc: str, value: Value) -> None:
    with pytest.raises(EncodingError):
        decode_entry(pack(value))


def test_decode_refuses_non_canonical_bytes() -> None:
    good = encode_entry(SAMPLES[0])
    with pytest.raises(EncodingError):
        decode_entry(good + b"\x00")  # trailing bytes
    # issued_at=1 written as a uint16 instead of a fixint: same value,
    # second spelling.
    head = [pack(k) + pack(v) for k, v in _anchor().items() if k != "issued_at"]
    loose = b"\x85" + b"".join(head) + pack("issued_at") + b"\xcd\x00\x01"
    assert msgpack.unpackb(loose) == msgpack.unpackb(pack(_anchor()))
    with pytest.raises(EncodingError):
        decode_entry(loose)
    floaty = msgpack.packb({**_anchor(), "issued_at": 1.0}, use_bin_type=True)
    with pytest.raises(EncodingError):
        decode_entry(floaty)


def test_invalid_entries_cannot_be_built() -> None:
    with pytest.raises(EncodingError):
        Anchor(issuer="moj", doc_id=DOC[:5], doc_type="land_use", issued_at=0)
    with pytest.raises(EncodingError):
        Revoke(issuer="moj", doc_id=DOC, reason="nope", at=0)
    with pytest.raises(EncodingError):
        Record(issuer="moj", registry="r", record_id=b"1", version=0, digest=DOC)


def test_encode_refuses_a_wrongly_typed_field() -> None:
    bad = Anchor(issuer="moj", doc_id=DOC, doc_type="land_use", issued_at="1")  # type: ignore[arg-type]
    with pytest.raises(EncodingError):
        encode_entry(bad)


def test_doc_id_is_sha256_of_domain_salt_and_file_hash() -> None:
    salt = bytes.fromhex("00112233445566778899aabbccddeeff")
    file_hash = hashlib.sha256(b"a certificate PDF").digest()
    expected = hashlib.sha256(b"agency-ledger/doc/v1" + salt + file_hash).digest()
    assert derive_doc_id(salt, file_hash) == expected


def test_doc_id_refuses_wrong_sizes() -> None:
    with pytest.raises(EncodingError):
        derive_doc_id(b"short", DOC)
    with pytest.raises(EncodingError):
        derive_doc_id(b"s" * 16, DOC[:31])


def test_record_key_hashes_domain_and_canonical_pair() -> None:
    packed = msgpack.packb(["births", b"\x07"], use_bin_type=True)
    expected = hashlib.sha256(b"agency-ledger/record/v1" + packed).digest()
    assert record_key("births", b"\x07") == expected
    assert record_key("births", b"\x07") != record_key("deaths", b"\x07")


def test_approval_signs_the_domain_separated_governance_message() -> None:
    key = SigningKey.from_seed(b"\x05" * 32)
    params: dict[str, Value] = {"id": "moh"}
    approval = sign_approval(
        "example.gov/ledger",
        action="remove_agency",
        params=params,
        version=4,
        agency="moj",
        key=key,
    )
    message = governance_message("example.gov/ledger", "remove_agency", params, 4)
    assert message.startswith(b"agency-ledger/governance/v1\n")
    assert message[len(b"agency-ledger/governance/v1\n") :] == pack(
        ["example.gov/ledger", "remove_agency", params, 4]
    )
    verify_ed25519(key.public_key, message, approval.signature)


@pytest.mark.parametrize("entry", [e for e in SAMPLES if isinstance(e, Anchor)])
def test_anchor_fast_path_agrees_with_the_schema_check(entry: Anchor) -> None:
    # decode_entry takes a shortcut for anchors; it must accept exactly
    # what the generic schema check accepts and build the same value.
    value = unpack(encode_entry(entry))
    assert isinstance(value, dict)
    generic = _from_record(check_record(value, ANCHOR_FIELDS, "anchor"))
    assert _fast_anchor(value) == generic == entry
    for key in ("issuer", "doc_id", "issued_at"):
        assert _fast_anchor(value | {key: [1]}) is None


def test_a_nil_validity_bound_is_refused_like_any_wrong_type() -> None:
    # A present nil is canonical msgpack but not an integer: the generic
    # check refuses it, so the fast path must too, or the leaf would not
    # encode back to its own bytes.
    base: dict[str, Value] = {"kind": "anchor", "issuer": "moj", "doc_id": DOC}
    for window in ({"valid_from": None}, {"valid_until": None}):
        value: dict[str, Value] = {**base, "doc_type": "x", "issued_at": 1, **window}
        assert _fast_anchor(value) is None
        with pytest.raises(EncodingError):
            decode_entry(pack(value))
