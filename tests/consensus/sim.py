"""A seeded, replayable simulation of a Raft cluster, checking safety as it runs.

Theory of operation. One ``random.Random(seed)`` decides everything: which
node ticks, which message is dropped, duplicated, delayed or reordered, when
the network partitions, when a node crashes (losing whatever it had not
persisted) and restarts, when clients propose, read, add or remove servers,
and when a node snapshots and compacts. Each Raft node gets its own
generator seeded from that one, so the same seed is the same run.

The driver follows the ``Ready`` contract: persist (into ``MemoryStorage``,
which stands for the synced disk), then send, then apply, then advance; a
crash may strike between any two of these. After every step the checker
asserts the safety properties of the paper; the first violation ends the run
with a message, and re-running the seed with ``trace=True`` gives the full
trace of events that led there.

Phase 1 is chaos for ``chaos_ticks`` ticks. Phase 2 heals the network,
restarts every node and checks liveness: a leader within 10 election
timeouts, and a new entry committed on every voter.
"""

from __future__ import annotations

import hashlib
import random
import traceback
from dataclasses import dataclass, field

from consensus.messages import (
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Role,
    decode_conf_change,
)
from consensus.raft import Raft, RaftConfig, Ready
from consensus.storage import MemoryStorage
from ledger.codec import pack, unpack
from ledger.errors import ConsensusError

MT = MessageType
# A run that needs more than this many messages in flight is a livelock.
MAX_IN_FLIGHT = 5000


class ViolationError(Exception):
    """A safety or liveness property failed."""


@dataclass(slots=True)
class SimConfig:
    voters: int = 3
    learners: int = 0
    election_tick: int = 6
    heartbeat_tick: int = 2
    chaos_ticks: int = 100
    p_drop: float = 0.08
    p_dup: float = 0.04
    max_delay: int = 2
    max_inflight: int = 8
    max_msg_bytes: int = 256


@dataclass(slots=True)
class SimNode:
    id: str
    storage: MemoryStorage
    raft: Raft | None = None
    # The state machine: how far it has applied and a hash of the history.
    sm_index: int = 0
    sm_hash: bytes = b""
    sm_conf: ConfState = field(default_factory=ConfState)
    max_commit: int = 0  # commit index must never go back in one life


def _chain(prev: bytes, e: Entry) -> bytes:
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(e.term.to_bytes(8, "big") + e.index.to_bytes(8, "big"))
    h.update(bytes([e.kind]) + e.data)
    return h.digest()


