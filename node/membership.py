"""Raft membership follows the applied trust list.

Theory of operation. Governance decides who is in the cluster: an
``add_agency`` or ``remove_agency`` entry, approved by a quorum of admin
keys, changes the trust list when its block is applied. Raft membership is
then brought in line by the leader, one server at a time (the core refuses
a change while another is uncommitted or before the leader's no-op has
committed, and the leader simply asks again later):

1. a member the trust list no longer holds is removed;
2. an agency the trust list holds but Raft does not is added as a learner,
   so it catches up without counting towards any quorum;
3. a learner whose log has caught up is promoted to voter, while there are
   fewer than ``MAX_VOTERS`` voters (the rest stay learners: read replicas).

``plan_change`` is that decision as a pure function of what the leader
sees; ``reconcile`` proposes it, and the node calls that on every tick
while it leads. Every node derives the same trust list from the chain, so
whichever node leads plans the same changes. A leader that is itself no
longer in the trust list hands leadership to a voter that is, which then
removes it.

A member that lost its log (its data directory was deleted) is removed too
(``remove_lost``), and so comes back through step 2 as a learner that
starts from nothing: Raft assumes no member ever loses what it has
acknowledged (its acknowledgements may have counted towards a commit, and
the leader never lowers what it believes the member holds).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Mapping, MutableMapping
from typing import Final

from consensus.messages import MAX_VOTERS, ConfChange, ConfChangeKind, ConfState
from consensus.raft import Raft
from ledger.errors import ConsensusError

logger = logging.getLogger(__name__)

# A learner within this many entries of the leader's commit index is
# caught up enough to vote without stalling commitment.
PROMOTE_LAG: Final = 64


def initial_conf(agencies: Collection[str]) -> ConfState:
    """The genesis membership: the first ``MAX_VOTERS`` agencies (sorted)
    vote, any others follow as learners."""
    ids = sorted(agencies)
    return ConfState(voters=tuple(ids[:MAX_VOTERS]), learners=tuple(ids[MAX_VOTERS:]))


def plan_change(
    *,
    trusted: Collection[str],
    conf: ConfState,
    match: Mapping[str, int],
    committed: int,
    leader: str,
) -> ConfChange | None:
    """The next one-server change that brings ``conf`` towards ``trusted``.

    ``match`` is the leader's replication progress (highest index known to
    be on each member). Returns None when nothing is to change, and never
    proposes removing ``leader`` itself (it transfers leadership first).
    """
    members = set(conf.members())
    for node in sorted(members - set(trusted)):
        if node != leader:
            return ConfChange(ConfChangeKind.REMOVE, node)
    for node in sorted(set(trusted) - members):
        return ConfChange(ConfChangeKind.ADD_LEARNER, node)
    if len(conf.voters) < MAX_VOTERS:
        for node in conf.learners:
            have = match.get(node, 0)
            if have > 0 and have + PROMOTE_LAG >= committed:
                return ConfChange(ConfChangeKind.ADD_VOTER, node)
    return None


def reconcile(raft: Raft, trusted: Collection[str]) -> None:
    """Propose the next change ``plan_change`` asks for (leader only)."""
    if raft.conf_change_pending():
        return
    conf = raft.conf_state()
    if raft.id not in trusted:
        voters = [v for v in conf.voters if v != raft.id and v in trusted]
        if voters and raft.lead_transferee is None:
            with contextlib.suppress(ConsensusError):
                raft.transfer_leader(voters[0])
        return
    change = plan_change(
        trusted=trusted,
        conf=conf,
        match={nid: pr.match for nid, pr in raft.prs.items()},
        committed=raft.log.committed,
        leader=raft.id,
    )
    if change is not None:
        _propose(raft, change, "membership change proposed")


def remove_lost(raft: Raft, lost: MutableMapping[str, int]) -> None:
    """Remove a member that told us its log ends at ``lost[member]``,
    below what we know it held (leader only; one change at a time)."""
    for peer, last in list(lost.items()):
        pr = raft.prs.get(peer)
        if pr is None or pr.match <= last:
            del lost[peer]  # stale, or handled already
            continue
        if raft.conf_change_pending():
            return
        logger.info(
            "member lost its log agency=%s peer=%s match=%d last=%d: "
            "removing it to re-add it as a learner",
            raft.id,
            peer,
            pr.match,
            last,
        )
        if _propose(raft, ConfChange(ConfChangeKind.REMOVE, peer), "removal"):
            del lost[peer]
        return


def _propose(raft: Raft, change: ConfChange, what: str) -> bool:
    try:
        index = raft.propose_conf_change(change)
    except ConsensusError as exc:
        logger.debug("%s deferred agency=%s: %s", what, raft.id, exc)
        return False
    logger.info(
        "%s agency=%s change=%s:%s index=%d",
        what,
        raft.id,
        change.kind.name.lower(),
        change.node,
        index,
    )
    return True
