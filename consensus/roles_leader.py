"""The leader: replication, commitment, reads, transfer and membership."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consensus.messages import (
    MAX_VOTERS,
    ConfChange,
    Entry,
    EntryKind,
    Message,
    MessageType,
    ReadState,
    Role,
    encode_conf_change,
)
from consensus.progress import SNAPSHOT_RETRY_HEARTBEATS, ProgressState
from consensus.storage import CompactedError, UnavailableError
from ledger.errors import ConsensusError, NotLeaderError

if TYPE_CHECKING:
    from consensus.raft import Raft

MT = MessageType
PS = ProgressState


@dataclass(slots=True)
class ReadRequest:
    """A ReadIndex waiting for a quorum to confirm our leadership."""

    context: bytes
    src: str
    index: int  # our commit index when the request arrived
    acks: set[str] = field(default_factory=set)


class ReadQueue:
    """Pending ReadIndex requests in arrival order, keyed by a sequence.

    The heartbeat carries the sequence number of the newest request: a
    follower's answer to it confirms leadership for every older one too.
    """

    __slots__ = ("pending", "seq", "waiting")

    def __init__(self) -> None:
        self.seq = 0
        self.pending: dict[bytes, ReadRequest] = {}
        # Requests that arrived before we committed an entry of our term:
        # our commit index may still lag the true one (thesis §6.4).
        self.waiting: list[tuple[bytes, str]] = []

    def add(self, context: bytes, src: str, index: int) -> bytes:
        self.seq += 1
        key = self.seq.to_bytes(8, "big")
        self.pending[key] = ReadRequest(context, src, index)
        return key

    def last_key(self) -> bytes:
        return next(reversed(self.pending)) if self.pending else b""


# -- becoming leader, ticking ----------------------------------------------


def on_elected(r: Raft) -> None:
    pr = r.prs.get(r.id)
    if pr is not None:
        pr.become_replicate()
        pr.recent_active = True
    # The no-op of this term: committing it commits everything before it,
    # and until it commits we refuse membership changes and reads.
    append(r, [(EntryKind.NOOP, b"")])


def tick_heartbeat(r: Raft) -> None:
    r.heartbeat_elapsed += 1
    r.election_elapsed += 1
    if r.election_elapsed >= r.config.election_tick:
        r.election_elapsed = 0
        if r.config.check_quorum and not _quorum_active(r):
            # Check-quorum: a leader cut off from a quorum steps down, so it
            # stops serving reads and its clients look elsewhere.
            r.become_follower(r.term, None)
            return
        r.lead_transferee = None  # a transfer that takes this long failed
    if r.heartbeat_elapsed >= r.config.heartbeat_tick:
        r.heartbeat_elapsed = 0
        bcast_heartbeat(r, r.reads.last_key())


def _quorum_active(r: Raft) -> bool:
    active = 0
    for nid in r.conf.voters:
        pr = r.prs[nid]
        if nid == r.id or pr.recent_active:
            active += 1
    for nid, pr in r.prs.items():
        pr.recent_active = nid == r.id
    return active >= r.quorum()


# -- replication -----------------------------------------------------------


def append(r: Raft, items: list[tuple[EntryKind, bytes]]) -> int:
    """Append entries of our term; returns the last index."""
    index = r.log.last_index()
    ents = []
    for kind, data in items:
        index += 1
        ents.append(Entry(r.term, index, kind, data))
    r.log.append(ents)
    r.note_appended([e for e in ents if e.kind is EntryKind.CONF_CHANGE])
    pr = r.prs.get(r.id)
    if pr is not None:
        pr.maybe_update(index)
    if not maybe_commit(r):
        bcast_append(r)
    return index


def send_append(r: Raft, to: str, *, send_if_empty: bool = True) -> bool:
    """Send ``to`` what it lacks (entries or a snapshot); ``True`` if sent."""
    pr = r.prs[to]
    if pr.is_paused():
        return False
    log = r.log
    prev = pr.next - 1
    try:
        prev_term = log.term(prev)
        ents = log.entries_from(pr.next, r.config.max_msg_bytes)
    except CompactedError:
        return _send_snapshot(r, to)
    if not ents and not send_if_empty:
        return False
    r.send(
        Message(
            MT.APP,
            r.id,
            to,
            r.term,
            log_term=prev_term,
            index=prev,
            entries=tuple(ents),
            commit=log.committed,
        )
    )
    pr.sent_entries(ents[-1].index if ents else None)
    return True


def _send_snapshot(r: Raft, to: str) -> bool:
    try:
        snap = r.log.storage.snapshot()
    except UnavailableError:
        return False  # being made; a heartbeat answer will retry
    if snap.index == 0:
        raise AssertionError("entries compacted but storage has no snapshot")
    r.prs[to].become_snapshot(snap.index)
    r.send(Message(MT.SNAPSHOT, r.id, to, r.term, snapshot=snap))
    return True


def bcast_append(r: Raft) -> None:
    for nid in r.prs:
        if nid != r.id:
            send_append(r, nid)


def bcast_heartbeat(r: Raft, context: bytes) -> None:
    committed = r.log.committed
    for nid, pr in r.prs.items():
        if nid != r.id:
            # NB: never more than the follower is known to hold, so it can
            # apply this commit index without checking.
            commit = min(pr.match, committed)
            r.send(
                Message(
                    MT.HEARTBEAT,
                    r.id,
                    nid,
                    r.term,
                    commit=commit,
                    # Our own commit index, which ``commit`` is capped below:
                    # a passive follower needs it to know it has caught up.
                    index=committed,
                    context=context,
                )
            )


def maybe_commit(r: Raft) -> bool:
    """Commit the highest index a quorum of voters holds, if of our term.

    Broadcasts the new commit index; ``True`` if it advanced.
    """
    voters = r.conf.voters
    if not voters:
        return False
    matches = sorted((r.prs[v].match for v in voters), reverse=True)
    # Raft §5.4.2: counting replicas commits only entries of our own term;
    # an older entry commits with the first of ours above it (Figure 8).
    if not r.log.maybe_commit(matches[len(voters) // 2], r.term):
        return False
    r.prune_conf()
    bcast_append(r)
    _after_commit(r)
    return True


def _after_commit(r: Raft) -> None:
    for context, src in r.reads.waiting:
        read_request(r, context, src)
    r.reads.waiting = []
    if r.id not in r.conf.voters and not r.conf_change_pending():
        # Thesis §4.2.2: a leader removed from the cluster manages it until
        # the change commits, then steps down.
        r.become_follower(r.term, None)


# -- messages --------------------------------------------------------------


def step_leader(r: Raft, m: Message) -> None:
    pr = r.prs.get(m.src)
    if m.type is MT.APP_RESP and pr is not None:
        pr.recent_active = True
        if m.reject:
            _handle_reject(r, m)
        else:
            _handle_ack(r, m)
    elif m.type is MT.HEARTBEAT_RESP and pr is not None:
        _handle_heartbeat_resp(r, m)
    elif m.type is MT.READ_INDEX:
        read_request(r, m.context, m.src)


def _handle_reject(r: Raft, m: Message) -> None:
    pr = r.prs[m.src]
    hint = m.reject_hint
    if m.log_term > 0:
        hint = r.log.find_conflict_by_term(hint, m.log_term)[0]
    if pr.maybe_decr_to(m.index, hint):
        if pr.state is PS.REPLICATE:
            pr.become_probe()
        send_append(r, m.src)


def _handle_ack(r: Raft, m: Message) -> None:
    pr = r.prs[m.src]
    was_paused = pr.is_paused()
    if not pr.maybe_update(m.index):
        return
    if pr.state is PS.PROBE:
        pr.become_replicate()
    elif pr.state is PS.SNAPSHOT:
        pr.become_probe()
        if pr.match + 1 >= r.log.first_index():
            pr.become_replicate()
    else:
        pr.inflights.free_le(m.index)
    if maybe_commit(r):
        if r.role is not Role.LEADER:
            return
    elif was_paused:
        send_append(r, m.src)
    while send_append(r, m.src, send_if_empty=False):
        pass
    if m.src == r.lead_transferee and pr.match == r.log.last_index():
        r.send(Message(MT.TIMEOUT_NOW, r.id, m.src, r.term))


def _handle_heartbeat_resp(r: Raft, m: Message) -> None:
    pr = r.prs[m.src]
    pr.recent_active = True
    pr.probe_sent = False
    if pr.state is PS.SNAPSHOT:
        # The snapshot or its answer may be lost; ask again after a while.
        pr.snapshot_wait += 1
        if pr.snapshot_wait >= SNAPSHOT_RETRY_HEARTBEATS:
            pr.become_probe()
    elif pr.state is PS.REPLICATE and pr.inflights.full():
        pr.inflights.free_first()
    if pr.match < r.log.last_index():
        send_append(r, m.src)
    if m.context:
        _read_ack(r, m.context, m.src)


# -- client requests -------------------------------------------------------


def _check_leader(r: Raft) -> None:
    if r.role is not Role.LEADER:
        raise NotLeaderError(r.lead)
    if r.lead_transferee is not None:
        raise ConsensusError(f"leadership is moving to {r.lead_transferee}")
    if r.id not in r.conf.voters:
        raise ConsensusError("this leader is leaving the cluster")


def propose(r: Raft, kind: EntryKind, data: bytes) -> int:
    _check_leader(r)
    return append(r, [(kind, data)])


def propose_batch(r: Raft, items: Sequence[bytes]) -> int:
    _check_leader(r)
    if not items:
        raise ConsensusError("empty batch")
    return append(r, [(EntryKind.NORMAL, data) for data in items])


def propose_conf_change(r: Raft, change: ConfChange) -> int:
    _check_leader(r)
    if r.log.term_or_zero(r.log.committed) != r.term:
        # The one-at-a-time rule is only safe once this term's no-op has
        # committed: otherwise an uncommitted change from an earlier term
        # could be overwritten after ours committed (raft-dev, 2015).
        raise ConsensusError("the leader's no-op of this term has not committed")
    if r.conf_change_pending():
        raise ConsensusError("another membership change is not yet committed")
    new = r.conf.apply(change)
    if new == r.conf:
        raise ConsensusError(f"{change} changes nothing")
    if not new.voters or len(new.voters) > MAX_VOTERS:
        raise ConsensusError(f"{change} leaves {len(new.voters)} voters")
    return append(r, [(EntryKind.CONF_CHANGE, encode_conf_change(change))])


def transfer_leader(r: Raft, to: str) -> None:
    _check_leader(r)
    if to == r.id:
        return
    if to not in r.conf.voters:
        raise ConsensusError(f"{to} is not a voter")
    r.lead_transferee = to
    # The transfer must finish within an election timeout or is abandoned.
    r.election_elapsed = 0
    if r.prs[to].match == r.log.last_index():
        r.send(Message(MT.TIMEOUT_NOW, r.id, to, r.term))
    else:
        send_append(r, to)


def read_request(r: Raft, context: bytes, src: str) -> None:
    if r.log.term_or_zero(r.log.committed) != r.term:
        r.reads.waiting.append((context, src))
        return
    if r.conf.voters == (r.id,):
        _answer_read(r, context, src, r.log.committed)
        return
    key = r.reads.add(context, src, r.log.committed)
    _read_ack(r, key, r.id)
    bcast_heartbeat(r, key)


def _read_ack(r: Raft, key: bytes, nid: str) -> None:
    req = r.reads.pending.get(key)
    if req is None:
        return
    req.acks.add(nid)
    if sum(1 for v in r.conf.voters if v in req.acks) < r.quorum():
        return
    # Leadership confirmed after every request up to ``key`` arrived.
    pending = r.reads.pending
    while pending:
        first = next(iter(pending))
        done = pending.pop(first)
        _answer_read(r, done.context, done.src, done.index)
        if first == key:
            break


def _answer_read(r: Raft, context: bytes, src: str, index: int) -> None:
    if src == r.id:
        r.read_states.append(ReadState(index, context))
    else:
        r.send(
            Message(MT.READ_INDEX_RESP, r.id, src, r.term, index=index, context=context)
        )
