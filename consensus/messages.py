"""Raft's values: log entries, persistent state, snapshots and messages.

Everything here is a frozen value. ``encode_message``/``decode_message`` give
the one canonical byte string of a message (``ledger.codec``); the decoder
refuses anything else with ``EncodingError``, so the transport can hand the
core only well-formed messages.

Conventions: indexes start at 1 (index 0 is the empty log's sentinel, whose
term is 0); a node id is an agency id; ``None`` means "no node".
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from ledger.codec import (
    Field,
    Value,
    check_record,
    get_bytes,
    get_int,
    get_list,
    get_str,
    pack,
    unpack,
)
from ledger.errors import EncodingError

# Agency ids double as node ids (docs/internals.md).
NODE_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")
# A vote request carrying this context comes from a leadership transfer and
# must not be refused on the grounds of leader stickiness.
CAMPAIGN_TRANSFER: Final = b"transfer"
MAX_VOTERS: Final = 7
MAX_MEMBERS: Final = 64


class EntryKind(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1
    # The empty entry a new leader appends so that it commits an entry of its
    # own term (Raft §8): only that makes earlier entries committed.
    NOOP = 2


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MessageType(IntEnum):
    APP = 0
    APP_RESP = 1
    VOTE = 2
    VOTE_RESP = 3
    PRE_VOTE = 4
    PRE_VOTE_RESP = 5
    HEARTBEAT = 6
    HEARTBEAT_RESP = 7
    SNAPSHOT = 8
    TIMEOUT_NOW = 9
    READ_INDEX = 10
    READ_INDEX_RESP = 11


class ConfChangeKind(IntEnum):
    ADD_VOTER = 0  # also promotes a learner
    ADD_LEARNER = 1  # also demotes a voter
    REMOVE = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """One slot of the replicated log; ``index >= 1``, ``term >= 1``."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it is sent.

    ``vote`` is the node voted for in ``term`` (``None``: no vote yet).
    """

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, reported for observers (metrics, redirects)."""

    role: Role
    leader: str | None
    term: int


@dataclass(frozen=True, slots=True)
class ConfState:
    """A membership: sorted, disjoint tuples of voter and learner ids."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()

    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners

    def apply(self, change: ConfChange) -> ConfState:
        """The membership after ``change``; unknown removals change nothing."""
        voters = set(self.voters) - {change.node}
        learners = set(self.learners) - {change.node}
        if change.kind is ConfChangeKind.ADD_VOTER:
            voters.add(change.node)
        elif change.kind is ConfChangeKind.ADD_LEARNER:
            learners.add(change.node)
        return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A change of one server (thesis §4.1): add, promote, demote or remove."""

    kind: ConfChangeKind
    node: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine at ``index``, whose entry had ``term``.

    ``conf_state`` is the membership in force at ``index``; ``data`` is the
    application's opaque image of its state machine.
    """

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once ``applied >= index``."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One message between peers.

    ``index``/``log_term`` name the entry preceding ``entries`` (APP), the
    candidate's last entry (votes), or the acknowledged/rejected index
    (APP_RESP); ``index`` of a HEARTBEAT is the leader's commit index, of
    which ``commit`` is the part the follower is known to hold;
    ``reject_hint`` with ``log_term`` on a rejected APP_RESP is
    the follower's guess of where the logs agree.
    """

    type: MessageType
    src: str
    dst: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


# ---------------------------------------------------------------------------
# Canonical encoding. Entries and snapshots ride inside messages; entries
# are 4-element arrays because a batch may hold many of them.

MESSAGE_FIELDS: Final = (
    Field("type", int, high=max(MessageType)),
    Field("src", str, max_len=40),
    Field("dst", str, max_len=40),
    Field("term", int),
    Field("log_term", int),
    Field("index", int),
    Field("entries", list),
    Field("commit", int),
    Field("reject", bool),
    Field("reject_hint", int),
    Field("snapshot", dict, optional=True),
    Field("context", bytes, max_len=1024),
)
SNAPSHOT_FIELDS: Final = (
    Field("index", int),
    Field("term", int),
    Field("voters", list, max_len=MAX_MEMBERS),
    Field("learners", list, max_len=MAX_MEMBERS),
    Field("data", bytes),
)
CONF_CHANGE_FIELDS: Final = (
    Field("kind", int, high=max(ConfChangeKind)),
    Field("node", str, max_len=40),
)


