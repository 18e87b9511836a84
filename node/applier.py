"""Applying committed entries, in order, off the Raft loop.

Why a separate task: applying a large batch (rules, hashing, the state map,
one synced LevelDB write) takes long enough that, done on the Raft loop, it
would stop heartbeats and ticks and make a healthy cluster change leaders
under load. The Raft loop therefore only queues committed entries; this
task applies them one by one, each ``LedgerStore.apply`` in a worker thread,
while the loop keeps ticking, replicating and serving the web application.

Invariants:
- entries are applied in log order, each at most once (``raft_index >
  store.applied_index``; a replay after a restart is skipped);
- only this task writes blocks; while a block is being applied, cosignature
  writes are deferred (``Cosigner.deferring``) so the loop never waits on
  the store's writer lock;
- snapshots of the Raft log are taken here, between applies, so the
  snapshot's index, height and block hash come from one tip.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from consensus.messages import ConfState, Entry, EntryKind, decode_conf_change
from ledger.errors import EncodingError
from ledger.rules import BatchInput
from node.batcher import Landed, first_leaves, submission_key
from node.catchup import snapshot_data

if TYPE_CHECKING:
    from node.server import Node

logger = logging.getLogger(__name__)


class Applier:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._queue: collections.deque[Entry] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_snapshot = node.raft_storage.snapshot().index
        # Entry bytes applied since that snapshot (from 0 after a restart):
        # batches vary from one anchor to megabytes, so a count alone would
        # let the Raft log grow to gigabytes between snapshots.
        self._bytes_since = 0
        # Called with each failure that stops applying; the process exits.
        self.on_fatal: list[Callable[[BaseException], None]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="apply")

    async def stop(self) -> None:
        """Finish the block being applied (never cut a write short), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def push(self, entries: tuple[Entry, ...]) -> None:
        if entries:
            self._queue.extend(entries)
            self._idle.clear()
            self._wake.set()

    async def drained(self) -> None:
        """Wait until every queued entry is applied."""
        await self._idle.wait()

    async def _run(self) -> None:
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and not self._stopping:
                    await self._apply(self._queue.popleft())
                    self._maybe_snapshot()
                if not self._queue:
                    self._idle.set()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                logger.critical("applying stopped: %s", exc, exc_info=exc)
                for hook in self.on_fatal:
                    hook(exc)
            raise

    async def _apply(self, entry: Entry) -> None:
        node = self._node
        store = node.store
        if entry.index <= store.applied_index:
            return  # already in a block (replayed after a restart)
        self._bytes_since += len(entry.data)
        if entry.kind is not EntryKind.NORMAL:
            store.mark_applied(entry.index)
            if entry.kind is EntryKind.CONF_CHANGE:
                self._log_conf_change(entry)
            return
        started = time.perf_counter()
        try:
            batch = BatchInput.decode(entry.data)
        except EncodingError:
            # Every node decodes the same bytes the same way, so every node
            # skips this entry: the chains stay identical.
            logger.error("undecodable batch skipped index=%d", entry.index)
            store.mark_applied(entry.index)
            return
        trust = store.trust
        node.cosigner.deferring = True
        try:
            block = await asyncio.to_thread(store.apply, batch, raft_index=entry.index)
        finally:
            node.cosigner.deferring = False
        height = block.header.height
        waiters = node.waiters
        if waiters:
            firsts: list[int] | None = None  # computed once, if anyone waits
            for i, raw in enumerate(block.submissions):
                fut = waiters.get(submission_key(raw))
                if fut is not None and not fut.done():
                    if firsts is None:
                        firsts = first_leaves(block)
                    fut.set_result(Landed(block=block, index=i, first_leaf=firsts[i]))
        for hook in node.on_block:
            hook(block, time.perf_counter() - started)
        if store.trust.version != trust.version:
            node.peers.trust_changed(trust, store.trust)
        node.cosigner.sign(height)
        node.cosigner.flush()
        node.wake()  # the leader may propose again: one fewer batch in flight

    def _log_conf_change(self, entry: Entry) -> None:
        change = decode_conf_change(entry.data)
        conf = self._node.raft.conf_state()
        logger.info(
            "membership change applied index=%d change=%s:%s voters=%s learners=%s",
            entry.index,
            change.kind.name.lower(),
            change.node,
            ",".join(conf.voters),
            ",".join(conf.learners),
        )

    def _maybe_snapshot(self) -> None:
        node = self._node
        store = node.store
        applied = store.applied_index
        keep = snapshot_keep(
            applied,
            self._last_snapshot,
            self._bytes_since,
            interval=node.config.snapshot_interval,
            max_bytes=node.config.snapshot_bytes,
        )
        if keep is None or node.raft_io_busy:
            return  # (busy: the Raft log is being written; next apply retries)
        conf = self._conf_at(applied)
        if conf is None:
            return
        data = snapshot_data(store.height, store.last_hash)
        node.raft_storage.create_snapshot(applied, conf, data)
        if keep >= node.raft_storage.first_index():
            node.raft_storage.compact(keep)
        self._last_snapshot = applied
        self._bytes_since = 0
        logger.info("raft snapshot index=%d height=%d", applied, store.height)

    def snapshot_installed(self, index: int) -> None:
        if index > self._last_snapshot:
            self._last_snapshot = index
            self._bytes_since = 0

    def _conf_at(self, index: int) -> ConfState | None:
        """The membership in force at ``index`` (None: no longer known)."""
        found: ConfState | None = None
        for at, conf in self._node.raft.conf_history:
            if at > index:
                break
            found = conf
        return found


def snapshot_keep(
    applied: int, last: int, bytes_since: int, *, interval: int, max_bytes: int
) -> int | None:
    """The index to compact the Raft log up to with a snapshot at
    ``applied``, or None while none is due.

    One is due once ``interval`` entries, or ``max_bytes`` bytes of entry
    data, were applied since the snapshot at ``last``. The log keeps a tail
    of half the entries since (at most ``interval // 2``; so about half the
    bytes that made it due), so that a briefly lagging follower needs no
    snapshot.
    """
    since = applied - last
    if since < 1 or (since < interval and bytes_since < max_bytes):
        return None
    return applied - min(since, interval) // 2
