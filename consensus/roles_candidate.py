"""Elections: the pre-candidate and candidate roles (Raft §5.2, thesis §9.6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus import roles_follower
from consensus.messages import CAMPAIGN_TRANSFER, Message, MessageType, Role

if TYPE_CHECKING:
    from consensus.raft import Raft

MT = MessageType


def campaign(r: Raft, *, transfer: bool, pre_vote_won: bool = False) -> None:
    """Start a (pre-)election.

    With pre-vote, a node first asks whether it *could* win at ``term + 1``
    without touching its own term; only a quorum of yeses starts a real
    election. A server cut off from the cluster therefore never inflates
    its term and cannot depose a healthy leader when it reconnects.
    """
    if r.config.pre_vote and not transfer and not pre_vote_won:
        r.become_pre_candidate()
        kind, term = MT.PRE_VOTE, r.term + 1
    else:
        r.become_candidate()
        kind, term = MT.VOTE, r.term
    if _poll(r, r.id, granted=True):
        return
    last = r.log.last_index()
    last_term = r.log.last_term()
    context = CAMPAIGN_TRANSFER if transfer else b""
    for nid in r.conf.voters:
        if nid != r.id:
            r.send(
                Message(
                    kind,
                    r.id,
                    nid,
                    term,
                    index=last,
                    log_term=last_term,
                    context=context,
                )
            )


def _poll(r: Raft, nid: str, *, granted: bool) -> bool:
    """Record a vote; act on a decided election. ``True`` if decided."""
    r.votes.setdefault(nid, granted)
    yes = no = 0
    for voter in r.conf.voters:
        vote = r.votes.get(voter)
        if vote is True:
            yes += 1
        elif vote is False:
            no += 1
    quorum = r.quorum()
    if yes >= quorum:
        if r.role is Role.PRE_CANDIDATE:
            campaign(r, transfer=False, pre_vote_won=True)
        else:
            r.become_leader()
        return True
    if no >= quorum:
        r.become_follower(r.term, None)
        return True
    return False


def step_candidate(r: Raft, m: Message) -> None:
    """``m.term == r.term`` here, except for granted pre-vote answers."""
    t = m.type
    if t is MT.APP or t is MT.HEARTBEAT or t is MT.SNAPSHOT:
        # A leader of our term exists: it won, we follow.
        r.become_follower(m.term, m.src)
        roles_follower.step_follower(r, m)
        return
    wanted = MT.PRE_VOTE_RESP if r.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
    if t is wanted:
        _poll(r, m.src, granted=not m.reject)
