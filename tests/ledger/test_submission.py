"""Submissions: one signature over the batch root, and its encoding."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.codec import pack
from ledger.entries import Anchor, encode_entry
from ledger.errors import EncodingError, RuleViolation, VerificationError
from ledger.keys import SigningKey, key_id
from ledger.merkle import leaf_hash, root_of
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    batch_root,
    check_signature,
    decode_submission,
    encode_submission,
    sign_submission,
    signing_message,
    verify_submission,
)

ORIGIN = "test.agency-ledger.example/v1"
KEY = SigningKey.from_seed(b"\x11" * 32)
OTHER = SigningKey.from_seed(b"\x22" * 32)
NONCE = b"\x07" * 16


def _entries(n: int) -> list[bytes]:
    return [
        encode_entry(
            Anchor(
                issuer="moj",
                doc_id=i.to_bytes(32, "big"),
                doc_type="criminal_record",
                issued_at=i,
            )
        )
        for i in range(n)
    ]


def _signed(n: int = 3) -> Submission:
    return sign_submission(
        ORIGIN, "moj", _entries(n), KEY, nonce=NONCE, timestamp_ms=1_000
    )


def test_batch_root_is_the_rfc9162_root_of_the_leaf_hashes() -> None:
    entries = _entries(5)
    assert batch_root(entries) == root_of([leaf_hash(e) for e in entries])


def test_signing_message_is_domain_separated() -> None:
    message = signing_message(ORIGIN, "moj", NONCE, 5, b"r" * 32)
    prefix = b"agency-ledger/submission/v1\n"
    assert message == prefix + pack([ORIGIN, "moj", NONCE, 5, b"r" * 32])


def test_sign_then_verify() -> None:
    sub = _signed()
    assert sub.key_id == key_id("moj", KEY.public_key)
    verify_submission(sub, ORIGIN, [OTHER.public_key, KEY.public_key])


def test_sign_picks_a_fresh_nonce_and_the_current_time() -> None:
    a = sign_submission(ORIGIN, "moj", _entries(1), KEY)
    b = sign_submission(ORIGIN, "moj", _entries(1), KEY)
    assert a.nonce != b.nonce and len(a.nonce) == 16
    assert a.timestamp_ms > 1_600_000_000_000


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: dataclasses.replace(s, entries=(*s.entries[:2], s.entries[0])),
        lambda s: dataclasses.replace(s, entries=s.entries[:2]),
        lambda s: dataclasses.replace(s, nonce=b"\x08" * 16),
        lambda s: dataclasses.replace(s, timestamp_ms=s.timestamp_ms + 1),
        lambda s: dataclasses.replace(s, signature=bytes(64)),
    ],
    ids=["entry swapped", "entry dropped", "nonce", "timestamp", "signature"],
)
def test_any_change_after_signing_is_tampered(tamper: object) -> None:
    sub = tamper(_signed())  # type: ignore[operator]
    with pytest.raises(VerificationError) as info:
        verify_submission(sub, ORIGIN, [KEY.public_key])
    assert info.value.reason == "tampered"


def test_a_signature_for_another_chain_is_tampered() -> None:
    with pytest.raises(VerificationError):
        verify_submission(_signed(), "other.chain/v1", [KEY.public_key])


def test_a_key_outside_the_list_is_unknown_key() -> None:
    with pytest.raises(RuleViolation) as info:
        verify_submission(_signed(), ORIGIN, [OTHER.public_key])
    assert info.value.code == "unknown_key"


def test_the_same_key_under_another_agency_name_is_unknown_key() -> None:
    # Key ids bind the agency name: moj's key id means nothing for moh.
    sub = dataclasses.replace(_signed(), agency="moh")
    with pytest.raises(RuleViolation, match="unknown_key"):
        verify_submission(sub, ORIGIN, [KEY.public_key])


def test_encoding_round_trip() -> None:
    sub = _signed()
    data = encode_submission(sub)
    assert decode_submission(data) == sub
    assert encode_submission(decode_submission(data)) == data


def _value(sub: Submission) -> dict[str, object]:
    return {
        "agency": sub.agency,
        "key_id": sub.key_id,
        "nonce": sub.nonce,
        "timestamp": sub.timestamp_ms,
        "entries": list(sub.entries),
        "signature": sub.signature,
    }


REJECTED = [
    ("empty batch", {"entries": []}),
    ("entry not bytes", {"entries": ["anchor"]}),
    ("empty entry", {"entries": [b""]}),
    ("entry too large", {"entries": [b"x" * (64 * 1024 + 1)]}),
    ("short nonce", {"nonce": b"\x01" * 15}),
    ("long key id", {"key_id": b"\x01" * 5}),
    ("short signature", {"signature": b"\x01" * 63}),
    ("bad agency id", {"agency": "Ministry of Justice"}),
    ("negative timestamp", {"timestamp": -1}),
    ("unknown field", {"colour": "red"}),
]


@pytest.mark.parametrize(("desc", "change"), REJECTED, ids=[d for d, _ in REJECTED])
def test_decode_refuses(desc: str, change: dict[str, object]) -> None:
    value = _value(_signed()) | change
    with pytest.raises(EncodingError):
        decode_submission(pack(value))  # type: ignore[arg-type]


def test_decode_refuses_fields_out_of_order() -> None:
    value = dict(reversed(list(_value(_signed()).items())))
    with pytest.raises(EncodingError):
        decode_submission(pack(value))  # type: ignore[arg-type]


def test_oversized_batches_decode_but_cannot_be_signed() -> None:
    # The rules, not the decoder, reject oversized batches, so the block
    # records them with their own reason code.
    sub = _signed(1)
    big = dataclasses.replace(sub, entries=sub.entries * (MAX_ENTRIES + 1))
    assert len(decode_submission(encode_submission(big)).entries) == MAX_ENTRIES + 1
    with pytest.raises(RuleViolation, match="too_many_entries"):
        sign_submission(ORIGIN, "moj", list(big.entries), KEY)


def test_an_empty_batch_cannot_be_signed() -> None:
    with pytest.raises(EncodingError):
        sign_submission(ORIGIN, "moj", [], KEY)


def test_a_verified_signature_is_remembered_only_for_its_own_key() -> None:
    """The leader's second check of a submission is answered from the first;
    the same message and signature under another key still fail."""
    sub = _signed()
    root = batch_root(sub.entries)
    check_signature(sub, ORIGIN, KEY.public_key, root)
    check_signature(sub, ORIGIN, KEY.public_key, root)  # remembered
    with pytest.raises(VerificationError):
        check_signature(sub, ORIGIN, OTHER.public_key, root)
    with pytest.raises(VerificationError):
        check_signature(sub, ORIGIN, KEY.public_key, b"\x00" * 32)
