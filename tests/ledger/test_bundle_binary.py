"""The binary form of proof bundles: the JSON form's content, half the bytes,
and the same verdicts; anything else is refused as malformed."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.bundle import build_bundle
from ledger.bundle_binary import (
    MAX_SIZE,
    decode_bundle,
    encode_bundle,
    is_binary_bundle,
)
from ledger.errors import VerificationError
from ledger.stateproof import StateProof
from ledger.store import LedgerStore
from ledger.verify import MAX_CHANGES, MAX_PATH, Verdict, verify_bundle
from tests.ledger.json_mutations import json_values, value_paths
from tests.ledger.store_helpers import (
    T0,
    Chain,
    anchor,
    doc_id,
    make_agencies,
    make_genesis,
    revoke,
    supersede,
)

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)
NOW = T0 + 60_000
# Documents with every status a bundle can prove (see the fixture).
STATUSES = {
    "7": "valid",
    "5": "revoked",
    "6": "revoked",  # superseded, then revoked: two changes
    "expired": "expired",
    "future": "not_yet_valid",
    "never": "not_found",
}
TOP_KEYS = ["version", "origin", "doc_id", "checkpoint", "anchor", "changes", "state"]

Bundle = dict[str, Any]
Raw = dict[str, Any]


@dataclass
class Ledger:
    store: LedgerStore
    bundles: dict[str, Bundle]
    binary: dict[str, bytes]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    path: Path = tmp_path_factory.mktemp("binary-bundles") / "ledger"
    store = LedgerStore.open(path, GENESIS)
    chain = Chain(store, AGENCIES)
    chain.apply(("moj", [anchor("moj", i) for i in range(40)]))
    chain.apply(
        (
            "moj",
            [
                anchor("moj", "expired", valid_until=T0 + 1000),
                anchor("moj", "future", valid_from=NOW + 1000),
                anchor("moj", "new"),
            ],
        )
    )
    chain.apply(("moj", [revoke("moj", 5), supersede("moj", 6, "new")]))
    chain.apply(("moj", [revoke("moj", 6)]))
    bundles = {name: build_bundle(store, doc_id(name)) for name in STATUSES}
    binary = {name: encode_bundle(b) for name, b in bundles.items()}
    yield Ledger(store, bundles, binary)
    store.close()


def verify(bundle: Bundle) -> Verdict:
    return verify_bundle(bundle, GENESIS, now_ms=NOW)


def malformed(data: bytes) -> str:
    """Decode ``data``, which must be refused as malformed; the message."""
    with pytest.raises(VerificationError) as err:
        decode_bundle(data)
    assert err.value.reason == "malformed", err.value
    return str(err.value)


def unpacked(data: bytes) -> Raw:
    raw = msgpack.unpackb(data, raw=False)
    assert isinstance(raw, dict)
    return raw


def repacked(raw: Raw) -> bytes:
    """``raw`` packed as the codec packs (minimal forms, keys in the order
    given), so that only what a test changed is wrong."""
    return codec.pack(raw)


# --- the round trip --------------------------------------------------------------


@pytest.mark.parametrize(("name", "status"), sorted(STATUSES.items()))
def test_round_trip_gives_the_json_form_and_the_same_verdict(
    ledger: Ledger, name: str, status: str
) -> None:
    bundle, data = ledger.bundles[name], ledger.binary[name]
    decoded = decode_bundle(data)
    assert decoded == bundle
    assert json.dumps(decoded) == json.dumps(bundle)  # key order too
    assert encode_bundle(decoded) == data
    verdict = verify(decoded)
    assert verdict == verify(bundle)
    assert verdict.status == status


def test_layout(ledger: Ledger) -> None:
    final = ledger.store.latest_final()
    assert final is not None
    raw = unpacked(ledger.binary["6"])
    assert list(raw) == TOP_KEYS
    assert raw["version"] == 1
    assert raw["doc_id"] == doc_id(6)
    # The note byte for byte: its signatures cover exactly that text.
    assert raw["checkpoint"] == final[1]
    bundle = ledger.bundles["6"]
    anchor_part = raw["anchor"]
    assert isinstance(anchor_part, dict)
    assert list(anchor_part) == ["leaf", "index", "inclusion", "submission"]
    assert anchor_part["inclusion"] == [
        bytes.fromhex(h) for h in bundle["anchor"]["inclusion"]
    ]
    submission = anchor_part["submission"]
    assert len(submission["signature"]) == 64
    assert len(submission["key_id"]) == 4 and len(submission["nonce"]) == 16
    assert isinstance(raw["changes"], list) and len(raw["changes"]) == 2
    state = raw["state"]
    assert isinstance(state, dict) and list(state) == ["key", "value", "proof"]
    proof = StateProof.from_json(bundle["state"]["proof"])
    assert state["proof"] == proof.to_bytes()


def test_an_unknown_document_leaves_out_what_it_does_not_have(
    ledger: Ledger,
) -> None:
    raw = unpacked(ledger.binary["never"])
    assert list(raw) == [k for k in TOP_KEYS if k != "anchor"]
    assert raw["changes"] == []
    assert list(raw["state"]) == ["key", "proof"]
    decoded = decode_bundle(ledger.binary["never"])
    assert decoded["anchor"] is None
    assert decoded["state"]["value"] is None  # type: ignore[index]


def test_the_forms_are_told_apart_by_the_first_byte(ledger: Ledger) -> None:
    for name, data in ledger.binary.items():
        assert is_binary_bundle(data), name
        text = json.dumps(ledger.bundles[name]).encode()
        for spelled in (text, b" \n" + text, b"\t" + text, b"\r\n" + text):
            assert not is_binary_bundle(spelled)
    assert not is_binary_bundle(b"")


def test_it_is_much_smaller_than_compact_json(ledger: Ledger) -> None:
    """Each hash is 34 bytes instead of 66 (hex and quotes and comma); the
    note is the same text in both, and a larger share of a small tree's
    bundle than of a large one's (bench/ledgerstore.py sizes those)."""
    for name, data in ledger.binary.items():
        text = json.dumps(ledger.bundles[name], separators=(",", ":")).encode()
        assert len(data) < 0.8 * len(text), name
        raw = unpacked(data)
        note = len(str(raw["checkpoint"]).encode())
        assert len(data) - note < 0.7 * (len(text) - note), name


