"""Signed notes: the Go example, quorum counting, and refusal of bad notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import VerificationError
from ledger.keys import SigningKey, Verifier, encode_base64, parse_verifier_key
from ledger.note import (
    MAX_SIGNATURES,
    Note,
    Signature,
    add_signatures,
    format_note,
    parse_note,
    sign_note,
    sign_text,
    verify_note,
)

TEXT = "agency-ledger.example/log\n42\nsome text\n"


def _key(n: int) -> SigningKey:
    return SigningKey.from_seed(bytes([n]) * 32)


def _verifier(name: str, n: int) -> Verifier:
    return Verifier.from_public_key(name, _key(n).public_key)


A, B, C = ("agency-a", 1), ("agency-b", 2), ("agency-c", 3)
ALL = [_verifier(*A), _verifier(*B), _verifier(*C)]


def _sig(signer: tuple[str, int], text: str = TEXT) -> Signature:
    return sign_text(text, signer[0], _key(signer[1]))


def _reason(note: str | bytes, verifiers: list[Verifier], quorum: int) -> str:
    with pytest.raises(VerificationError) as info:
        verify_note(note, verifiers, quorum)
    return info.value.reason


def test_go_documentation_example_verifies(testdata: Path) -> None:
    example = json.loads((testdata / "notes/go-sumdb-note-example.json").read_text())
    verifier = parse_verifier_key(example["verifier_key"])
    note = verify_note(example["note"], [verifier], 1)
    assert note.text == example["want_text"]
    assert [s.name for s in note.signatures] == example["want_signers"]


def test_go_example_with_edited_text_is_tampered(testdata: Path) -> None:
    example = json.loads((testdata / "notes/go-sumdb-note-example.json").read_text())
    verifier = parse_verifier_key(example["verifier_key"])
    edited = example["note"].replace("cryptography", "blockchain")
    assert _reason(edited, [verifier], 1) == "tampered"


def test_sign_note_format_and_round_trip() -> None:
    note = sign_note(TEXT, A[0], _key(A[1]))
    sig = _sig(A)
    blob = encode_base64(sig.key_id + sig.signature)
    assert note == f"{TEXT}\n\u2014 agency-a {blob}\n"
    assert parse_note(note) == Note(TEXT, (sig,))
    assert verify_note(note, ALL, 1) == Note(TEXT, (sig,))
    assert parse_note(note.encode("utf-8")) == parse_note(note)


def test_text_may_contain_blank_lines_and_signature_like_lines() -> None:
    text = "first\n\n\u2014 agency-b AAAAAAAA\n\nlast\n"
    note = sign_note(text, A[0], _key(A[1]))
    assert verify_note(note, ALL, 1).text == text


@pytest.mark.parametrize(
    "text", ["no newline", "", "tab\there\n", "cr\r\n", "nul\x00\n", "bad \udc80\n"]
)
def test_sign_note_refuses_invalid_text(text: str) -> None:
    with pytest.raises(ValueError):
        sign_note(text, A[0], _key(A[1]))


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u3000b"])
def test_sign_note_refuses_invalid_name(name: str) -> None:
    with pytest.raises(ValueError):
        sign_note(TEXT, name, _key(A[1]))


def test_unknown_signers_are_skipped_not_fatal() -> None:
    stranger = sign_text(TEXT, "stranger", _key(9))
    garbage = Signature("agency-z", b"\x01\x02\x03\x04", b"not a signature")
    note = format_note(TEXT, [stranger, _sig(A), garbage])
    assert verify_note(note, ALL, 1).signatures == (_sig(A),)


def test_known_name_with_other_key_id_is_unknown_and_skipped() -> None:
    # Spec: ignore a signature sharing a name or an id, but not both, with a
    # known key. Here agency-a's name with another key's id, and the reverse.
    bad_id = Signature(A[0], b"\xde\xad\xbe\xef", b"\x00" * 64)
    bad_name = Signature("agency-q", _sig(A).key_id, b"\x00" * 64)
    note = format_note(TEXT, [bad_id, bad_name, _sig(B)])
    assert verify_note(note, ALL, 1).signatures == (_sig(B),)


def test_failing_known_signer_is_fatal_even_with_quorum_met() -> None:
    forged = Signature(C[0], _sig(C).key_id, _sig(B).signature)
    note = format_note(TEXT, [_sig(A), _sig(B), forged])
    assert _reason(note, ALL, 2) == "tampered"


def test_known_signer_with_truncated_signature_is_tampered() -> None:
    short = Signature(A[0], _sig(A).key_id, _sig(A).signature[:10])
    assert _reason(format_note(TEXT, [short, _sig(B)]), ALL, 1) == "tampered"


def test_duplicate_signature_lines_count_once() -> None:
    note = format_note(TEXT, [_sig(A)] * 5)
    with pytest.raises(VerificationError, match="1 of 2") as info:
        verify_note(note, ALL, 2)
    assert info.value.reason == "tampered"
    assert verify_note(note, ALL, 1).signatures == (_sig(A),)


def test_one_key_listed_under_two_names_counts_once() -> None:
    alias = Verifier.from_public_key("agency-alias", _key(A[1]).public_key)
    sigs = [_sig(A), sign_text(TEXT, "agency-alias", _key(A[1]))]
    with pytest.raises(VerificationError, match="1 of 2"):
        verify_note(format_note(TEXT, sigs), [*ALL, alias], 2)


def test_quorum_not_met_says_how_many_of_how_many() -> None:
    note = format_note(TEXT, [_sig(A), _sig(B)])
    with pytest.raises(VerificationError, match="2 of 3") as info:
        verify_note(note, ALL, 3)
    assert info.value.reason == "tampered"
    assert len(verify_note(note, ALL, 2).signatures) == 2


def test_note_signed_only_by_unknown_keys_is_tampered() -> None:
    note = sign_note(TEXT, "stranger", _key(9))
    assert _reason(note, ALL, 1) == "tampered"


def test_quorum_below_one_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        verify_note(sign_note(TEXT, A[0], _key(A[1])), ALL, 0)


def test_conflicting_verifiers_for_one_name_and_id_are_a_caller_error() -> None:
    real = _verifier(*A)
    # Only a 4-byte id collision could produce this; simulate it.
    clash = object.__new__(Verifier)
    for field, value in (("name", A[0]), ("key_id", real.key_id)):
        object.__setattr__(clash, field, value)
    object.__setattr__(clash, "public_key", _key(7).public_key)
    with pytest.raises(ValueError):
        verify_note(sign_note(TEXT, A[0], _key(A[1])), [real, clash], 1)


def test_sixteen_and_up_to_max_signatures_are_accepted() -> None:
    strangers = [Signature(f"s{i}", b"\x00" * 4, b"\x01" * 64) for i in range(99)]
    note = format_note(TEXT, [*strangers, _sig(A)])
    assert len(parse_note(note).signatures) == MAX_SIGNATURES
    assert verify_note(note, ALL, 1).signatures == (_sig(A),)


def _good() -> str:
    return sign_note(TEXT, A[0], _key(A[1]))


def _line() -> str:
    return _good()[len(TEXT) + 1 :]


MALFORMED = {
    "empty": "",
    "text only": TEXT,
    "no signature after blank line": TEXT + "\n",
    "no final newline": _good()[:-1],
    "hyphen instead of em dash": TEXT + "\n" + _line().replace("\u2014", "-"),
    "en dash": TEXT + "\n" + _line().replace("\u2014", "\u2013"),
    "no space after dash": TEXT + "\n" + _line().replace("\u2014 ", "\u2014"),
    "empty name": TEXT + "\n\u2014  " + _line().split(" ")[2],
    "no signature field": TEXT + "\n\u2014 agency-a\n",
    "empty signature field": TEXT + "\n\u2014 agency-a \n",
    "two spaces": _good().replace("agency-a ", "agency-a  "),
    "bad base64": TEXT + "\n\u2014 agency-a !!!!\n",
    "unpadded base64": _good().replace("=\n", "\n"),
    "non-canonical base64": TEXT + "\n\u2014 agency-a AAAAAAB=\n",
    "signature under 5 bytes": TEXT + "\n\u2014 agency-a AAAAAA==\n",
    "trailing space": _good()[:-1] + " \n",
    "cr line ending": _good().replace("\n", "\r\n"),
    "tab in text": "a\tb\n\n" + _line(),
    "nul in signature": _good()[:-3] + "\x00=\n",
    "too many signatures": TEXT + "\n" + _line() * (MAX_SIGNATURES + 1),
    "lone surrogate": "\udc80\n\n" + _line(),
}


@pytest.mark.parametrize("note", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(VerificationError) as info:
        parse_note(note)
    assert info.value.reason == "malformed"
    assert _reason(note, ALL, 1) == "malformed"


def test_invalid_utf8_bytes_are_malformed() -> None:
    with pytest.raises(VerificationError) as info:
        parse_note(b"\xff\xfe\n\n" + _line().encode("utf-8"))
    assert info.value.reason == "malformed"


def test_add_signatures_merges_and_dedups_by_name_and_key_id() -> None:
    note = format_note(TEXT, [_sig(A)])
    other_a = Signature(A[0], _sig(A).key_id, b"\x00" * 64)
    merged = add_signatures(note, [_sig(B), other_a, _sig(B), _sig(C)])
    assert parse_note(merged).signatures == (_sig(A), _sig(B), _sig(C))
    assert len(verify_note(merged, ALL, 3).signatures) == 3


def test_add_signatures_to_malformed_note_is_malformed() -> None:
    with pytest.raises(VerificationError):
        add_signatures(TEXT, [_sig(A)])


def test_format_note_refuses_no_or_too_many_signatures() -> None:
    with pytest.raises(ValueError):
        format_note(TEXT, [])
    with pytest.raises(ValueError):
        format_note(TEXT, [_sig(A)] * (MAX_SIGNATURES + 1))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_parse_note_on_arbitrary_input_raises_only_verification_error(
    data: str | bytes,
) -> None:
    try:
        parse_note(data)
    except VerificationError as exc:
        assert exc.reason == "malformed"


NOTE_ALPHABET = st.sampled_from(["\n", "\u2014", " ", "a", "+", "=", "/", "A", "\r"])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.text(NOTE_ALPHABET, max_size=12))
def test_edited_valid_note_verifies_or_raises_verification_error(
    at: int, insert: str
) -> None:
    good = format_note(TEXT, [_sig(A), _sig(B)])
    at = min(at, len(good))
    edited = good[:at] + insert + good[at:]
    try:
        note = verify_note(edited, ALL, 2)
    except VerificationError:
        return
    assert note.text == TEXT  # only an edit outside what was signed survives
