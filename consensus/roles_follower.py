"""The follower: accepts appends, heartbeats and snapshots from its leader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus import roles_candidate
from consensus.messages import Message, MessageType, ReadState, Snapshot

if TYPE_CHECKING:
    from consensus.raft import Raft

MT = MessageType


def step_follower(r: Raft, m: Message) -> None:
    """``m.term == r.term`` here (``Raft.step`` settled the terms)."""
    t = m.type
    if t is MT.APP or t is MT.HEARTBEAT or t is MT.SNAPSHOT:
        r.election_elapsed = 0
        r.lead = m.src
        if t is MT.APP:
            handle_append(r, m)
        elif t is MT.HEARTBEAT:
            handle_heartbeat(r, m)
        else:
            handle_snapshot(r, m)
    elif t is MT.TIMEOUT_NOW:
        # The leader hands over (thesis §3.10): campaign at once, skipping
        # pre-vote, and ask voters to ignore their leader lease.
        if r.promotable():
            roles_candidate.campaign(r, transfer=True)
    elif t is MT.READ_INDEX_RESP:
        r.read_states.append(ReadState(m.index, m.context))


def _ack(r: Raft, to: str, index: int) -> None:
    r.send(Message(MT.APP_RESP, r.id, to, r.term, index=index))


def handle_append(r: Raft, m: Message) -> None:
    log = r.log
    if m.index < log.committed:
        # Everything up to our commit matches the leader's log already.
        _ack(r, m.src, log.committed)
        return
    result = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if result is not None:
        last_new, written = result
        r.note_appended(written)
        r.prune_conf()
        if r.passive and log.committed >= m.commit:
            r.note_caught_up(m.src)
        _ack(r, m.src, last_new)
        return
    # Tell the leader where our logs might agree: the last entry at or below
    # ``m.index`` whose term is at most the leader's term there, so it can
    # skip a whole conflicting term in one round trip.
    hint_index, hint_term = log.find_conflict_by_term(
        min(m.index, log.last_index()), m.log_term
    )
    r.send(
        Message(
            MT.APP_RESP,
            r.id,
            m.src,
            r.term,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )


def handle_heartbeat(r: Raft, m: Message) -> None:
    # The leader sends min(match, commit): entries up to there are verified.
    # A commit beyond our last entry means the leader's match for us is from
    # a log we no longer hold (our data was lost): never commit what we do
    # not have; the driver notices and tells the leader.
    r.log.commit_to(min(m.commit, r.log.last_index()))
    r.prune_conf()
    # ``index`` is the leader's whole commit index: once we hold it, a
    # passive node has caught up even if no append is coming (an idle
    # leader sends only heartbeats).
    if r.passive and m.index and r.log.committed >= m.index:
        r.note_caught_up(m.src)
    r.send(Message(MT.HEARTBEAT_RESP, r.id, m.src, r.term, context=m.context))


def handle_snapshot(r: Raft, m: Message) -> None:
    assert m.snapshot is not None
    if restore(r, m.snapshot):
        _ack(r, m.src, r.log.last_index())
    else:
        _ack(r, m.src, r.log.committed)


def restore(r: Raft, snap: Snapshot) -> bool:
    """Install ``snap`` unless it is stale; ``True`` if the log was replaced.

    A snapshot at or below our commit is older than what we have and is
    refused (a delayed one must not roll us back). If our log already holds
    the snapshot's last entry with the same term, the log matching property
    says everything up to it is the snapshot's history: keep our suffix and
    just commit up to it, instead of wiping entries we may have acknowledged.
    """
    log = r.log
    if snap.index <= log.committed:
        return False
    if log.match_term(snap.index, snap.term):
        log.commit_to(snap.index)
        r.prune_conf()
        return False
    log.restore(snap)
    r.conf_history = [(snap.index, snap.conf_state)]
    r.set_conf(snap.conf_state)
    return True
