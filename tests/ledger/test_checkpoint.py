"""Checkpoints: the exact body, refusal of every other form, signed verification."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    UINT64_MAX,
    Checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from ledger.errors import VerificationError
from ledger.keys import SigningKey, Verifier, encode_base64
from ledger.note import format_note, parse_note, sign_note

ORIGIN = "ledger.gov.example/main"
CP = Checkpoint(
    origin=ORIGIN,
    size=1234,
    root=bytes(range(32)),
    state_root=bytes(range(32, 64)),
    height=17,
    block_hash=bytes(range(64, 96)),
    time_ms=1_700_000_000_123,
)
KEYS = {
    f"agency-{c}": SigningKey.from_seed(bytes([i + 1]) * 32)
    for i, c in enumerate("abc")
}
VERIFIERS = [Verifier.from_public_key(n, k.public_key) for n, k in KEYS.items()]


def _signed(cp: Checkpoint, names: list[str]) -> str:
    return format_note(cp.body(), [sign_checkpoint(cp, n, KEYS[n]) for n in names])


def test_body_is_the_exact_documented_text() -> None:
    b64 = encode_base64
    assert CP.body() == (
        f"{ORIGIN}\n1234\n{b64(CP.root)}\nstate {b64(CP.state_root)}\n"
        f"block 17 {b64(CP.block_hash)}\ntime 1700000000123\n"
    )


def test_body_round_trips_and_parses_from_bytes() -> None:
    assert parse_checkpoint(CP.body()) == CP
    assert parse_checkpoint(CP.body().encode("utf-8")) == CP


def test_empty_tree_has_size_zero() -> None:
    empty = dataclasses.replace(CP, size=0, height=0, time_ms=0)
    assert empty.body().splitlines()[1] == "0"
    assert parse_checkpoint(empty.body()) == empty


hashes = st.binary(min_size=32, max_size=32)
uints = st.integers(0, UINT64_MAX)
origins = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(st.builds(Checkpoint, origin=origins, size=uints, root=hashes,
                 state_root=hashes, height=uints, block_hash=hashes,
                 time_ms=uints))  # fmt: skip
def test_every_checkpoint_round_trips(cp: Checkpoint) -> None:
    assert parse_checkpoint(cp.body()) == cp


def _with_line(index: int, line: str) -> str:
    lines = CP.body().split("\n")
    lines[index] = line
    return "\n".join(lines)


def _b64(n: int) -> str:
    return encode_base64(b"\x05" * n)


_LINES = CP.body().split("\n")
MALFORMED = {
    "empty": "",
    "no final newline": CP.body()[:-1],
    "empty origin": _with_line(0, ""),
    "control char in origin": _with_line(0, "a\x01b"),
    "surrogate in origin": _with_line(0, "a\udc80b"),
    "size leading zero": _with_line(1, "01234"),
    "size plus sign": _with_line(1, "+1234"),
    "size negative": _with_line(1, "-1"),
    "size underscore": _with_line(1, "1_234"),
    "size arabic digits": _with_line(1, "\u0661\u0662"),
    "size space": _with_line(1, " 1234"),
    "size hex": _with_line(1, "0x10"),
    "size over uint64": _with_line(1, str(UINT64_MAX + 1)),
    "size huge": _with_line(1, "9" * 5000),
    "root 31 bytes": _with_line(2, _b64(31)),
    "root 33 bytes": _with_line(2, _b64(33)),
    "root non-canonical base64": _with_line(2, _b64(32)[:-2] + "B="),
    "root urlsafe base64": _with_line(2, encode_base64(b"\xfb" * 32).replace("+", "-")),
    "state missing keyword": _with_line(3, _b64(32)),
    "state wrong keyword": _with_line(3, "State " + _b64(32)),
    "state two spaces": _with_line(3, "state  " + _b64(32)),
    "state 31 bytes": _with_line(3, "state " + _b64(31)),
    "block no hash": _with_line(4, "block 17"),
    "block height leading zero": _with_line(4, f"block 017 {_b64(32)}"),
    "block hash short": _with_line(4, f"block 17 {_b64(16)}"),
    "block extra field": _with_line(4, f"block 17 {_b64(32)} x"),
    "time fraction": _with_line(5, "time 1.5"),
    "time missing value": _with_line(5, "time"),
    "time empty value": _with_line(5, "time "),
    "unknown extension": _with_line(5, "foo bar"),
    "state and block swapped": "\n".join(
        [*_LINES[:3], _LINES[4], _LINES[3], *_LINES[5:]]
    ),
    "missing time line": "\n".join([*_LINES[:5], ""]),
    "missing extension lines": "\n".join([*_LINES[:3], ""]),
    "trailing junk line": CP.body() + "junk\n",
    "trailing blank line": CP.body() + "\n",
    "trailing junk without newline": CP.body() + "junk",
    "crlf": CP.body().replace("\n", "\r\n"),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bodies_are_refused(body: str) -> None:
    with pytest.raises(VerificationError) as info:
        parse_checkpoint(body)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "change",
    [{"origin": ""}, {"origin": "a\nb"}, {"size": -1}, {"height": UINT64_MAX + 1},
     {"time_ms": True}, {"root": b"\x00" * 31}, {"block_hash": "00" * 32}],
)  # fmt: skip
def test_checkpoint_refuses_invalid_fields(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CP, **change)  # type: ignore[arg-type]


def test_checkpoint_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Checkpoint(ORIGIN, 1, CP.root, CP.root, 1, CP.root, 1)  # type: ignore[call-arg]


def test_quorum_signed_checkpoint_verifies() -> None:
    note_text = _signed(CP, ["agency-a", "agency-c"])
    cp, note = verify_checkpoint(note_text, VERIFIERS, 2, origin=ORIGIN)
    assert cp == CP
    assert [s.name for s in note.signatures] == ["agency-a", "agency-c"]


def test_signature_is_over_the_body() -> None:
    sig = sign_checkpoint(CP, "agency-a", KEYS["agency-a"])
    note = sign_note(CP.body(), "agency-a", KEYS["agency-a"])
    assert parse_note(note).signatures == (sig,)


def test_checkpoint_of_another_origin_is_tampered() -> None:
    other = dataclasses.replace(CP, origin="ledger.gov.example/test")
    with pytest.raises(VerificationError, match="origin") as info:
        verify_checkpoint(_signed(other, ["agency-a", "agency-b"]), VERIFIERS, 2,
                          origin=ORIGIN)  # fmt: skip
    assert info.value.reason == "tampered"


def test_checkpoint_below_quorum_is_tampered() -> None:
    with pytest.raises(VerificationError, match="1 of 2") as info:
        verify_checkpoint(_signed(CP, ["agency-b"]), VERIFIERS, 2, origin=ORIGIN)
    assert info.value.reason == "tampered"


def test_checkpoint_with_one_signature_repeated_is_below_quorum() -> None:
    sig = sign_checkpoint(CP, "agency-b", KEYS["agency-b"])
    note_text = format_note(CP.body(), [sig, sig, sig])
    with pytest.raises(VerificationError, match="1 of 2"):
        verify_checkpoint(note_text, VERIFIERS, 2, origin=ORIGIN)


def test_signed_but_malformed_body_is_malformed() -> None:
    body = CP.body() + "extra line\n"
    note_text = sign_note(body, "agency-a", KEYS["agency-a"])
    with pytest.raises(VerificationError) as info:
        verify_checkpoint(note_text, VERIFIERS, 1, origin=ORIGIN)
    assert info.value.reason == "malformed"


def test_edited_size_is_tampered() -> None:
    note_text = _signed(CP, ["agency-a", "agency-b"]).replace("\n1234\n", "\n1235\n")
    with pytest.raises(VerificationError) as info:
        verify_checkpoint(note_text, VERIFIERS, 2, origin=ORIGIN)
    assert info.value.reason == "tampered"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_parse_checkpoint_on_arbitrary_input_raises_only_verification_error(
    data: str | bytes,
) -> None:
    try:
        cp = parse_checkpoint(data)
    except VerificationError as exc:
        assert exc.reason == "malformed"
    else:
        assert cp.body() == (data if isinstance(data, str) else data.decode())


LINE_PARTS = st.sampled_from(
    ["o", "0", "1", "01", "state ", "block ", "time ", " ", "\n", _b64(32), "="]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE_PARTS, max_size=20))
def test_parse_checkpoint_on_near_miss_input_is_exact_or_malformed(
    parts: list[str],
) -> None:
    data = "".join(parts)
    try:
        cp = parse_checkpoint(data)
    except VerificationError as exc:
        assert exc.reason == "malformed"
    else:
        assert cp.body() == data  # only the one canonical form parses
