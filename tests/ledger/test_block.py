"""Blocks and status records: canonical encodings and the hashes over them."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

import ledger.status
from ledger.block import (
    Block,
    BlockHeader,
    Cosignature,
    Outcome,
    block_hash,
    body_hash,
    decode_block,
    encode_block,
    verify_body,
)
from ledger.codec import Value, pack, unpack
from ledger.entries import Anchor, Record, Revoke, Supersede
from ledger.errors import EncodingError, RootMismatchError
from ledger.status import StatusRecord, _fast_document

SUBS = (b"\x81\xa1a\x01", b"\x81\xa1b\x02")
OUTCOMES = (Outcome("ok"), Outcome("not_owner", 3))
COSIGS = (Cosignature(height=1, agency="moj", signature=b"s" * 64),)


def _block() -> Block:
    header = BlockHeader(
        height=2,
        prev_hash=b"p" * 32,
        time_ms=1_700_000_000_000,
        first_leaf=10,
        tree_size=14,
        log_root=b"l" * 32,
        state_root=b"s" * 32,
        body_hash=body_hash(SUBS, OUTCOMES, COSIGS),
        trust_version=1,
    )
    return Block(
        header=header, submissions=SUBS, outcomes=OUTCOMES, cosignatures=COSIGS
    )


def test_block_round_trip() -> None:
    block = _block()
    data = encode_block(block)
    assert decode_block(data) == block
    assert encode_block(decode_block(data)) == data
    verify_body(decode_block(data))


def test_header_keys_in_order() -> None:
    value = _block().header.to_value()
    assert list(value) == [
        "height",
        "prev_hash",
        "time",
        "first_leaf",
        "tree_size",
        "log_root",
        "state_root",
        "body_hash",
        "trust_version",
    ]


def test_block_hash_is_sha256_of_the_canonical_header() -> None:
    header = _block().header
    assert block_hash(header) == hashlib.sha256(pack(header.to_value())).digest()
    assert _block().hash == block_hash(header)
    moved = dataclasses.replace(header, time_ms=header.time_ms + 1)
    assert block_hash(moved) != block_hash(header)


def test_body_hash_covers_submissions_outcomes_and_cosignatures() -> None:
    expected = hashlib.sha256(
        pack(
            [
                list(SUBS),
                [{"code": "ok"}, {"code": "not_owner", "entry": 3}],
                [{"height": 1, "agency": "moj", "signature": b"s" * 64}],
            ]
        )
    ).digest()
    assert body_hash(SUBS, OUTCOMES, COSIGS) == expected


def test_verify_body_names_both_hashes_on_a_swapped_outcome() -> None:
    block = _block()
    forged = dataclasses.replace(block, outcomes=(Outcome("ok"), Outcome("ok")))
    with pytest.raises(RootMismatchError) as info:
        verify_body(forged)
    assert info.value.expected == block.header.body_hash
    assert info.value.computed == body_hash(SUBS, forged.outcomes, COSIGS)


def test_a_block_needs_one_outcome_per_submission() -> None:
    with pytest.raises(EncodingError):
        dataclasses.replace(_block(), outcomes=(Outcome("ok"),))


def _block_value() -> dict[str, Value]:
    value = unpack(encode_block(_block()))
    assert isinstance(value, dict)
    return value


def _header_change(**change: Value) -> dict[str, Value]:
    value = _block_value()
    header = value["header"]
    assert isinstance(header, dict)
    value["header"] = header | change
    return value


REJECTED: list[tuple[str, Value]] = [
    ("height 0", _header_change(height=0)),
    ("short prev_hash", _header_change(prev_hash=b"p" * 31)),
    ("first_leaf beyond tree_size", _header_change(first_leaf=15)),
    ("submission not bytes", _block_value() | {"submissions": ["x", "y"]}),
    ("outcome with unknown key", _block_value() | {"outcomes": [{"why": 1}] * 2}),
    (
        "cosignature too short",
        _block_value()
        | {"cosignatures": [{"height": 1, "agency": "moj", "signature": b"s"}]},
    ),
    (
        "missing cosignatures",
        {k: v for k, v in _block_value().items() if k != "cosignatures"},
    ),
]


@pytest.mark.parametrize(("desc", "value"), REJECTED, ids=[d for d, _ in REJECTED])
def test_decode_block_refuses(desc: str, value: Value) -> None:
    with pytest.raises(EncodingError):
        decode_block(pack(value))


# --- status records ------------------------------------------------------------

DOC = b"d" * 32
ANCHOR = Anchor(
    issuer="moj",
    doc_id=DOC,
    doc_type="criminal_record",
    issued_at=5,
    valid_until=99,
)


def _statuses() -> list[StatusRecord]:
    valid = StatusRecord.anchored(ANCHOR, leaf=3)
    revoked = valid.revoked(
        Revoke(issuer="moj", doc_id=DOC, reason="withdrawn", at=7), leaf=9
    )
    superseded = valid.superseded(
        Supersede(issuer="moj", old_doc_id=DOC, new_doc_id=b"n" * 32, at=8), leaf=10
    )
    record = StatusRecord.recorded(
        Record(issuer="moj", registry="births", record_id=b"r", version=2, digest=DOC),
        leaf=11,
    )
    return [
        valid,
        revoked,
        superseded,
        superseded.revoked(
            Revoke(issuer="moj", doc_id=DOC, reason="other", at=9), leaf=12
        ),
        record,
    ]


@pytest.mark.parametrize("status", _statuses(), ids=lambda s: s.status)
def test_status_round_trip(status: StatusRecord) -> None:
    data = status.encode()
    assert StatusRecord.decode(data) == status
    assert StatusRecord.decode(data).encode() == data


def test_status_transitions_keep_the_anchor_and_move_the_leaf() -> None:
    valid, revoked, superseded, both, record = _statuses()
    assert (valid.status, valid.leaf, valid.anchor_leaf) == ("valid", 3, 3)
    assert (revoked.status, revoked.leaf, revoked.anchor_leaf) == ("revoked", 9, 3)
    assert (revoked.revoked_at, revoked.reason) == (7, "withdrawn")
    assert superseded.superseded_by == b"n" * 32
    assert both.status == "revoked" and both.superseded_by == b"n" * 32
    assert record.version == 2 and not record.is_document
    assert list(unpack(valid.encode())) == [  # type: ignore[arg-type]
        "status",
        "issuer",
        "doc_type",
        "issued_at",
        "valid_until",
        "anchor_leaf",
        "leaf",
    ]


@pytest.mark.parametrize(
    "window", [(None, None), (1, None), (None, 2**64 - 1), (0, 7)], ids=str
)
def test_the_anchored_fast_path_agrees_with_the_schema_check(
    window: tuple[int | None, int | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decoding takes a shortcut for an anchored document's record; it must
    # accept exactly what the generic check accepts, and build the same.
    entry = dataclasses.replace(ANCHOR, valid_from=window[0], valid_until=window[1])
    rec = StatusRecord.anchored(entry, leaf=3)
    value = rec.to_value()
    bad: list[dict[str, Value]] = [
        value | {"issuer": "x" * 41},
        value | {"doc_type": b"criminal_record"},
        value | {"leaf": True},
        value | {"anchor_leaf": -1},
        value | {"issued_at": 2**64},
        value | {"status": "s" * 17},
        {**value, "valid_from": None},  # present, but not an integer
        {**value, "valid_until": None},
        value | {"status": "lost"},  # the constructor's check
        dict(reversed(value.items())),
    ]
    fast = [StatusRecord.from_value(value)] + [_outcome(v) for v in bad]
    assert _fast_document(value) == rec
    assert all(_fast_document(v) is None for v in bad[:-2])
    monkeypatch.setattr(ledger.status, "_fast_document", lambda value: None)
    assert [StatusRecord.from_value(value)] + [_outcome(v) for v in bad] == fast
    assert fast[0] == rec and all(isinstance(o, str) for o in fast[1:])


@pytest.mark.parametrize(
    "window", [(None, None), (1, None), (None, 2**64 - 1), (0, 7)], ids=str
)
def test_an_anchored_record_is_what_the_checked_constructor_builds(
    window: tuple[int | None, int | None],
) -> None:
    # anchored() skips __init__ and its checks on its hot path.
    entry = dataclasses.replace(ANCHOR, valid_from=window[0], valid_until=window[1])
    rec = StatusRecord.anchored(entry, leaf=3)
    checked = StatusRecord(
        status="valid",
        issuer=entry.issuer,
        leaf=3,
        doc_type=entry.doc_type,
        issued_at=entry.issued_at,
        valid_from=entry.valid_from,
        valid_until=entry.valid_until,
        anchor_leaf=3,
    )
    assert rec == checked and rec.encode() == checked.encode()
    assert rec.revoked(
        Revoke(issuer="moj", doc_id=DOC, reason="withdrawn", at=7), leaf=9
    ) == dataclasses.replace(
        checked, status="revoked", leaf=9, revoked_at=7, reason="withdrawn"
    )


def test_an_anchor_without_an_issue_time_still_makes_no_record() -> None:
    # A mistyped Anchor (its fields are not type-checked) takes the checked
    # path, which refuses a valid document without issued_at.
    entry = dataclasses.replace(ANCHOR, issued_at=None)  # type: ignore[arg-type]
    with pytest.raises(EncodingError, match="issued_at"):
        StatusRecord.anchored(entry, leaf=3)


def _outcome(value: Value) -> StatusRecord | str:
    try:
        return StatusRecord.from_value(value)
    except EncodingError as exc:
        return str(exc)


def test_status_decode_refuses_half_filled_records() -> None:
    value = StatusRecord.anchored(ANCHOR, leaf=3).to_value()
    with pytest.raises(EncodingError):
        StatusRecord.decode(pack(value | {"status": "revoked"}))
    with pytest.raises(EncodingError):
        StatusRecord.decode(pack(value | {"status": "lost"}))
    with pytest.raises(EncodingError):
        StatusRecord.decode(pack({k: v for k, v in value.items() if k != "leaf"}))


@pytest.mark.parametrize(
    ("status", "extra"),
    [
        ("valid", {"revoked_at": 7}),
        ("valid", {"reason": "withdrawn"}),
        ("valid", {"superseded_by": b"n" * 32}),
        ("valid", {"version": 1}),
        ("superseded", {"revoked_at": 7}),
        ("revoked", {"registry": "births"}),
        ("record", {"doc_type": "criminal_record"}),
        ("record", {"anchor_leaf": 3}),
    ],
    ids=str,
)
def test_status_decode_refuses_over_filled_records(
    status: str, extra: dict[str, Value]
) -> None:
    # Only the shapes the rules write decode: a valid record carrying a
    # revocation reason would read as valid to one client and revoked to
    # another. Each start is a record the rules do write.
    start = {s.status: s for s in _statuses()}[status]
    value = start.to_value() | extra
    order = [f.name for f in ledger.status.STATUS_FIELDS]
    data = pack({k: value[k] for k in order if k in value})
    with pytest.raises(EncodingError, match="cannot carry"):
        StatusRecord.decode(data)
    with pytest.raises(EncodingError, match="cannot carry"):
        dataclasses.replace(start, **extra)  # type: ignore[arg-type]