# --- what is refused --------------------------------------------------------------


def test_every_truncation_is_malformed(ledger: Ledger) -> None:
    data = ledger.binary["5"]
    for end in range(len(data)):
        malformed(data[:end])


def test_trailing_bytes_are_malformed(ledger: Ledger) -> None:
    data = ledger.binary["7"]
    assert "trailing" in malformed(data + b"\x00")
    malformed(data + data)


def test_more_than_the_size_bound_is_refused_unread() -> None:
    assert "exceeds" in malformed(b"\x87" + bytes(MAX_SIZE))


@pytest.mark.parametrize(
    "data",
    [
        b"\x91" * 200_000 + b"\x00",  # nested deeper than any decoder recurses
        b"\x87\xa7version\x01\xa6origin" + b"\x81\xa1a" * 50_000 + b"\x00",
        b"\xdd\xff\xff\xff\xff",  # an array of 2^32 - 1 items, declared
        b"\xc6\xff\xff\xff\xff",  # 4 GiB of bin, declared
        b"\xd6\xff\x00\x00\x00\x01",  # a msgpack timestamp
        b"\xd4\x05\x00",  # an extension type
        b"\x81\x01\x02",  # a map with an integer key
        b"\x81\xa1\xff\x00",  # a key that is not UTF-8
    ],
    ids=["deep", "deep-in-a-bundle", "array", "bin", "timestamp", "ext", "key", "utf8"],
)
def test_hostile_msgpack_is_malformed(data: bytes) -> None:
    malformed(data)


def test_text_instead_of_bytes_is_malformed(ledger: Ledger) -> None:
    text = ledger.binary["7"].decode("latin-1")
    malformed(text)  # type: ignore[arg-type]


def test_a_duplicate_key_is_malformed(ledger: Ledger) -> None:
    data = ledger.binary["7"]
    assert data[0] == 0x87  # a map of the seven fields
    assert "duplicate" in malformed(b"\x88" + data[1:] + b"\xa7version\x01")


def test_a_non_minimal_integer_is_malformed(ledger: Ledger) -> None:
    data = ledger.binary["7"]
    index = unpacked(data)["anchor"]["index"]
    assert 0 <= index < 128  # a positive fixint: one byte
    minimal = b"\xa5index" + bytes([index])
    assert data.count(minimal) == 1
    malformed(data.replace(minimal, b"\xa5index\xce" + index.to_bytes(4, "big")))


def test_a_float_is_malformed(ledger: Ledger) -> None:
    raw = unpacked(ledger.binary["7"])
    raw["anchor"]["index"] = 7.0
    malformed(msgpack.packb(raw))


def _set(*path: str | int, to: object) -> Callable[[Raw], None]:
    def change(raw: Raw) -> None:
        target: object = raw
        for step in path[:-1]:
            target = target[step]  # type: ignore[index]
        target[path[-1]] = to  # type: ignore[index]

    return change


