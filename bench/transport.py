"""Raft entries per second through the real transport and the real disk.

Three pure Raft cores (``consensus.raft``), each with its durable LevelDB
log (``consensus.durable.LevelDBStorage``, one synced write batch per
Ready) and each with its own ``PeerTransport`` (TLS 1.3, keys pinned) on
127.0.0.1, all in this process on one asyncio loop. Each node is driven as
``node.server`` drives its core: one task per node wakes on a tick or an
inbound frame, steps what arrived, then drains every Ready in the order the
contract demands: persist (``save_ready`` in a worker thread, so the other
nodes and the transports go on meanwhile), then send (``raft_frame``, and
``decode_frame`` on arrival), then apply, then ``advance``.

The leader proposes ``BATCH`` entries of ``len(PAYLOAD)`` bytes per round
in one ``propose_batch``, at most one round per Ready (so no fsync of the
leader ever covers more than one batch) and at most ``WINDOW`` batches not
yet applied by the leader. An entry counts once committed and applied on
all three nodes. The phase is bounded by a count and by a time.

What it leaves out of a node: the ledger store (entries are counted, not
applied to anything) and the HTTP side. So it is the consensus layer's
ceiling in a node: if ``batched_anchors_per_s`` were near it, Raft with its
disk and its links would be what limits the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench import ceiling
from bench.figures import Figure, Results, missing, ratio
from bench.profile import Profile
from consensus.durable import LevelDBStorage
from consensus.messages import ConfState, EntryKind, Message, Role
from consensus.raft import Raft, RaftConfig
from consensus.transport import PeerTransport
from ledger.errors import ConsensusError, EncodingError
from ledger.keys import SigningKey
from node.frames import decode_frame, raft_frame

NAME: Final = "raft_transport_entries_per_s"
GOAL: Final = 20_000
IDS: Final = ("bench-r1", "bench-r2", "bench-r3")
BATCH: Final = 1_000
PAYLOAD: Final = bytes(128)
WINDOW: Final = 8  # batches proposed and not yet applied on the leader
# node.config's defaults, so elections and heartbeats run as in a node.
TICK_MS: Final = 50
ELECTION_TICKS: Final = 10
HEARTBEAT_TICKS: Final = 1
ELECTION_LIMIT_S: Final = 30.0
DRAIN_LIMIT_S: Final = 60.0


class LeaderLostError(RuntimeError):
    """The leader stepped down mid-run (a stalled loop on a busy machine)."""


def not_run(why: str) -> Figure:
    return missing(NAME, "entries/s", why, goal=GOAL)


@dataclass(frozen=True, slots=True)
class Measured:
    entries: int
    seconds: float
    leader_writes: int  # synced Raft log writes of the leader while timed
    frames: int  # frames the three transports sent while timed


class _Node:
    """One Raft core, its LevelDB log and its transport, driven like a node."""

    def __init__(
        self, nid: str, path: Path, keys: dict[str, SigningKey], seed: int
    ) -> None:
        self.id = nid
        # The node's entries are whole batches, so its default window of
        # 1,024 cached entries holds every entry in flight; these are small
        # items, so the window is sized to hold as many of them, lest every
        # append to a follower be read back from LevelDB.
        self.storage = LevelDBStorage(
            path, ConfState(voters=IDS), cache_entries=4 * WINDOW * BATCH
        )
        self.raft = Raft(
            RaftConfig(
                id=nid, election_tick=ELECTION_TICKS, heartbeat_tick=HEARTBEAT_TICKS
            ),
            self.storage,
            random.Random(seed),
        )
        pins = {i: k.public_key for i, k in keys.items()}
        self.transport = PeerTransport(
            node_id=nid,
            listen_host="127.0.0.1",
            listen_port=0,
            key=keys[nid],
            peers={},
            peer_keys=lambda: pins,
            on_frame=self._on_frame,
            rng=random.Random(seed),
        )
        self.inbox: list[Message] = []
        self.wake = asyncio.Event()
        self.applied = 0  # normal entries applied
        self.writes = 0  # synced Raft log writes
        self.proposed = 0  # entries proposed (leader only)
        self.target = 0  # entries to propose in all
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self.on_applied: asyncio.Event = asyncio.Event()

    def _on_frame(self, peer: str, frame: bytes) -> None:
        item = decode_frame(frame)  # EncodingError drops the connection
        if not isinstance(item, Message) or item.src != peer:
            raise EncodingError(f"not a Raft message from {peer}")
        self.inbox.append(item)
        self.wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = TICK_MS / 1000
        next_tick = loop.time() + tick_s
        while not self.stopping:
            timeout = next_tick - loop.time()
            if timeout > 0 and not self._can_propose():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            else:
                await asyncio.sleep(0)  # let the transports and peers run
            self.wake.clear()
            while loop.time() >= next_tick:
                self.raft.tick()
                next_tick += tick_s
                if loop.time() - next_tick > 5 * tick_s:
                    next_tick = loop.time() + tick_s  # fell behind: no burst
            inbox, self.inbox = self.inbox, []
            for msg in inbox:
                with contextlib.suppress(ConsensusError):  # stale, as the node
                    self.raft.step(msg)
            if self._can_propose():
                # One round per Ready: the leader's synced write then holds
                # at most one batch, which the fsync ceiling ratio relies on.
                self.raft.propose_batch([PAYLOAD] * BATCH)
                self.proposed += BATCH
            await self._drain_ready()

    def _can_propose(self) -> bool:
        return (
            self.raft.role is Role.LEADER
            and self.proposed < self.target
            and self.proposed - self.applied < WINDOW * BATCH
        )

    async def _drain_ready(self) -> None:
        while self.raft.has_ready():
            rd = self.raft.ready()
            # (1) persist, off the loop, as node.server does.
            if rd.hard_state is not None or rd.entries or rd.snapshot is not None:
                await asyncio.to_thread(
                    self.storage.save_ready, rd.hard_state, rd.entries, rd.snapshot
                )
                self.writes += 1
            # (2) only now send.
            for msg in rd.messages:
                self.transport.send(msg.dst, raft_frame(msg))
            # (3) apply: counting is all this state machine does.
            applied = sum(1 for e in rd.committed_entries if e.kind is EntryKind.NORMAL)
            if applied:
                self.applied += applied
                self.on_applied.set()
            # (4)
            self.raft.advance(rd)


def run(profile: Profile, tmp: Path, ceilings: Results) -> Figure:
    """The figure; ``tmp`` is a scratch folder on the data disk.

    A run whose leader steps down is thrown away and run once more, on
    fresh logs, and the note says so: the figure is the rate under one
    leader, and an election on a stalled loop is not what it measures.
    """
    retried = ""
    try:
        got = asyncio.run(
            _measure(tmp / "a", profile.transport_entries, profile.transport_seconds)
        )
    except LeaderLostError as exc:
        retried = f"; second attempt (the first: {exc})"
        got = asyncio.run(
            _measure(tmp / "b", profile.transport_entries, profile.transport_seconds)
        )
    rate = got.entries / got.seconds
    fsync = ceilings.value(ceiling.FSYNC)
    per_write = got.entries / got.leader_writes if got.leader_writes else 0.0
    return Figure(
        name=NAME,
        value=rate,
        unit="entries/s",
        goal=GOAL,
        # Every entry is in at least one synced write of the leader, and
        # none of those writes holds more than one batch.
        ceiling_ratio=ratio(rate, fsync * BATCH if fsync else None),
        note=(
            f"{got.entries:,} entries of {len(PAYLOAD)} bytes, proposed in "
            f"batches of {BATCH:,} (at most {WINDOW} unapplied), committed and "
            f"applied on 3 Raft cores with synced LevelDB logs over TLS "
            f"PeerTransports on 127.0.0.1, one asyncio loop, in "
            f"{got.seconds:.2f} s; {got.leader_writes:,} leader log writes "
            f"({per_write:,.0f} entries each), {got.frames:,} frames; "
            f"ceiling: fsync_per_s × {BATCH:,}{retried}"
        ),
    )


async def _measure(tmp: Path, entries: int, seconds: float) -> Measured:
    tmp.mkdir(parents=True, exist_ok=True)
    keys = {i: SigningKey.generate() for i in IDS}
    nodes = {
        nid: _Node(nid, tmp / f"raft-{nid}", keys, seed) for seed, nid in enumerate(IDS)
    }
    started: list[_Node] = []
    try:
        for node in nodes.values():
            await node.transport.start()
            started.append(node)
        addresses = {n.id: ("127.0.0.1", n.transport.port) for n in started}
        for node in started:
            node.transport.update_peers(addresses)
            node.task = asyncio.create_task(node.run(), name=f"bench-{node.id}")
        leader = await _leader(nodes)
        return await _timed(leader, nodes, entries, seconds)
    finally:
        for node in started:
            node.stopping = True
            node.wake.set()
        tasks = [n.task for n in started if n.task is not None]
        # A task waiting on its synced write finishes it before it stops,
        # so no storage is closed under a write.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for node in started:
            await node.transport.stop()
        for node in nodes.values():
            node.storage.close()
        for res in results:
            if isinstance(res, BaseException):
                raise res


async def _leader(nodes: dict[str, _Node]) -> _Node:
    deadline = time.perf_counter() + ELECTION_LIMIT_S
    while time.perf_counter() < deadline:
        for node in nodes.values():
            if node.task is not None and node.task.done():
                node.task.result()  # the driver died: raise its error
            if node.raft.role is Role.LEADER:
                return node
        await asyncio.sleep(0.01)
    raise RuntimeError("the three Raft cores elected no leader")


async def _timed(
    leader: _Node, nodes: dict[str, _Node], entries: int, seconds: float
) -> Measured:
    # Proposing starts now; the count is rounded up to whole batches.
    target = -(-entries // BATCH) * BATCH
    writes0 = leader.writes
    frames0 = sum(n.transport.stats.frames_sent for n in nodes.values())
    start = time.perf_counter()
    leader.target = target
    leader.wake.set()
    deadline = start + seconds
    while leader.proposed < target and time.perf_counter() < deadline:
        _check_alive(nodes, leader)
        leader.on_applied.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leader.on_applied.wait(), 0.1)
    leader.target = leader.proposed  # time is up: no more rounds
    proposed = leader.proposed
    limit = time.perf_counter() + DRAIN_LIMIT_S
    while min(n.applied for n in nodes.values()) < proposed:
        _check_alive(nodes, leader)
        if time.perf_counter() > limit:
            done = min(n.applied for n in nodes.values())
            raise RuntimeError(f"{done:,} of {proposed:,} entries applied everywhere")
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    return Measured(
        entries=proposed,
        seconds=elapsed,
        leader_writes=leader.writes - writes0,
        frames=sum(n.transport.stats.frames_sent for n in nodes.values()) - frames0,
    )


def _check_alive(nodes: dict[str, _Node], leader: _Node) -> None:
    for node in nodes.values():
        if node.task is not None and node.task.done():
            node.task.result()
            raise RuntimeError(f"the driver of {node.id} stopped")
    if leader.raft.role is not Role.LEADER:
        raise LeaderLostError(f"{leader.id} lost leadership during the run")