def _node_id(value: Value, what: str) -> str:
    if not isinstance(value, str) or not NODE_ID_RE.fullmatch(value):
        raise EncodingError(f"{what}: not a node id")
    return value


def _entry_value(e: Entry) -> Value:
    return [e.term, e.index, int(e.kind), e.data]


def _decode_entry(value: Value) -> Entry:
    if not isinstance(value, list) or len(value) != 4:
        raise EncodingError("entry: expected a 4-element array")
    term, index, kind, data = value
    ok = all(
        isinstance(x, int) and not isinstance(x, bool) for x in (term, index, kind)
    )
    if not ok or not isinstance(data, bytes):
        raise EncodingError("entry: wrong field types")
    assert isinstance(term, int) and isinstance(index, int) and isinstance(kind, int)
    if term < 1 or index < 1 or kind not in EntryKind._value2member_map_:
        raise EncodingError("entry: field out of range")
    return Entry(term, index, EntryKind(kind), data)


def _snapshot_value(s: Snapshot) -> dict[str, Value]:
    return {
        "index": s.index,
        "term": s.term,
        "voters": list(s.conf_state.voters),
        "learners": list(s.conf_state.learners),
        "data": s.data,
    }


def _id_list(rec: dict[str, Value], name: str) -> tuple[str, ...]:
    ids = tuple(_node_id(v, f"snapshot.{name}") for v in get_list(rec, name))
    if list(ids) != sorted(set(ids)):
        raise EncodingError(f"snapshot.{name}: not sorted and unique")
    return ids


def _decode_snapshot(value: Value) -> Snapshot:
    rec = check_record(value, SNAPSHOT_FIELDS, "snapshot")
    conf = ConfState(voters=_id_list(rec, "voters"), learners=_id_list(rec, "learners"))
    if set(conf.voters) & set(conf.learners) or len(conf.voters) > MAX_VOTERS:
        raise EncodingError("snapshot: bad membership")
    index, term = get_int(rec, "index"), get_int(rec, "term")
    if (index == 0) != (term == 0):
        raise EncodingError("snapshot: index and term disagree")
    return Snapshot(index, term, conf, get_bytes(rec, "data"))


def encode_message(msg: Message) -> bytes:
    """The canonical bytes of ``msg``."""
    rec: dict[str, Value] = {
        "type": int(msg.type),
        "src": msg.src,
        "dst": msg.dst,
        "term": msg.term,
        "log_term": msg.log_term,
        "index": msg.index,
        "entries": [_entry_value(e) for e in msg.entries],
        "commit": msg.commit,
        "reject": msg.reject,
        "reject_hint": msg.reject_hint,
    }
    if msg.snapshot is not None:
        rec["snapshot"] = _snapshot_value(msg.snapshot)
    rec["context"] = msg.context
    return pack(rec)


def decode_message(data: bytes) -> Message:
    """Parse ``data``; raises ``EncodingError`` unless it is canonical."""
    rec = check_record(unpack(data), MESSAGE_FIELDS, "message")
    entries = tuple(_decode_entry(v) for v in get_list(rec, "entries"))
    for prev, cur in itertools.pairwise(entries):
        if cur.index != prev.index + 1 or cur.term < prev.term:
            raise EncodingError("message.entries: not consecutive")
    snap = rec.get("snapshot")
    msg_type = MessageType(get_int(rec, "type"))
    if (snap is not None) != (msg_type is MessageType.SNAPSHOT):
        raise EncodingError("message: snapshot present iff type is SNAPSHOT")
    return Message(
        type=msg_type,
        src=_node_id(rec["src"], "message.src"),
        dst=_node_id(rec["dst"], "message.dst"),
        term=get_int(rec, "term"),
        log_term=get_int(rec, "log_term"),
        index=get_int(rec, "index"),
        entries=entries,
        commit=get_int(rec, "commit"),
        reject=bool(rec["reject"]),
        reject_hint=get_int(rec, "reject_hint"),
        snapshot=None if snap is None else _decode_snapshot(snap),
        context=get_bytes(rec, "context"),
    )


def encode_conf_change(cc: ConfChange) -> bytes:
    """The data of a CONF_CHANGE entry."""
    return pack({"kind": int(cc.kind), "node": cc.node})


def decode_conf_change(data: bytes) -> ConfChange:
    rec = check_record(unpack(data), CONF_CHANGE_FIELDS, "conf_change")
    node = _node_id(get_str(rec, "node"), "conf_change.node")
    return ConfChange(ConfChangeKind(get_int(rec, "kind")), node)
