"""Canonical encoding of Raft messages: round trips and refusals."""

from __future__ import annotations

import pytest

from consensus.messages import (
    CAMPAIGN_TRANSFER,
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Snapshot,
    decode_conf_change,
    decode_message,
    encode_conf_change,
    encode_message,
)
from ledger.codec import Value, pack, unpack
from ledger.errors import EncodingError

MT = MessageType

SAMPLES = [
    Message(MT.HEARTBEAT, "n1", "n2", 3, commit=7, context=b"\x00" * 8),
    Message(
        MT.APP,
        "agency-a",
        "agency-b",
        5,
        log_term=4,
        index=10,
        entries=(
            Entry(4, 11, EntryKind.NORMAL, b"batch"),
            Entry(5, 12, EntryKind.NOOP),
            Entry(5, 13, EntryKind.CONF_CHANGE, b"cc"),
        ),
        commit=9,
    ),
    Message(
        MT.APP_RESP, "n2", "n1", 5, index=10, reject=True, reject_hint=8, log_term=3
    ),
    Message(MT.VOTE, "n3", "n1", 6, index=13, log_term=5, context=CAMPAIGN_TRANSFER),
    Message(
        MT.SNAPSHOT,
        "n1",
        "n4",
        6,
        snapshot=Snapshot(40, 5, ConfState(("n1", "n2", "n3"), ("n4",)), b"image"),
    ),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.type.name)
def test_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


def _record(msg: Message) -> dict[str, Value]:
    value = unpack(encode_message(msg))
    assert isinstance(value, dict)
    return dict(value)


BAD_RECORDS: dict[str, dict[str, Value]] = {
    "unknown type": {"type": 99},
    "bad node id": {"src": "Not An Id"},
    "negative term": {"term": -1},
    "bool as int": {"commit": True},
    "int as bool": {"reject": 1},
    "entry too short": {"entries": [[1, 2, 0]]},
    "entry kind": {"entries": [[1, 2, 9, b""]]},
    "entry index 0": {"entries": [[1, 0, 0, b""]]},
    "gap in entries": {"entries": [[1, 2, 0, b""], [1, 4, 0, b""]]},
    "terms go back": {"entries": [[2, 2, 0, b""], [1, 3, 0, b""]]},
    "snapshot on heartbeat": {
        "snapshot": {"index": 1, "term": 1, "voters": [], "learners": [], "data": b""}
    },
    "context too long": {"context": b"x" * 2000},
}


@pytest.mark.parametrize("change", list(BAD_RECORDS), ids=list(BAD_RECORDS))
def test_malformed_fields_are_refused(change: str) -> None:
    rec = _record(SAMPLES[0])
    overrides = BAD_RECORDS[change]
    if "snapshot" in overrides:
        rec = {**{k: v for k, v in rec.items() if k != "context"}, **overrides}
        rec["context"] = b""
    else:
        rec.update(overrides)
    with pytest.raises(EncodingError):
        decode_message(pack(rec))


def test_snapshot_membership_must_be_sorted_and_disjoint() -> None:
    rec = _record(SAMPLES[4])
    snap = rec["snapshot"]
    assert isinstance(snap, dict)
    bad: list[tuple[list[Value], list[Value]]] = [(["n2", "n1"], []), (["n1"], ["n1"])]
    for voters, learners in bad:
        rec["snapshot"] = {**snap, "voters": voters, "learners": learners}
        with pytest.raises(EncodingError):
            decode_message(pack(rec))


def test_missing_unknown_and_reordered_fields_are_refused() -> None:
    rec = _record(SAMPLES[0])
    missing = {k: v for k, v in rec.items() if k != "commit"}
    unknown = {**rec, "extra": 1}
    reordered = dict(reversed(list(rec.items())))
    for bad in (missing, unknown, reordered):
        with pytest.raises(EncodingError):
            decode_message(pack(bad))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x80",
        encode_message(SAMPLES[0]) + b"\x00",
        b"\xcb" + b"\x00" * 8,
    ],
    ids=["empty", "reserved byte", "empty map", "trailing byte", "float"],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(EncodingError):
        decode_message(data)


def test_every_truncation_is_refused() -> None:
    data = encode_message(SAMPLES[1])
    for cut in range(len(data)):
        with pytest.raises(EncodingError):
            decode_message(data[:cut])


def test_conf_change_round_trip_and_refusal() -> None:
    cc = ConfChange(ConfChangeKind.ADD_LEARNER, "agency-x")
    assert decode_conf_change(encode_conf_change(cc)) == cc
    with pytest.raises(EncodingError):
        decode_conf_change(pack({"kind": 7, "node": "n1"}))
    with pytest.raises(EncodingError):
        decode_conf_change(pack({"kind": 0, "node": "NO"}))
