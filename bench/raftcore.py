"""Entries per second through the pure Raft core: three nodes, no I/O.

This is the consensus algorithm's own cost in Python, with nothing else:
``MemoryStorage`` stands for the disk and a queue for the network. The
driver follows the ``Ready`` contract (persist, then send, then apply, then
advance) like the node and the simulator do. The leader proposes ``BATCH``
entries per round in one ``propose_batch``, then every ready value is
drained and every message delivered until the cluster is quiet; an entry
counts once it has been applied on all three nodes.
"""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass
from typing import Final

from consensus.messages import ConfState, EntryKind, Message, Role
from consensus.raft import Raft, RaftConfig
from consensus.storage import MemoryStorage

IDS: Final = ("n1", "n2", "n3")
BATCH: Final = 256
# Roughly one small proposal; a node's real entries are whole batches.
PAYLOAD: Final = bytes(128)
# Compact every this many entries, as the node snapshots, so a long run's
# memory stays flat.
COMPACT_EVERY: Final = 50_000


@dataclass(frozen=True, slots=True)
class RaftRate:
    entries: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


class _Cluster:
    def __init__(self) -> None:
        conf = ConfState(voters=IDS)
        self.storage = {i: MemoryStorage(conf) for i in IDS}
        self.nodes = {
            i: Raft(
                RaftConfig(id=i, max_inflight=256, max_msg_bytes=1 << 20),
                self.storage[i],
                random.Random(n),
            )
            for n, i in enumerate(IDS)
        }
        self.queue: collections.deque[Message] = collections.deque()
        self.applied = dict.fromkeys(IDS, 0)  # normal entries applied
        self.conf = conf

    def pump(self) -> None:
        """Drain every Ready and deliver every message until quiet."""
        busy = True
        while busy:
            busy = False
            for nid, raft in self.nodes.items():
                while raft.has_ready():
                    busy = True
                    rd = raft.ready()
                    # (1) persist, (2) send, (3) apply, (4) advance.
                    store = self.storage[nid]
                    if rd.hard_state is not None:
                        store.set_hard_state(rd.hard_state)
                    store.append(rd.entries)
                    self.queue.extend(rd.messages)
                    self.applied[nid] += sum(
                        1 for e in rd.committed_entries if e.kind is EntryKind.NORMAL
                    )
                    raft.advance(rd)
            while self.queue:
                busy = True
                m = self.queue.popleft()
                self.nodes[m.dst].step(m)

    def elect(self, nid: str) -> Raft:
        leader = self.nodes[nid]
        for _ in range(100):
            if leader.role is Role.LEADER:
                return leader
            leader.tick()
            self.pump()
        raise RuntimeError("the Raft core elected no leader")

    def compact(self) -> None:
        for nid, raft in self.nodes.items():
            index = raft.log.applied
            store = self.storage[nid]
            if index > store.snapshot().index:
                store.create_snapshot(index, self.conf, b"")
                store.compact(index)


def measure(entries: int, seconds: float) -> RaftRate:
    """Propose up to ``entries`` for at most ``seconds``; count applied ones."""
    cluster = _Cluster()
    leader = cluster.elect(IDS[0])
    start = time.perf_counter()
    deadline = start + seconds
    proposed = 0
    since_compact = 0
    while proposed < entries and time.perf_counter() < deadline:
        # One call appends the round's entries and sends one append message
        # per follower, as a leader with a queue of batches would.
        leader.propose_batch([PAYLOAD] * BATCH)
        proposed += BATCH
        cluster.pump()
        since_compact += BATCH
        if since_compact >= COMPACT_EVERY:
            cluster.compact()
            since_compact = 0
    elapsed = time.perf_counter() - start
    done = min(cluster.applied.values())
    if done != proposed:
        raise RuntimeError(f"Raft core applied {done} of {proposed} everywhere")
    return RaftRate(done, elapsed)
