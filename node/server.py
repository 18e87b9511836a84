"""One agency's node: drives the Raft core with asyncio and applies blocks.

Theory of operation. A single task (``_run``) owns the Raft core. It wakes
on a tick, an inbound frame, a new submission or a batch deadline, feeds the
core, and then drains every ready value in the order the Ready contract
demands:

1. persist hard state, entries and snapshot (one LevelDB batch, synced in
   a worker thread; one that only moves the commit index, which Raft keeps
   as volatile state, is written without sync on the loop);
2. only then send the messages;
3. install a snapshot (catch up from peers, ``node.catchup``), then hand
   committed entries to the applier (``node.applier``), which turns each
   batch into one block, written in one atomic batch with its Raft index,
   so a restart replays nothing it applied;
4. ``advance``.

An acknowledgement (a resolved submission future) therefore means the batch
was committed on a quorum and applied here, never earlier. Futures are keyed
by the hash of the submission's bytes and resolved by whichever block holds
it, so a submission proposed by a leader that then lost office is still
acknowledged if the next leader commits it, and times out (503: it may or
may not have committed) if nobody does.

After applying a block the node signs its checkpoint and gossips the
signature; finality is learned from the signatures each node holds
(``node.cosign``). Membership follows the applied trust list: governance
changes the list, the leader changes Raft (``node.membership``). Peers,
their addresses and our own keys, including rotation, are ``node.peers``.
Lagging or wiped followers catch up by snapshot (``node.catchup``).

All of this runs on the event loop, which the web application shares. The
core, the Raft log and the signing are synchronous and short; only applying
a block is long, so the applier runs ``LedgerStore.apply`` in a worker
thread while the loop keeps ticking and heartbeating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from consensus.durable import LevelDBStorage
from consensus.messages import (
    Message,
    MessageType,
    Role,
    Snapshot,
    SoftState,
)
from consensus.raft import Raft, RaftConfig
from ledger.block import Block, Cosignature
from ledger.errors import (
    CommitTimeoutError,
    ConsensusError,
    CorruptStoreError,
    EncodingError,
    NotLeaderError,
    RuleViolation,
)
from ledger.store import LedgerStore
from ledger.submission import Submission
from ledger.trust import TrustList
from node.applier import Applier
from node.batcher import Batcher, Deadlines, Landed, Pending, submission_key
from node.catchup import catch_up
from node.config import NodeConfig
from node.cosign import Cosigner
from node.frames import CosigFrame, LostFrame, decode_frame, lost_frame, raft_frame
from node.intake import precheck
from node.integrity import IntegrityWalk
from node.marker import DataMarker
from node.membership import initial_conf, reconcile, remove_lost
from node.peers import Peers

logger = logging.getLogger(__name__)

CATCH_UP_TIMEOUT_S: Final = 120.0
# Submissions larger than this are prechecked in a worker thread.
PRECHECK_OFF_LOOP_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an acknowledged submission gets back."""

    block: Block
    index: int  # position of the submission in the block
    first_leaf: int  # leaf index of the submission's first entry
    # With wait_final: False when no final checkpoint covered the block in
    # time. The submission is committed and applied all the same.
    final: bool = True

    @property
    def height(self) -> int:
        return self.block.header.height