class Checker:
    """Global observations across all nodes and all their lives."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}  # term -> its one leader
        # (index, term) -> (kind, data, previous entry's term): an entry is
        # unique by index and term, and so is its predecessor's term, which
        # by induction gives the log matching property.
        self.seen: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.applied: dict[int, Entry] = {}  # state machine safety
        # index -> the term of the leader that first committed it. Leader
        # completeness is about entries committed in earlier terms: a leader
        # of a stale term, elected by votes granted before an entry existed
        # and delivered late, may lack an entry committed in a later term
        # (it can never commit anything: a majority has moved past its term).
        self.commit_term: dict[int, int] = {}
        self.max_committed = 0
        self.hashes: dict[int, bytes] = {0: b""}
        self.max_applied = 0

    def leader(self, r: Raft) -> None:
        for index in range(self.max_committed + 1, r.log.committed + 1):
            self.commit_term.setdefault(index, r.term)
        self.max_committed = max(self.max_committed, r.log.committed)
        known = self.leaders.get(r.term)
        if known is None:
            self.leaders[r.term] = r.id
            self.completeness(r)
        elif known != r.id:
            raise ViolationError(f"two leaders in term {r.term}: {known} and {r.id}")

    def completeness(self, r: Raft) -> None:
        """Leader completeness: a new leader holds every entry committed in
        an earlier term (Raft §5.4)."""
        log = r.log
        for i in range(log.first_index(), self.max_applied + 1):
            e = self.applied.get(i)
            if e is None or self.commit_term.get(i, e.term) >= r.term:
                continue
            if log.term_or_zero(i) != e.term:
                raise ViolationError(f"leader {r.id} t{r.term} lacks committed {i}")

    def persisted(self, storage: MemoryStorage, ents: tuple[Entry, ...]) -> None:
        for e in ents:
            if e.index < storage.first_index():
                continue
            prev = storage.term(e.index - 1) if e.index > 1 else 0
            key = (e.index, e.term)
            val = (int(e.kind), e.data, prev)
            known = self.seen.setdefault(key, val)
            if known != val:
                raise ViolationError(f"log matching broken at {key}: {known} vs {val}")

    def apply(self, node: SimNode, e: Entry) -> None:
        if e.index != node.sm_index + 1:
            raise ViolationError(f"{node.id} applied {e.index} after {node.sm_index}")
        node.sm_hash = _chain(node.sm_hash, e)
        node.sm_index = e.index
        known = self.applied.setdefault(e.index, e)
        if known != e:
            raise ViolationError(f"{node.id} applied {e} where {known} was applied")
        h = self.hashes.setdefault(e.index, node.sm_hash)
        if h != node.sm_hash:
            raise ViolationError(f"{node.id} state diverged at {e.index}")
        self.max_applied = max(self.max_applied, e.index)


@dataclass(order=True, slots=True)
class InFlight:
    due: int
    seq: int
    msg: Message = field(compare=False)


class Sim:
    def __init__(self, seed: int, cfg: SimConfig | None = None, *, trace: bool = False):
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        if cfg is None:
            cfg = SimConfig(
                voters=rng.choice((3, 3, 4, 5)), learners=rng.choice((0, 0, 1))
            )
        self.cfg = cfg
        self.tracing = trace
        self.trace: list[str] = []
        self.check = Checker()
        self.now = 0
        self.seq = 0
        self.net: list[InFlight] = []
        self.group: dict[str, int] = {}  # partition: same group talks
        self.p_drop, self.p_dup, self.max_delay = cfg.p_drop, cfg.p_dup, cfg.max_delay
        self.crash_p = 0.01
        voters = tuple(f"n{i}" for i in range(1, cfg.voters + 1))
        learners = tuple(f"l{i}" for i in range(1, cfg.learners + 1))
        self.genesis = ConfState(voters=voters, learners=learners)
        self.nodes: dict[str, SimNode] = {}
        self.next_id = 1
        self.reads: dict[bytes, int] = {}
        self.stats = {"snap_sent": 0, "commits": 0, "elections": 0, "reads": 0}
        for nid in voters + learners:
            self._add_node(nid)

    # -- bookkeeping ----------------------------------------------------------

    def log(self, text: str) -> None:
        if self.tracing:
            self.trace.append(f"t={self.now} {text}")

    def _add_node(self, nid: str) -> SimNode:
        node = SimNode(nid, MemoryStorage(self.genesis), sm_conf=self.genesis)
        self.nodes[nid] = node
        self.group[nid] = 0
        self._start(node)
        return node

    def _start(self, node: SimNode) -> None:
        cfg = self.cfg
        rc = RaftConfig(
            id=node.id,
            election_tick=cfg.election_tick,
            heartbeat_tick=cfg.heartbeat_tick,
            max_inflight=cfg.max_inflight,
            max_msg_bytes=cfg.max_msg_bytes,
        )
        snap = node.storage.snapshot()
        node.sm_index, node.sm_hash = snap.index, b""
        node.sm_conf = snap.conf_state
        if snap.index:
            _, node.sm_hash = _decode_sm(snap.data)
        r = Raft(rc, node.storage, random.Random(self.rng.getrandbits(32)))
        hs = node.storage.hard_state
        if r.log.committed < hs.commit:
            raise ViolationError(f"{node.id} restarted below its persisted commit")
        node.max_commit = r.log.committed
        node.raft = r

    def crash(self, node: SimNode, why: str) -> None:
        self.log(f"crash {node.id} ({why})")
        node.raft = None

    def up(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raft is not None]

    # -- the driver -------------------------------------------------------------

    def drive(self, node: SimNode) -> None:
        r = node.raft
        while r is not None and r.has_ready():
            rd = r.ready()
            stage = 3
            if self.rng.random() < self.crash_p:
                stage = self.rng.randrange(3)
            if stage == 0:
                return self.crash(node, "before persisting")
            self._persist(node, rd)
            if stage == 1:
                return self.crash(node, "before sending")
            self._send(node, rd)
            if stage == 2:
                return self.crash(node, "before applying")
            self._apply(node, rd)
            r.advance(rd)
        self._after_step(node)

    def _persist(self, node: SimNode, rd: Ready) -> None:
        st = node.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        st.append(rd.entries)
        self.check.persisted(st, rd.entries)
        if rd.hard_state is not None:
            if rd.hard_state.commit < st.hard_state.commit:
                raise ViolationError(f"{node.id} persisted commit went back")
            if rd.hard_state.term < st.hard_state.term:
                raise ViolationError(f"{node.id} persisted term went back")
            st.set_hard_state(rd.hard_state)
        if st.hard_state.commit > st.last_index():
            raise ViolationError(f"{node.id} persisted commit beyond its log")

    def _send(self, node: SimNode, rd: Ready) -> None:
        for m in rd.messages:
            _check_durable(node, m)
            if m.type is MT.SNAPSHOT:
                self.stats["snap_sent"] += 1
            self._enqueue(m)
            if self.rng.random() < self.p_dup:
                self._enqueue(m)

    def _enqueue(self, m: Message) -> None:
        if len(self.net) > MAX_IN_FLIGHT:
            raise ViolationError(f"message storm: {len(self.net)} messages in flight")
        self.seq += 1
        delay = self.rng.randint(0, self.max_delay) if self.max_delay else 0
        self.net.append(InFlight(self.now + delay, self.seq, m))

    def _apply(self, node: SimNode, rd: Ready) -> None:
        if rd.snapshot is not None:
            snap = rd.snapshot
            index, h = _decode_sm(snap.data)
            if index != snap.index or self.check.hashes.get(index, h) != h:
                raise ViolationError(
                    f"{node.id} installed a bad snapshot at {snap.index}"
                )
            node.sm_index, node.sm_hash, node.sm_conf = index, h, snap.conf_state
        for e in rd.committed_entries:
            self.check.apply(node, e)
            if e.kind is EntryKind.CONF_CHANGE:
                node.sm_conf = node.sm_conf.apply(decode_conf_change(e.data))
            self.stats["commits"] += 1
        for rs in rd.read_states:
            want = self.reads.pop(rs.context, None)
            if want is not None and rs.index < want:
                raise ViolationError(f"stale read at {node.id}: {rs.index} < {want}")
            self.stats["reads"] += 1

    def _after_step(self, node: SimNode) -> None:
        r = node.raft
        if r is None:
            return
        if r.log.committed < node.max_commit:
            raise ViolationError(f"{node.id} commit went back")
        node.max_commit = r.log.committed
        if r.role is Role.LEADER:
            if r.term not in self.check.leaders:
                self.stats["elections"] += 1
                self.log(f"{node.id} leads term {r.term}")
            self.check.leader(r)

    # -- the network ----------------------------------------------------------

    def deliver_due(self) -> None:
        for _ in range(2000):
            due = [i for i, f in enumerate(self.net) if f.due <= self.now]
            if not due:
                return
            f = self.net.pop(self.rng.choice(due))  # any order: reordering
            m = f.msg
            if self.rng.random() < self.p_drop:
                continue
            node = self.nodes.get(m.dst)
            if node is None or node.raft is None:
                continue
            if self.group[m.src] != self.group[m.dst]:
                continue
            if self.tracing:
                self.log(_fmt(m))
            node.raft.step(m)
            self.drive(node)

    def tick(self) -> None:
        self.now += 1
        nodes = self.up()
        self.rng.shuffle(nodes)
        for node in nodes:
            if node.raft is not None:
                node.raft.tick()
                self.drive(node)

    # -- chaos ----------------------------------------------------------------

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.up():
            assert n.raft is not None
            if n.raft.role is Role.LEADER and (
                best is None or best.raft is None or n.raft.term > best.raft.term
            ):
                best = n
        return best

    def chaos(self) -> None:
        rng = self.rng
        events = (
            (0.5, self.ev_propose),
            (0.015, self.ev_crash),
            (0.08, self.ev_restart),
            (0.03, self.ev_partition),
            (0.06, self.ev_heal),
            (0.05, self.ev_membership),
            (0.06, self.ev_snapshot),
            (0.01, self.ev_transfer),
            (0.06, self.ev_read),
        )
        for _ in range(self.cfg.chaos_ticks):
            for p, ev in events:
                if rng.random() < p:
                    ev()
            self.tick()
            self.deliver_due()

    def ev_propose(self) -> None:
        node = self.rng.choice(self.up() or [None])
        if node is None or node.raft is None:
            return
        data = self.rng.randbytes(self.rng.randint(1, 40))
        try:
            node.raft.propose(data)
        except ConsensusError:
            return
        self.log(f"propose at {node.id}")
        self.drive(node)

    def ev_crash(self) -> None:
        nodes = self.up()
        if nodes:
            self.crash(self.rng.choice(nodes), "chaos")

    def ev_restart(self) -> None:
        down = [n for n in self.nodes.values() if n.raft is None]
        if down:
            node = self.rng.choice(down)
            self.log(f"restart {node.id}")
            self._start(node)

    def ev_partition(self) -> None:
        for nid in self.nodes:
            self.group[nid] = self.rng.randrange(2)
        self.log(f"partition {sorted(self.group.items())}")

    def ev_heal(self) -> None:
        for nid in self.nodes:
            self.group[nid] = 0
        self.log("heal")

    def ev_membership(self) -> None:
        lead = self.leader()
        if lead is None or lead.raft is None:
            return
        conf = lead.raft.conf_state()
        rng = self.rng
        choice = rng.randrange(3)
        if choice == 0 and len(conf.members()) < 7:
            nid = f"x{self.next_id}"
            self.next_id += 1
            self._add_node(nid)
            cc = ConfChange(ConfChangeKind.ADD_LEARNER, nid)
        elif choice == 1 and conf.learners and len(conf.voters) < 5:
            cc = ConfChange(ConfChangeKind.ADD_VOTER, rng.choice(conf.learners))
        elif choice == 2 and len(conf.voters) > 3:
            cc = ConfChange(ConfChangeKind.REMOVE, rng.choice(conf.voters))
        else:
            return
        try:
            lead.raft.propose_conf_change(cc)
        except ConsensusError:
            return
        self.log(f"conf change at {lead.id}: {cc}")
        self.drive(lead)

    def ev_snapshot(self) -> None:
        node = self.rng.choice(list(self.nodes.values()))
        st = node.storage
        if node.raft is None or node.sm_index <= st.snapshot().index:
            return
        data = pack([node.sm_index, node.sm_hash])
        st.create_snapshot(node.sm_index, node.sm_conf, data)
        st.compact(max(st.first_index(), node.sm_index - self.rng.randrange(3)))
        self.log(f"snapshot {node.id} at {node.sm_index}")

    def ev_transfer(self) -> None:
        lead = self.leader()
        if lead is None or lead.raft is None:
            return
        to = self.rng.choice(lead.raft.conf_state().voters)
        try:
            lead.raft.transfer_leader(to)
        except ConsensusError:
            return
        self.log(f"transfer {lead.id} -> {to}")
        self.drive(lead)

    def ev_read(self) -> None:
        node = self.rng.choice(self.up() or [None])
        if node is None or node.raft is None:
            return
        self.seq += 1
        ctx = self.seq.to_bytes(8, "big")
        try:
            node.raft.read_index(ctx)
        except ConsensusError:
            return
        # Linearizable: the read must see everything acknowledged so far.
        self.reads[ctx] = self.check.max_applied
        self.drive(node)

    # -- liveness -------------------------------------------------------------

    def settle(self) -> None:
        """Quiet network, everyone up: elect, then commit on every voter."""
        self.p_drop = self.p_dup = 0.0
        self.max_delay = 0
        self.crash_p = 0.0
        self.ev_heal()
        for node in self.nodes.values():
            if node.raft is None:
                self._start(node)
        limit = 10 * 2 * self.cfg.election_tick
        target: tuple[str, int, int] | None = None  # (leader, term, index)
        for _ in range(limit + 4 * self.cfg.election_tick):
            self.tick()
            self.deliver_due()
            if target is not None and self._settled(*target):
                return
            lead = self.leader()
            if lead is None or lead.raft is None:
                target = None
            elif target is None or target[:2] != (lead.id, lead.raft.term):
                # A new leader: the old target may be overwritten; ask again.
                try:
                    target = (lead.id, lead.raft.term, lead.raft.propose(b"settle"))
                except ConsensusError:
                    continue
                self.drive(lead)
            if target is None and self.now > limit + self._chaos_end:
                raise ViolationError("no leader within 10 election timeouts")
        raise ViolationError("no commit after the network healed")

    def _settled(self, lead_id: str, term: int, index: int) -> bool:
        """The entry proposed in the quiet phase is applied by every voter."""
        r = self.nodes[lead_id].raft
        entry = self.check.applied.get(index)
        if r is None or entry is None or entry.term != term:
            return False
        return all(self.nodes[v].sm_index >= index for v in r.conf_state().voters)

    _chaos_end = 0

    def run(self) -> None:
        self.chaos()
        self._chaos_end = self.now
        self.settle()


def _decode_sm(data: bytes) -> tuple[int, bytes]:
    value = unpack(data)
    assert isinstance(value, list)
    index, h = value
    assert isinstance(index, int) and isinstance(h, bytes)
    return index, h


def _check_durable(node: SimNode, m: Message) -> None:
    """A message may promise only what is already on disk."""
    st = node.storage
    hard = st.hard_state
    if m.type not in (MT.PRE_VOTE, MT.PRE_VOTE_RESP) and m.term > hard.term:
        raise ViolationError(f"{node.id} sent term {m.term} before persisting it")
    if m.type is MT.VOTE and (hard.vote != node.id or hard.term != m.term):
        raise ViolationError(f"{node.id} asked for votes before persisting its own")
    granted = m.type is MT.VOTE_RESP and not m.reject
    if granted and (hard.vote != m.dst or hard.term != m.term):
        raise ViolationError(f"{node.id} granted a vote before persisting it")
    if m.type is MT.APP_RESP and not m.reject and m.index > st.last_index():
        raise ViolationError(f"{node.id} acknowledged {m.index} before persisting it")


def _fmt(m: Message) -> str:
    text = f"{m.type.name} {m.src}->{m.dst} t{m.term} i{m.index} lt{m.log_term}"
    if m.entries:
        text += f" ents={m.entries[0].index}..{m.entries[-1].index}"
    if m.commit:
        text += f" c{m.commit}"
    if m.reject:
        text += f" reject hint={m.reject_hint}"
    return text


@dataclass(slots=True)
class Result:
    seed: int
    violation: str | None
    stats: dict[str, int]
    trace: list[str]


def run_seed(seed: int, *, trace: bool = False) -> Result:
    sim = Sim(seed, trace=trace)
    try:
        sim.run()
    except ViolationError as exc:
        return Result(seed, str(exc), sim.stats, sim.trace)
    except Exception:  # a broken invariant inside the core is a violation too
        return Result(seed, traceback.format_exc(), sim.stats, sim.trace)
    return Result(seed, None, sim.stats, sim.trace)
