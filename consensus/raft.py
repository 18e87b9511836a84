"""Raft as a pure state machine (extended paper, thesis; shaped like etcd's raft).

Theory of operation
-------------------
Nothing here does I/O, reads a clock or draws its own randomness. Time
arrives as ``tick()``, peers' messages as ``step(msg)``, clients' requests
as ``propose``/``propose_conf_change``/``read_index``/``transfer_leader``.
Every effect is collected and handed out as one ``Ready``; the driver
persists, sends and applies it, in that order, and calls ``advance``.

State and where its transitions live:

- ``term``, ``vote`` (durable, in ``HardState``) change only in
  ``become_*``/vote handling here; a message that depends on them leaves in
  the same ``Ready`` that carries them, so it is sent only once they are
  synced (the driver's contract).
- ``role`` is FOLLOWER, PRE_CANDIDATE, CANDIDATE or LEADER. Each role's
  message handling is one function: ``roles_follower.step_follower``,
  ``roles_candidate.step_candidate``, ``roles_leader.step_leader``. What is
  common to all roles (term comparison, votes) is ``Raft.step``.
- The membership in force is the latest one in the log, committed or not
  (thesis §4.1): it changes when a CONF_CHANGE entry is appended and reverts
  if that entry is truncated. ``conf_history`` keeps the configurations
  from the last committed one on, so a truncation can go back.
- The log (``RaftLog``) holds ``applied <= committed <= last_index``.

Safety rules enforced here, each from the paper or the thesis: a leader
commits by counting replicas only entries of its own term (§5.4.2) and
appends a no-op when elected so that it has one; a vote is granted only to
an up-to-date log (§5.4.1) and at most once per term; a follower never
truncates on a stale append and commits at most what the append verified;
a membership change is refused until the leader's no-op has committed and
while another change is uncommitted; a ReadIndex is answered only after a
heartbeat round confirms leadership and once the leader has committed in its
term. Liveness helpers: pre-vote, check-quorum with leader stickiness,
randomized election timeouts in ``[election_tick, 2 * election_tick)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus import roles_candidate, roles_follower, roles_leader
from consensus.log import RaftLog
from consensus.messages import (
    CAMPAIGN_TRANSFER,
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SoftState,
    decode_conf_change,
)
from consensus.progress import Progress
from consensus.storage import LogStorage
from ledger.errors import ConsensusError, NotLeaderError

if TYPE_CHECKING:
    # Only the type: randomness comes in as a seeded generator.
    from random import Random

MT = MessageType


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    """Static settings of one node; ticks are the driver's unit of time."""

    id: str
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_inflight: int = 256
    max_msg_bytes: int = 1 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    # The driver knows this node's log was lost and not yet caught up: it
    # neither campaigns nor votes until it is (``Raft.passive``).
    start_passive: bool = False
    # Index the application has already applied durably (0: replay all).
    applied: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_tick < self.election_tick:
            raise ConsensusError("need 0 < heartbeat_tick < election_tick")
        if self.max_inflight < 1 or self.max_msg_bytes < 1:
            raise ConsensusError("max_inflight and max_msg_bytes must be positive")


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the core wants done, to be handled strictly in this order.

    1. Persist ``hard_state`` (if not None), ``entries`` and ``snapshot``
       (if not None) and sync them. NB: nothing may be sent before this:
       votes, acknowledgements and a candidate's requests promise that
       these are on disk.
    2. Send ``messages``.
    3. Install ``snapshot`` in the state machine, then apply
       ``committed_entries`` in order; serve ``read_states`` once applied.
    4. Call ``advance(ready)``.
    """

    soft_state: SoftState
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]


class Raft:
    """One Raft node. Attributes are shared with the ``roles_*`` modules."""

    def __init__(self, config: RaftConfig, storage: LogStorage, rng: Random):
        hs, conf = storage.initial_state()
        self.id = config.id
        self.config = config
        self.rng = rng
        self.log = RaftLog(storage)
        self.log.commit_to(hs.commit)
        if config.applied > self.log.applied:
            self.log.applied_to(min(config.applied, self.log.committed))
        # Durable: the latest term seen and the vote cast in it.
        self.term = hs.term
        self.vote: str | None = hs.vote
        self.lead: str | None = None
        self.role = Role.FOLLOWER
        # (index, membership) for the last committed change and every later
        # one; the first item's index is <= committed.
        self.conf_history: list[tuple[int, ConfState]] = [
            (storage.snapshot().index, conf)
        ]
        self.conf = conf
        self.prs: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee: str | None = None
        self.reads = roles_leader.ReadQueue()
        self.prev_hard = hs
        self.prev_soft = SoftState(Role.FOLLOWER, None, hs.term)
        self.pending_ready: Ready | None = None
        # Lost-state guard. A node whose log was lost (a deleted data folder;
        # the driver knows it by a marker kept beside the folder, which also
        # gives back its term and vote) has lost the entries it
        # acknowledged: voting then, or campaigning (nodes that never ran
        # would vote for it), could elect a leader without entries committed
        # on a quorum it was part of. So such a node is passive (it neither
        # campaigns nor grants a vote) until it has caught up with a leader
        # that committed in its term, which then holds every entry committed
        # before (leader completeness). The driver keeps it passive across
        # restarts until then.
        self.passive = config.start_passive
        self._replay_conf_changes()
        self.become_follower(self.term, None)

    def _replay_conf_changes(self) -> None:
        # The snapshot's membership already counts changes up to its index.
        lo, last = self.conf_history[0][0] + 1, self.log.last_index()
        while lo <= last:
            chunk = self.log.slice(lo, last + 1, 1 << 22)
            self.note_appended([e for e in chunk if e.kind is EntryKind.CONF_CHANGE])
            lo = chunk[-1].index + 1
        self.prune_conf()

    # -- observers ----------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(self.role, self.lead, self.term)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def conf_state(self) -> ConfState:
        """The membership in force: the latest in the log, committed or not."""
        return self.conf

    def promotable(self) -> bool:
        return (
            self.id in self.conf.voters
            and self.log.unstable.snapshot is None
            and not self.passive
        )

    def note_caught_up(self, leader: str) -> None:
        """While passive: an append or heartbeat from ``leader`` (this
        term's) found our commit index at its own; check that the entry
        there is of its term, that is, the leader has committed in its term.
        The vote we may have cast in this term before losing it is unknown:
        count it as cast for this leader, so no second one goes out."""
        log = self.log
        if log.committed and log.match_term(log.committed, self.term):
            self.passive = False
            if self.vote is None:
                self.vote = leader

    def quorum(self) -> int:
        return len(self.conf.voters) // 2 + 1

    # -- role transitions ---------------------------------------------------

    def reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        tick = self.config.election_tick
        self.randomized_election_timeout = tick + self.rng.randrange(tick)
        self.votes = {}
        self.lead_transferee = None
        self.reads = roles_leader.ReadQueue()
        self.prs = {}
        self.sync_progress()

    def sync_progress(self) -> None:
        """Make ``prs`` hold exactly the members of ``conf``."""
        last = self.log.last_index()
        learners = self.conf.learners
        for nid in self.conf.members():
            pr = self.prs.get(nid)
            if pr is None:
                pr = Progress(last + 1, self.config.max_inflight, is_learner=False)
                if nid == self.id:
                    pr.match = last
                self.prs[nid] = pr
            pr.is_learner = nid in learners
        for nid in [n for n in self.prs if n not in self.conf.members()]:
            del self.prs[nid]

    def become_follower(self, term: int, lead: str | None) -> None:
        self.reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        # NB: the term does not change: a pre-vote round promises nothing.
        self.votes = {}
        self.lead = None
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        self.reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        self.reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        roles_leader.on_elected(self)

    # -- membership ---------------------------------------------------------

    def note_appended(self, ents: list[Entry]) -> None:
        """Track membership over entries just written to the log."""
        if not ents:
            return
        history = self.conf_history
        changed = False
        while len(history) > 1 and history[-1][0] >= ents[0].index:
            history.pop()  # truncated away: the change never happened
            changed = True
        for e in ents:
            if e.kind is EntryKind.CONF_CHANGE:
                conf = history[-1][1].apply(decode_conf_change(e.data))
                history.append((e.index, conf))
                changed = True
        if changed:
            self.set_conf(history[-1][1])

    def set_conf(self, conf: ConfState) -> None:
        self.conf = conf
        self.sync_progress()
        if self.lead_transferee not in (None, *conf.voters):
            self.lead_transferee = None

    def prune_conf(self) -> None:
        history = self.conf_history
        while len(history) > 1 and history[1][0] <= self.log.committed:
            del history[0]

    def conf_change_pending(self) -> bool:
        return self.conf_history[-1][0] > self.log.committed

    # -- input --------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            roles_leader.tick_heartbeat(self)
            return
        self.election_elapsed += 1
        if self.promotable() and (
            self.election_elapsed >= self.randomized_election_timeout
        ):
            self.election_elapsed = 0
            roles_candidate.campaign(self, transfer=False)

    def in_lease(self) -> bool:
        """Heard from a live leader within the election timeout."""
        return (
            self.config.check_quorum
            and self.lead is not None
            and self.election_elapsed < self.config.election_tick
        )

    def step(self, m: Message) -> None:
        """Handle one message from a peer (already decoded and authenticated)."""
        if m.dst != self.id:
            return
        if m.term > self.term:
            if not self._step_higher_term(m):
                return
        elif m.term < self.term:
            self._step_lower_term(m)
            return
        if m.type is MT.VOTE or m.type is MT.PRE_VOTE:
            self._handle_vote_request(m)
            return
        STEP[self.role](self, m)

    def _step_higher_term(self, m: Message) -> bool:
        """Adopt ``m.term`` where Raft says so; ``False`` drops ``m``."""
        # Leader stickiness (thesis §4.2.3): a server that hears from a live
        # leader does not help anyone depose it, which keeps a removed or
        # partitioned server from disrupting the cluster.
        vote = m.type is MT.VOTE or m.type is MT.PRE_VOTE
        if vote and self.in_lease() and m.context != CAMPAIGN_TRANSFER:
            return False
        if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
            return True  # a pre-vote's term is a proposal, not a fact
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAPSHOT):
            self.become_follower(m.term, m.src)
        else:
            self.become_follower(m.term, None)
        return True

    def _step_lower_term(self, m: Message) -> None:
        if m.type in (MT.APP, MT.HEARTBEAT):
            # A deposed leader learns our term from this answer and steps
            # down; without it, with pre-vote and check-quorum, a node at a
            # higher term could be ignored forever.
            self.send(Message(MT.APP_RESP, self.id, m.src, self.term))
        elif m.type is MT.PRE_VOTE:
            self.send(Message(MT.PRE_VOTE_RESP, self.id, m.src, self.term, reject=True))

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type is MT.PRE_VOTE
        resp = MT.PRE_VOTE_RESP if pre else MT.VOTE_RESP
        can_vote = not self.passive and (
            self.vote == m.src
            or (self.vote is None and self.lead is None)
            or (pre and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self.send(Message(resp, self.id, m.src, m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self.send(Message(resp, self.id, m.src, self.term, reject=True))

    def send(self, m: Message) -> None:
        self.msgs.append(m)

    # -- client requests ----------------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append ``data`` as a normal entry; returns its index.

        Raises ``NotLeaderError`` (with the leader we know) unless leader.
        """
        return roles_leader.propose(self, EntryKind.NORMAL, data)

    def propose_batch(self, items: Sequence[bytes]) -> int:
        """Append one normal entry per item in one go; returns the last index.

        Cheaper than ``propose`` in a loop: one append message per follower.
        """
        return roles_leader.propose_batch(self, items)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose a one-server membership change; returns its entry index."""
        return roles_leader.propose_conf_change(self, change)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; answered as a ``ReadState``.

        A follower forwards the request to the leader. Requests are dropped
        if leadership changes; the caller retries after a timeout.
        """
        if self.role is Role.LEADER:
            roles_leader.read_request(self, context, self.id)
        elif self.lead is None:
            raise NotLeaderError(None)
        else:
            self.send(
                Message(MT.READ_INDEX, self.id, self.lead, self.term, context=context)
            )

    def transfer_leader(self, to: str) -> None:
        """Hand leadership to voter ``to`` (thesis §3.10)."""
        roles_leader.transfer_leader(self, to)

    # -- output -------------------------------------------------------------

    def has_ready(self) -> bool:
        if self.pending_ready is not None:
            return False
        log = self.log
        return bool(
            self.msgs
            or log.unstable.entries
            or log.unstable.snapshot is not None
            or log.has_next_committed()
            or self.read_states
            or self.hard_state() != self.prev_hard
            or self.soft_state() != self.prev_soft
        )

    def ready(self) -> Ready:
        """What to persist, send and apply now (see ``Ready``).

        At most one Ready is outstanding: call ``advance`` before the next.
        """
        if self.pending_ready is not None:
            raise ConsensusError("advance the previous Ready first")
        hs = self.hard_state()
        rd = Ready(
            soft_state=self.soft_state(),
            hard_state=None if hs == self.prev_hard else hs,
            entries=tuple(self.log.unstable.entries),
            snapshot=self.log.unstable.snapshot,
            messages=tuple(self.msgs),
            committed_entries=tuple(self.log.next_committed()),
            read_states=tuple(self.read_states),
        )
        self.msgs = []
        self.read_states = []
        self.pending_ready = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """``rd`` has been persisted, sent and applied."""
        if rd is not self.pending_ready:
            raise ConsensusError("advance() with a Ready that is not outstanding")
        self.pending_ready = None
        if rd.hard_state is not None:
            self.prev_hard = rd.hard_state
        self.prev_soft = rd.soft_state
        log = self.log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.index)
            if log.applied < rd.snapshot.index:
                log.applied = rd.snapshot.index
        if rd.entries:
            last = rd.entries[-1]
            log.unstable.stable_to(last.index, last.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)


STEP: dict[Role, Callable[[Raft, Message], None]] = {
    Role.FOLLOWER: roles_follower.step_follower,
    Role.PRE_CANDIDATE: roles_candidate.step_candidate,
    Role.CANDIDATE: roles_candidate.step_candidate,
    Role.LEADER: roles_leader.step_leader,
}