class Node:
    """The agency's node; ``api`` reads ``store`` and calls ``submit``."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.agency = config.agency
        genesis = TrustList.load(config.genesis)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.store = LedgerStore.open(config.data_dir / "ledger", genesis)
        except CorruptStoreError as exc:
            logger.error(
                "refusing to start agency=%s: store corrupt at height=%s: %s",
                self.agency,
                exc.height,
                exc,
            )
            raise
        self.peers = Peers(config, self.store, self._on_frame)
        self.cosigner = Cosigner(store=self.store, peers=self.peers)
        self.cosigner.collect = self._collect_cosignature
        self.raft_storage = LevelDBStorage(
            config.data_dir / "raft", initial_conf([a.id for a in genesis.agencies])
        )
        self.data_marker = DataMarker(config.data_dir, config.data_marker)
        restored = self.data_marker.start(self.raft_storage)
        if restored is not None:
            # The lost folder's term and vote, so that no vote goes twice.
            self.raft_storage.save_ready(restored, (), None)
        lost = self.data_marker.lost
        if lost:
            logger.warning(
                "data folder lost agency=%s path=%s: this node grants no vote "
                "until it has caught up from a leader (the entries it "
                "acknowledged are gone); marker %s",
                self.agency,
                config.data_dir,
                self.data_marker.path,
            )
        self.raft = Raft(
            RaftConfig(
                id=self.agency,
                election_tick=config.election_ticks,
                heartbeat_tick=config.heartbeat_ticks,
                applied=self.store.applied_index,
                start_passive=lost,
            ),
            self.raft_storage,
            random.Random(secrets.randbits(64)),
        )
        self._was_passive = self.raft.passive
        self.batcher = Batcher(
            max_submissions=config.batch_max_submissions,
            max_entries=config.batch_max_entries,
            max_wait_ms=config.batch_max_wait_ms,
            refresh_ms=config.refresh_ms,
        )
        # (height, time) of the last block; before any, an idle ledger counts
        # from the node's start.
        self._last_block: tuple[int, int] = (0, _now_ms())
        self.soft = SoftState(role=Role.FOLLOWER, leader=None, term=0)
        self._inbox: list[Message] = []
        self._wake = asyncio.Event()
        # Submissions waiting for their block, by submission_key.
        self.waiters: dict[bytes, asyncio.Future[Landed]] = {}
        # The same futures, failed by a tick once not applied in time.
        self._deadlines = Deadlines()
        self._inflight: list[int] = []  # raft indexes of our proposals
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Members that told us (the leader) they lost their log: last index.
        self._lost: dict[str, int] = {}
        self._lost_sent = 0.0  # when we last told a leader we lost ours
        # The synced Raft log write running in a worker thread, if any.
        self._raft_io: asyncio.Future[None] | None = None
        self.applier = Applier(self)
        self.on_block: list[Callable[[Block, float], None]] = []
        self.on_soft_state: list[Callable[[SoftState], None]] = []
        # Called once if the driver dies; the process should then exit.
        self.on_fatal: list[Callable[[BaseException], None]] = []
        self.applier.on_fatal.append(self._fatal)
        self.integrity = IntegrityWalk(self.store, self._fatal)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        snap = self.raft_storage.snapshot()
        if snap.index > self.store.applied_index:
            # A catch-up was cut short (a crash): finish it before Raft runs,
            # which takes the snapshot as applied.
            await self._install_snapshot(snap)
        await self.peers.start()
        self.applier.start()
        self._task = asyncio.create_task(self._run(), name=f"raft-{self.agency}")
        if IntegrityWalk.needed(self.store):
            self.integrity.start(asyncio.get_running_loop())
        conf = self.raft.conf_state()
        logger.info(
            "node started agency=%s height=%d tree_size=%d applied=%d commit=%d "
            "voters=%s learners=%s",
            self.agency,
            self.store.height,
            self.store.tree_size,
            self.store.applied_index,
            self.raft.log.committed,
            ",".join(conf.voters),
            ",".join(conf.learners),
        )

    async def stop(self) -> None:
        """Hand leadership over if we hold it, then close everything."""
        await self._transfer_before_stop()
        self._stopping = True
        await self.integrity.stop()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._raft_io is not None:
            await asyncio.gather(self._raft_io, return_exceptions=True)
        await self.applier.stop()
        await self.peers.stop()
        shutdown = ConsensusError("node is shutting down")
        self.batcher.fail_all(shutdown)
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(shutdown)
        self.raft_storage.close()
        self.store.close()
        logger.info(
            "node stopped agency=%s height=%d applied=%d",
            self.agency,
            self.store.height,
            self.store.applied_index,
        )

    async def _transfer_before_stop(self) -> None:
        task = self._task
        if not self.is_leader or task is None or task.done():
            return
        voters = [v for v in self.raft.conf_state().voters if v != self.agency]
        if not voters:
            return
        to = max(voters, key=lambda v: self.raft.prs[v].match)
        try:
            self.raft.transfer_leader(to)
        except ConsensusError:
            return
        logger.info("leadership transfer agency=%s to=%s", self.agency, to)
        self._wake.set()
        deadline = time.monotonic() + self._election_s()
        while self.is_leader and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(self.config.tick_ms / 1000)

    def _election_s(self) -> float:
        return self.config.election_ticks * self.config.tick_ms / 1000

    # -- what the API asks ---------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.soft.role is Role.LEADER

    @property
    def commit_index(self) -> int:
        return self.raft.log.committed

    def leader_url(self) -> str | None:
        leader = self.soft.leader
        return None if leader is None else self.peers.api_url(leader)

    def cluster_info(self) -> dict[str, object]:
        conf = self.raft.conf_state()
        members = [
            {"id": m, "voter": m in conf.voters, "api_url": self.peers.api_url(m)}
            for m in conf.voters + conf.learners
        ]
        return {
            "agency": self.agency,
            "role": self.soft.role.name.lower(),
            "term": self.soft.term,
            "leader": self.soft.leader,
            "leader_url": self.leader_url(),
            "commit_index": self.commit_index,
            "applied_index": self.store.applied_index,
            "height": self.store.height,
            "tree_size": self.store.tree_size,
            "trust_version": self.store.trust.version,
            "members": members,
        }

    async def submit(
        self,
        raw: bytes,
        *,
        wait_final: bool = False,
        admit: Callable[[str], None] | None = None,
        decoded: Submission | None = None,
        checked: Callable[[], None] | None = None,
    ) -> Accepted:
        """Propose one signed submission and wait until its block is applied.

        ``admit(agency)`` runs once the signature holds (the API's rate
        limit); ``decoded`` is ``raw`` decoded, if the caller has it;
        ``checked()`` runs once the precheck passed, before the wait. Raises
        NotLeaderError (not proposed: the API forwards), RuleViolation
        (refused before proposal or when applied), CommitTimeoutError when
        it was not committed in time (it may still commit), or
        ConsensusError.
        """
        if not self.is_leader:
            raise NotLeaderError(self.soft.leader)
        # A copy of a submission still in flight (a client's retry) is a
        # replay: refused before precheck charges the agency's rate for it.
        key = submission_key(raw)
        if key in self.waiters:
            raise RuleViolation("replay", "this submission is already pending")
        view = self.store.view()
        if len(raw) > PRECHECK_OFF_LOOP_BYTES:
            # Hashing every entry and checking the signature of a large
            # submission takes tens of milliseconds: in a worker thread, so
            # that a flood of them (anyone can send one) cannot stall Raft.
            entries = await asyncio.to_thread(
                precheck, view, raw, now_ms=_now_ms(), admit=admit, decoded=decoded
            )
            if not self.is_leader:  # lost the lead meanwhile: forward it
                raise NotLeaderError(self.soft.leader)
            if key in self.waiters:  # a copy came in meanwhile
                raise RuleViolation("replay", "this submission is already pending")
        else:
            entries = precheck(
                view, raw, now_ms=_now_ms(), admit=admit, decoded=decoded
            )
        if checked is not None:
            checked()
        fut: asyncio.Future[Landed] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        self.batcher.add(Pending(raw, entries, _now_ms(), fut))
        self._wake.set()
        timeout_s = self.config.submit_timeout_ms / 1000
        # Failed with CommitTimeoutError by a tick once late (_on_tick).
        self._deadlines.add(time.monotonic() + timeout_s, fut)
        try:
            landed = await fut
        finally:
            if self.waiters.get(key) is fut:
                del self.waiters[key]
        # The block as applied, from memory: reading it back from the store
        # for every waiter would cost each one the whole block.
        block, index = landed.block, landed.index
        outcome = block.outcomes[index]
        if outcome.code != "ok":
            raise RuleViolation(
                outcome.code, "refused when applied", entry=outcome.entry
            )
        final = True
        if wait_final:
            try:
                await self.cosigner.wait_final(block.header.height, timeout_s)
            except CommitTimeoutError:
                # Applied on a quorum already: an acknowledgement all the
                # same, saying it is not final yet (a timeout would invite a
                # retry, and the retry would be a replay).
                final = False
        return Accepted(block, index, landed.first_leaf, final)

    # -- the driver ----------------------------------------------------------

    def _on_frame(self, peer: str, frame: bytes) -> None:
        item = decode_frame(frame)  # EncodingError drops the connection
        if isinstance(item, LostFrame):
            self._lost[peer] = item.last
        elif isinstance(item, CosigFrame):
            for sig in item.cosignatures:
                self.cosigner.take(sig)
        elif item.src != peer:
            raise EncodingError(f"message from {peer} claims to be from {item.src}")
        else:
            self._inbox.append(item)
            self._wake.set()

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            logger.critical(
                "node driver stopped agency=%s: %s", self.agency, exc, exc_info=exc
            )
            self._fatal(exc)
            raise

    def _fatal(self, exc: BaseException) -> None:
        for hook in self.on_fatal:
            hook(exc)

    @property
    def raft_io_busy(self) -> bool:
        """A Raft log write is running: nothing else may touch that storage."""
        return self._raft_io is not None and not self._raft_io.done()

    def wake(self) -> None:
        """Run the driver loop soon (something it waits for happened)."""
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.config.tick_ms / 1000
        next_tick = loop.time() + tick_s
        while not self._stopping:
            timeout = next_tick - loop.time()
            deadline = self.batcher.deadline_ms()
            if deadline is not None and self._can_propose():
                timeout = min(timeout, (deadline - _now_ms()) / 1000)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            else:
                await asyncio.sleep(0)  # never starve the web application
            self._wake.clear()
            ticked = False
            while loop.time() >= next_tick:
                self.raft.tick()
                next_tick += tick_s
                ticked = True
                if loop.time() - next_tick > 5 * tick_s:
                    next_tick = loop.time() + tick_s  # fell behind: no burst
            self._step_inbox()
            if ticked:
                self._on_tick()
            self._maybe_propose()
            await self._drain_ready()
            await self.peers.settle()

    def _can_propose(self) -> bool:
        return self.is_leader and len(self._inflight) < self.batcher.max_inflight

    def _step_inbox(self) -> None:
        inbox, self._inbox = self._inbox, []
        for msg in inbox:
            if msg.type is MessageType.HEARTBEAT:
                self._check_heartbeat(msg)
            try:
                self.raft.step(msg)
            except ConsensusError as exc:
                logger.debug(
                    "message refused agency=%s from=%s: %s", self.agency, msg.src, exc
                )

    def _check_heartbeat(self, msg: Message) -> None:
        """Tell the leader when it believes we hold more than our log.

        The leader sends ``min(match, commit)``, which is beyond our log only
        if we lost it (the data directory was deleted): its ``match`` for us
        is from before, and Raft never lowers a match, so it would wait
        forever for us to ask for entries it thinks we have. The core commits
        no further than our log; we tell the leader, whose node then re-adds
        us as a learner (``membership.remove_lost``).
        """
        last = self.raft.log.last_index()
        if msg.commit <= last:
            return
        now = time.monotonic()
        if now - self._lost_sent > self._election_s():
            self._lost_sent = now
            logger.info(
                "leader thinks we hold more than our log agency=%s leader=%s "
                "commit=%d last=%d (data lost?)",
                self.agency,
                msg.src,
                msg.commit,
                last,
            )
            self.peers.send(msg.src, lost_frame(last))

    def _on_tick(self) -> None:
        self._deadlines.expire(time.monotonic())
        self.cosigner.tick()
        if (
            self._was_passive
            and not self.raft.passive
            and not self.raft.has_ready()
            and not self.raft_io_busy
        ):
            # What made Raft leave passive is saved: the log is whole.
            self.data_marker.caught_up()
            self._was_passive = False
            logger.info("caught up after a lost data folder agency=%s", self.agency)
        self.peers.leader_known(self.soft.leader is not None, self._election_s())
        if not self.is_leader:
            self._lost.clear()
            return
        if self._lost:
            remove_lost(self.raft, self._lost)
        reconcile(self.raft, [a.id for a in self.store.trust.agencies])
        self._maybe_refresh()

    def _maybe_refresh(self) -> None:
        """Propose an empty block once the ledger has been idle for
        ``refresh_ms``: checkpoints are made only with blocks, and without
        one the latest final checkpoint would grow stale for every verifier
        (the verify page would call every document out of date)."""
        if self.store.applied_index < self.raft.hard_state().commit:
            return  # blocks still to apply: the last one is not known yet
        now = _now_ms()
        last = self._last_block_ms()
        if not self.batcher.refresh_due(now, last, len(self._inflight)):
            return
        try:
            index = self.raft.propose(self.batcher.empty(now).encode())
        except ConsensusError as exc:
            logger.debug("no refresh block agency=%s: %s", self.agency, exc)
            return
        self._inflight.append(index)
        logger.info(
            "proposed an empty block to keep checkpoints fresh agency=%s idle_ms=%d",
            self.agency,
            now - last,
        )

    def _last_block_ms(self) -> int:
        height = self.store.height
        if height != self._last_block[0]:
            self._last_block = (height, self.store.header(height).time_ms)
        return self._last_block[1]

    def _collect_cosignature(self, sig: Cosignature) -> None:
        if self.is_leader:
            self.batcher.add_cosignature(sig)

    def _maybe_propose(self) -> None:
        if not self.is_leader:
            return
        applied = self.store.applied_index
        self._inflight = [i for i in self._inflight if i > applied]
        while self.batcher.ready(_now_ms(), len(self._inflight)):
            batch, taken = self.batcher.cut(_now_ms())
            try:
                index = self.raft.propose(batch.encode())
            except ConsensusError as exc:
                # Not proposed: safe to retry elsewhere (NotLeaderError
                # makes the API forward to the leader).
                for item in taken:
                    if not item.future.done():
                        item.future.set_exception(exc)
                if isinstance(exc, NotLeaderError):
                    self.batcher.fail_all(exc)
                return
            self._inflight.append(index)

    async def _drain_ready(self) -> None:
        while self.raft.has_ready():
            rd = self.raft.ready()
            # (1) durable before anything that depends on it leaves the node.
            # The synced write runs in a thread so the web application goes
            # on meanwhile; this loop waits for it, so nothing is sent early,
            # and what arrives meanwhile is batched into the next ready.
            storage = self.raft_storage
            if rd.hard_state is not None or rd.entries or rd.snapshot is not None:
                # Before the first state is saved, so that no vote or
                # acknowledgement leaves without it (node.marker).
                self.data_marker.before_save(rd.hard_state)
            if not storage.must_sync(rd.hard_state, rd.entries, rd.snapshot):
                # Only the commit index moved (or nothing): a write without
                # fsync takes microseconds, not worth a thread's round trip.
                storage.save_ready(rd.hard_state, rd.entries, rd.snapshot)
            else:
                self._raft_io = asyncio.ensure_future(
                    asyncio.to_thread(
                        storage.save_ready, rd.hard_state, rd.entries, rd.snapshot
                    )
                )
                # Shielded: cancelling the loop must not abandon a write that
                # ``stop`` then closes the store under.
                await asyncio.shield(self._raft_io)
            # (2) only now send.
            for msg in rd.messages:
                self.peers.send(msg.dst, raft_frame(msg))
            # (3) install, then hand committed entries to the applier.
            if rd.snapshot is not None and rd.snapshot.index > 0:
                await self._install_snapshot(rd.snapshot)
            self.applier.push(rd.committed_entries)
            self.raft.advance(rd)
            self._soft_state(rd.soft_state)

    def _soft_state(self, soft: SoftState) -> None:
        if soft == self.soft:
            return
        was_leader = self.is_leader
        self.soft = soft
        logger.info(
            "raft state agency=%s role=%s term=%d leader=%s",
            self.agency,
            soft.role.name.lower(),
            soft.term,
            soft.leader,
        )
        if was_leader and not self.is_leader:
            # Queued submissions were never proposed: the API forwards them.
            # Proposed ones keep waiting: the next leader may commit them.
            self.batcher.fail_all(NotLeaderError(soft.leader))
            self.batcher.cosignatures.clear()
            self._inflight.clear()
        for hook in self.on_soft_state:
            hook(soft)

    # -- snapshots -----------------------------------------------------------

    async def _install_snapshot(self, snap: Snapshot) -> None:
        await self.applier.drained()
        if snap.index <= self.store.applied_index:
            return
        # The install swaps the store's database; the walk of the old one
        # is moot (the next start walks the new one).
        await self.integrity.stop()
        trust = self.store.trust
        urls = [u for u in (self.leader_url(),) if u is not None]
        urls += [u for u in self.peers.api_urls() if u not in urls]
        await catch_up(self.store, snap, urls, timeout_s=CATCH_UP_TIMEOUT_S)
        self.applier.snapshot_installed(snap.index)
        if self.store.trust.version != trust.version:
            self.peers.trust_changed(trust, self.store.trust)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
