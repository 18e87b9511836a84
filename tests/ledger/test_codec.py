"""Canonical msgpack: one value has exactly one accepted byte string."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.codec import (
    Field,
    Value,
    array_length,
    build_record,
    check_record,
    pack,
    unpack,
)
from ledger.errors import EncodingError

FIELDS = (
    Field("kind", str, max_len=16),
    Field("id", bytes, size=4),
    Field("n", int, high=1000),
    Field("note", str, optional=True, max_len=8),
)


def values() -> st.SearchStrategy[Value]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.binary(max_size=40),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.dictionaries(st.text(max_size=8), inner, max_size=5),
        ),
        max_leaves=20,
    )


@given(values())
@settings(max_examples=300)
def test_every_value_round_trips_through_its_one_encoding(value: Value) -> None:
    data = pack(value)
    assert unpack(data) == value
    assert pack(unpack(data)) == data


@given(st.binary(max_size=200))
@settings(max_examples=1000)
def test_arbitrary_bytes_decode_or_raise_encoding_error_only(data: bytes) -> None:
    try:
        value = unpack(data)
    except EncodingError:
        return
    # Whatever is accepted is canonical: it re-encodes to the same bytes.
    assert pack(value) == data


@given(values(), st.integers(min_value=0, max_value=400), st.integers(0, 255))
@settings(max_examples=400)
def test_a_changed_byte_is_refused_or_decodes_to_its_own_canonical_form(
    value: Value, where: int, byte: int
) -> None:
    data = bytearray(pack(value))
    data[where % len(data)] = byte
    try:
        decoded = unpack(bytes(data))
    except EncodingError:
        return
    assert pack(decoded) == bytes(data)


@pytest.mark.parametrize(
    ("desc", "data"),
    [
        ("integer 1 written as uint8", b"\xcc\x01"),
        ("integer 1 written as uint64", b"\xcf" + (1).to_bytes(8, "big")),
        ("short string written as str8", b"\xd9\x01a"),
        ("short bytes written as bin16", b"\xc5\x00\x01a"),
        ("map length written as map16", b"\xde\x00\x01\xa1a\x01"),
        ("float32", b"\xca\x00\x00\x00\x00"),
        ("float64 inside a map", b"\x81\xa1a\xcb" + bytes(8)),
        ("float64 inside an array", b"\x91\xcb" + bytes(8)),
        ("duplicate map key", b"\x82\xa1a\x01\xa1a\x02"),
        ("integer map key", b"\x81\x01\x01"),
        ("extension type", b"\xd4\x01\x00"),
        ("trailing bytes", b"\x01\x02"),
        ("truncated string", b"\xa5ab"),
        ("invalid UTF-8 in a string", b"\xa2\xff\xfe"),
        ("empty input", b""),
    ],
)
def test_non_canonical_or_invalid_encodings_are_refused(desc: str, data: bytes) -> None:
    with pytest.raises(EncodingError):
        unpack(data)


def test_oversize_input_is_refused_before_decoding() -> None:
    with pytest.raises(EncodingError, match="exceeds"):
        unpack(pack(b"x" * 100), max_size=50)


def _rec(**kw: Value) -> dict[str, Value]:
    return dict(kw)


@pytest.mark.parametrize(
    ("desc", "value", "match"),
    [
        ("unknown field", _rec(kind="a", id=b"1234", n=1, extra=1), "unknown"),
        ("missing field", _rec(kind="a", n=1), "missing"),
        ("fields out of order", _rec(id=b"1234", kind="a", n=1), "order"),
        ("wrong type", _rec(kind="a", id="1234", n=1), "expected bytes"),
        ("bool for int", _rec(kind="a", id=b"1234", n=True), "expected int"),
        ("wrong size", _rec(kind="a", id=b"123", n=1), "4 bytes"),
        ("out of range", _rec(kind="a", id=b"1234", n=1001), "range"),
        ("negative", _rec(kind="a", id=b"1234", n=-1), "range"),
        ("too long", _rec(kind="a", id=b"1234", n=1, note="x" * 9), "longer"),
        ("not a map", [1, 2], "expected a map"),
    ],
)
def test_records_are_held_to_their_schema(desc: str, value: Value, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        check_record(unpack(pack(value)), FIELDS, "rec")


def test_build_record_writes_schema_order_and_omits_absent_optionals() -> None:
    rec = build_record(FIELDS, {"n": 3, "id": b"abcd", "kind": "k", "note": None})
    assert list(rec) == ["kind", "id", "n"]
    assert check_record(unpack(pack(rec)), FIELDS, "rec") == rec
    with pytest.raises(EncodingError, match="missing"):
        build_record(FIELDS, {"kind": "k"})


def test_the_packer_writes_minimal_forms() -> None:
    # The canonical check relies on msgpack's packer choosing the smallest
    # form; pin that for a few boundaries.
    assert pack(127) == b"\x7f"
    assert pack(128) == b"\xcc\x80"
    assert pack(-32) == b"\xe0"
    assert pack("a" * 31)[0] == 0xBF
    assert pack(b"ab") == b"\xc4\x02ab"
    assert msgpack.packb({"a": 1}) == pack({"a": 1})


def test_array_length_reads_only_the_named_array() -> None:
    data = pack({"agency": "moj", "entries": [b"x" * 40] * 300, "signature": b"s"})
    assert array_length(data, "entries") == 300
    with pytest.raises(EncodingError, match="no array"):
        array_length(data, "missing")
    with pytest.raises(EncodingError, match="no array"):
        array_length(data, "agency")  # a string, not an array
    with pytest.raises(EncodingError, match="no array"):
        array_length(pack([1, 2]), "entries")


@pytest.mark.parametrize(
    ("desc", "data"),
    [
        ("timestamp extension (-1) alone", b"\xd6\xff\x00\x00\x00\x01"),
        ("timestamp extension in a map", b"\x81\xa1t\xd6\xff\x00\x00\x00\x01"),
        ("timestamp extension in an array", b"\x91\xd6\xff\x00\x00\x00\x01"),
    ],
)
def test_the_timestamp_extension_msgpack_decodes_itself_is_refused(
    desc: str, data: bytes
) -> None:
    """msgpack turns extension type -1 into a Timestamp without calling the
    extension hook, and a Timestamp packs back to the same bytes."""
    with pytest.raises(EncodingError, match="extension type -1"):
        unpack(data)