def _drop(*path: str) -> Callable[[Raw], None]:
    def change(raw: Raw) -> None:
        target: object = raw
        for step in path[:-1]:
            target = target[step]  # type: ignore[index]
        del target[path[-1]]  # type: ignore[attr-defined]

    return change


def _swap_first_two(raw: Raw) -> None:
    items = list(raw.items())
    raw.clear()
    raw.update([items[1], items[0], *items[2:]])


HASH = b"\x11" * 32
SUB = ("anchor", "submission")
MUTATIONS: dict[str, Callable[[Raw], None]] = {
    "unknown key": _set("extra", to=1),
    "unknown key in a leaf": _set("anchor", "extra", to=1),
    "unknown key in a submission": _set(*SUB, "extra", to=b""),
    "unknown key in the state": _set("state", "extra", to=1),
    "missing version": _drop("version"),
    "missing state": _drop("state"),
    "missing leaf index": _drop("anchor", "index"),
    "missing signature": _drop(*SUB, "signature"),
    "fields out of order": _swap_first_two,
    "version 2": _set("version", to=2),
    "version as text": _set("version", to="1"),
    "version as true": _set("version", to=True),
    "doc id as hex": _set("doc_id", to=doc_id(7).hex()),
    "doc id of 31 bytes": _set("doc_id", to=doc_id(7)[:31]),
    "origin as bytes": _set("origin", to=b"origin"),
    "note as bytes": _set("checkpoint", to=b"note"),
    "note too long": _set("checkpoint", to="x" * (16 * 1024 + 1)),
    "anchor as nil": _set("anchor", to=None),
    "anchor as a list": _set("anchor", to=[]),
    "changes as a map": _set("changes", to={}),
    "too many changes": _set("changes", to=[{}] * (MAX_CHANGES + 1)),
    "a change that is no leaf": _set("changes", to=[1]),
    "leaf as text": _set("anchor", "leaf", to="AAAA"),
    "leaf too large": _set("anchor", "leaf", to=bytes(65_539)),
    "negative index": _set("anchor", "index", to=-1),
    "index as true": _set("anchor", "index", to=True),
    "index as nil": _set("anchor", "index", to=None),
    "inclusion hash of 31 bytes": _set("anchor", "inclusion", 0, to=HASH[:31]),
    "inclusion hash as hex": _set("anchor", "inclusion", 0, to=HASH.hex()),
    "inclusion too long": _set("anchor", "inclusion", to=[HASH] * (MAX_PATH + 1)),
    "inclusion as bytes": _set("anchor", "inclusion", to=HASH),
    "agency as bytes": _set(*SUB, "agency", to=b"moj"),
    "key id of 5 bytes": _set(*SUB, "key_id", to=b"12345"),
    "nonce of 15 bytes": _set(*SUB, "nonce", to=bytes(15)),
    "signature as base64": _set(*SUB, "signature", to="AAAA"),
    "signature too long": _set(*SUB, "signature", to=bytes(67)),
    "negative timestamp": _set(*SUB, "timestamp", to=-1),
    "batch path hash as nil": _set(*SUB, "batch_path", 0, to=None),
    "state key as text": _set("state", "key", to="key"),
    "state value as nil": _set("state", "value", to=None),
    "state value as text": _set("state", "value", to="value"),
    "state proof as a map": _set("state", "proof", to={"kind": "present"}),
    "state proof not msgpack": _set("state", "proof", to=b"\xc1"),
    "state proof of no shape": _set("state", "proof", to=codec.pack([1, 2])),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_mutated_binary_bundle_is_malformed(ledger: Ledger, name: str) -> None:
    raw = unpacked(ledger.binary["6"])
    MUTATIONS[name](raw)
    malformed(repacked(raw))


@pytest.mark.parametrize(
    "part",
    [
        ("anchor", "inclusion", 0),
        ("anchor", "submission", "batch_path", 0),
        ("changes", 0, "inclusion", 1),
        ("anchor", "submission", "signature"),
    ],
)
def test_a_flipped_hash_byte_is_tampered(
    ledger: Ledger, part: tuple[str | int, ...]
) -> None:
    data = ledger.binary["5"]
    raw = unpacked(data)
    target: Any = raw
    for step in part[:-1]:
        target = target[step]
    value = target[part[-1]]
    target[part[-1]] = value[:7] + bytes([value[7] ^ 0x40]) + value[8:]
    flipped = repacked(raw)
    # One byte differs, in place: what a flip in the bytes themselves does.
    assert len(flipped) == len(data)
    assert sum(a != b for a, b in zip(flipped, data, strict=True)) == 1
    with pytest.raises(VerificationError) as err:
        verify(decode_bundle(flipped))
    assert err.value.reason == "tampered", err.value


def test_a_state_proof_sibling_flipped_is_tampered(ledger: Ledger) -> None:
    raw = unpacked(ledger.binary["5"])
    proof = StateProof.from_bytes(raw["state"]["proof"])
    sibling = proof.siblings[0]
    data = ledger.binary["5"]
    assert data.count(sibling) == 1
    at = data.index(sibling)
    flipped = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    with pytest.raises(VerificationError) as err:
        verify(decode_bundle(flipped))
    assert err.value.reason == "tampered", err.value


# --- encoding a JSON bundle ----------------------------------------------------------


def _upper_doc_id(bundle: Bundle) -> None:
    bundle["doc_id"] = str(bundle["doc_id"]).upper()


def _unpadded_leaf(bundle: Bundle) -> None:
    bundle["anchor"]["leaf"] = bundle["anchor"]["leaf"].rstrip("=")


JSON_MUTATIONS: dict[str, Callable[[Bundle], None]] = {
    "extra key": _set("extra", to=1),
    "missing key": _drop("state"),
    "version 2": _set("version", to=2),
    "version true": _set("version", to=True),
    "upper-case doc id": _upper_doc_id,
    "doc id of 31 bytes": _set("doc_id", to="11" * 31),
    "doc id as bytes": _set("doc_id", to=doc_id(7)),
    "changes as a map": _set("changes", to={}),
    "too many changes": _set("changes", to=[{}] * (MAX_CHANGES + 1)),
    "leaf not canonical base64": _unpadded_leaf,
    "negative index": _set("anchor", "index", to=-1),
    "index as text": _set("anchor", "index", to="1"),
    "hash of 31 bytes": _set("anchor", "inclusion", 0, to="11" * 31),
    "too long a path": _set("anchor", "inclusion", to=["11" * 32] * (MAX_PATH + 1)),
    "signature as bytes": _set("anchor", "submission", "signature", to=bytes(64)),
    "state proof of no shape": _set("state", "proof", to=[]),
    "state value as hex": _set("state", "value", to="00"),
    "an empty object": lambda bundle: bundle.clear(),
}


@pytest.mark.parametrize("name", sorted(JSON_MUTATIONS))
def test_encoding_a_misshapen_json_bundle_is_malformed(
    ledger: Ledger, name: str
) -> None:
    bundle = copy.deepcopy(ledger.bundles["7"])
    JSON_MUTATIONS[name](bundle)
    with pytest.raises(VerificationError) as err:
        encode_bundle(bundle)
    assert err.value.reason == "malformed", err.value


# --- any input at all ---------------------------------------------------------------


def _near_a_bundle(tail: bytes) -> bytes:
    """A map that starts as a bundle does, so that inputs get past the
    first checks."""
    return b"\x87\xa7version\x01" + tail


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=4096) | st.binary(max_size=512).map(_near_a_bundle))
def test_arbitrary_bytes_are_decoded_or_malformed(data: bytes) -> None:
    try:
        decoded = decode_bundle(data)
    except VerificationError as exc:
        assert exc.reason == "malformed"
        return
    # Whatever decodes is the one encoding of its JSON form.
    assert encode_bundle(decoded) == data


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(sorted(STATUSES)),
    position=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_a_flipped_bit_never_passes_as_something_else(
    ledger: Ledger, name: str, position: float, bit: int
) -> None:
    """A VerificationError, or (a flip the format ignores, such as an
    unknown signer's name in the note) exactly the same verdict."""
    data = bytearray(ledger.binary[name])
    data[int(position * len(data))] ^= 1 << bit
    try:
        again = verify(decode_bundle(bytes(data)))
    except VerificationError:
        return
    assert again == verify(ledger.bundles[name])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), replacement=json_values)
def test_encoding_any_json_value_replaced_is_malformed_or_decodes_back(
    ledger: Ledger, data: st.DataObject, replacement: object
) -> None:
    bundle = copy.deepcopy(ledger.bundles["5"])
    path = data.draw(st.sampled_from([p for p in value_paths(bundle) if p]))
    target: object = bundle
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    target[path[-1]] = replacement  # type: ignore[index]
    try:
        encoded = encode_bundle(bundle)
    except VerificationError as exc:
        assert exc.reason == "malformed"
        return
    assert decode_bundle(encoded) == bundle
