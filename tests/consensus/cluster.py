"""A message-level test network: every message is held until a test lets it go.

Each node is a ``Raft`` over a ``MemoryStorage`` (its synced disk). After
every input the node's Ready is handled by the contract (persist, then send,
then apply, then advance), and the durability of every outgoing message is
checked as in the simulation. Sent messages wait in ``outbox`` until the test
delivers, drops or duplicates them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consensus.messages import ConfChange, ConfState, Entry, Message, MessageType, Role
from consensus.raft import Raft, RaftConfig, Ready
from consensus.storage import MemoryStorage
from tests.consensus.sim import SimNode, _check_durable

MT = MessageType


@dataclass(slots=True)
class Node:
    id: str
    storage: MemoryStorage
    config: RaftConfig
    raft: Raft | None = None
    applied: list[Entry] = field(default_factory=list)
    readies: list[Ready] = field(default_factory=list)


class Cluster:
    def __init__(
        self, voters: Iterable[str], *, learners: Iterable[str] = (), **options: int
    ) -> None:
        self.genesis = ConfState(voters=tuple(sorted(voters)), learners=tuple(learners))
        self.options = {"election_tick": 10, "heartbeat_tick": 1, **options}
        self.nodes: dict[str, Node] = {}
        self.outbox: list[Message] = []
        for nid in self.genesis.members():
            self.add(nid)

    def add(self, nid: str, **options: object) -> Node:
        opts: dict[str, object] = {**self.options, **options}
        cfg = RaftConfig(id=nid, **opts)  # type: ignore[arg-type]
        node = Node(nid, MemoryStorage(self.genesis), cfg)
        self.nodes[nid] = node
        self.restart(nid)
        return node

    def raft(self, nid: str) -> Raft:
        r = self.nodes[nid].raft
        assert r is not None, f"{nid} is down"
        return r

    # -- crashes ---------------------------------------------------------------

    def crash(self, nid: str) -> None:
        """Lose everything not persisted; messages to it are dropped."""
        self.nodes[nid].raft = None
        self.outbox = [m for m in self.outbox if m.src != nid]

    def restart(self, nid: str) -> None:
        node = self.nodes[nid]
        seed = sum(map(ord, nid))
        node.raft = Raft(node.config, node.storage, random.Random(seed))

    # -- the Ready loop --------------------------------------------------------

    def handle(self, nid: str, *, persist: bool = True) -> None:
        node = self.nodes[nid]
        r = node.raft
        while r is not None and r.has_ready():
            rd = r.ready()
            node.readies.append(rd)
            if not persist:
                self.crash(nid)  # the driver died before syncing
                return
            st = node.storage
            if rd.snapshot is not None:
                st.apply_snapshot(rd.snapshot)
            st.append(rd.entries)
            if rd.hard_state is not None:
                st.set_hard_state(rd.hard_state)
            for m in rd.messages:
                _check_durable(SimNode(nid, st), m)
                self.outbox.append(m)
            node.applied.extend(rd.committed_entries)
            r.advance(rd)

    def propose(self, nid: str, data: bytes) -> int:
        index = self.raft(nid).propose(data)
        self.handle(nid)
        return index

    def change(self, nid: str, change: ConfChange) -> int:
        index = self.raft(nid).propose_conf_change(change)
        self.handle(nid)
        return index

    def read(self, nid: str, context: bytes) -> None:
        self.raft(nid).read_index(context)
        self.handle(nid)

    def step(self, m: Message) -> None:
        if self.nodes[m.dst].raft is None:
            return
        self.raft(m.dst).step(m)
        self.handle(m.dst)

    def tick(self, nid: str, n: int = 1) -> None:
        for _ in range(n):
            if self.nodes[nid].raft is not None:
                self.raft(nid).tick()
                self.handle(nid)

    # -- the network -----------------------------------------------------------

    def take(self, pred: Callable[[Message], bool] = lambda m: True) -> list[Message]:
        """Remove and return the held messages matching ``pred``."""
        taken = [m for m in self.outbox if pred(m)]
        self.outbox = [m for m in self.outbox if not pred(m)]
        return taken

    def deliver(
        self, pred: Callable[[Message], bool] = lambda m: True, *, rounds: int = 100
    ) -> None:
        """Deliver matching messages (and their answers) until none is left."""
        for _ in range(rounds):
            batch = self.take(pred)
            if not batch:
                return
            for m in batch:
                self.step(m)

    def among(self, *ids: str) -> Callable[[Message], bool]:
        group = set(ids)
        return lambda m: m.src in group and m.dst in group

    def elect(self, nid: str, *reachable: str) -> None:
        """Let ``nid`` time out and win with the votes of ``reachable``."""
        group = (nid, *reachable)
        live = [n for n in group if self.nodes[n].raft is not None]
        # Everyone must be past the election timeout (leader stickiness).
        for other in live:
            if other != nid:
                r = self.raft(other)
                r.election_elapsed = max(r.election_elapsed, r.config.election_tick)
        r = self.raft(nid)
        for _attempt in range(3):  # a rejection may teach us a newer term
            for _ in range(3 * r.config.election_tick):
                self.tick(nid)
                if r.role is not Role.FOLLOWER:
                    break
            self.deliver(lambda m: m.type in VOTES and self.among(*group)(m))
            if r.role is Role.LEADER:
                return
        raise AssertionError(f"{nid} did not win: {r.role}")

    def settle(self, *ids: str) -> None:
        """Deliver everything among ``ids`` until quiet."""
        self.deliver(self.among(*ids))

    def committed(self, nid: str) -> int:
        return self.raft(nid).log.committed

    def leaders(self) -> list[str]:
        return [
            n.id for n in self.nodes.values() if n.raft and n.raft.role is Role.LEADER
        ]


VOTES = (MT.PRE_VOTE, MT.PRE_VOTE_RESP, MT.VOTE, MT.VOTE_RESP)
