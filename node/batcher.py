"""The leader's batcher: submissions waiting to be proposed as one Raft entry.

A batch is cut at once when no batch is in flight; otherwise when it holds
``max_submissions`` submissions or ``max_entries`` entries, or when its
oldest submission has waited ``max_wait_ms``, whichever comes first. Under
load, the driver also holds back while ``max_inflight`` batches are
proposed but not yet applied, so batches grow with the load instead of the
number of Raft entries.

The batcher keeps no clock: the driver passes the time in.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from dataclasses import dataclass, field

from ledger.block import OK, Block, Cosignature
from ledger.codec import array_length
from ledger.errors import CommitTimeoutError
from ledger.rules import BatchInput


@dataclass(slots=True)
class Pending:
    raw: bytes
    entries: int
    since_ms: int
    future: asyncio.Future[Landed]


@dataclass(frozen=True, slots=True, kw_only=True)
class Landed:
    """Where an applied submission went: its block (as applied, in memory),
    its position there and the index of its first leaf (if accepted)."""

    block: Block
    index: int
    first_leaf: int


@dataclass(slots=True)
class Deadlines:
    """The futures of waiting submissions with the monotonic time each must
    be resolved by, failed with ``CommitTimeoutError`` once late.

    One sweep a tick (``expire``) instead of a timer per submission, which
    cost a leader's loop about 8 us each. Invariant: deadlines are added in
    order (the same timeout from a growing clock), so the leftmost is the
    earliest; futures resolve about in the order they were added, so the
    resolved ones leave from the left as they go.
    """

    waiting: collections.deque[tuple[float, asyncio.Future[Landed]]] = field(
        default_factory=collections.deque
    )

    def add(self, due: float, future: asyncio.Future[Landed]) -> None:
        self.waiting.append((due, future))

    def expire(self, now: float) -> None:
        """Fail every future due at ``now`` or before; drop resolved ones."""
        waiting = self.waiting
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            _, future = waiting.popleft()
            if not future.done():
                future.set_exception(
                    CommitTimeoutError("not committed on a quorum in time")
                )


def submission_key(raw: bytes) -> bytes:
    """Identifies a submission across nodes: the hash of its bytes."""
    return hashlib.sha256(raw).digest()


def first_leaves(block: Block) -> list[int]:
    """Per submission of ``block``, the leaf index its entries start at.

    Accepted submissions' leaves follow each other in block order from the
    block's first leaf; a rejected one adds none (its value is where the
    next accepted one starts). Reads only each array's length: the block's
    submissions were decoded when it was applied.
    """
    cursor = block.header.first_leaf
    out = []
    for raw, outcome in zip(block.submissions, block.outcomes, strict=True):
        out.append(cursor)
        if outcome.code == OK:
            cursor += array_length(raw, "entries")
    return out


@dataclass(slots=True, kw_only=True)
class Batcher:
    max_submissions: int
    max_entries: int
    max_wait_ms: int
    max_inflight: int = 4
    # An empty block is proposed when none was made for this long (None:
    # never); see refresh_due.
    refresh_ms: int | None = None
    queue: collections.deque[Pending] = field(default_factory=collections.deque)
    queued_entries: int = 0
    # Cosignatures collected from peers that no block has carried yet.
    cosignatures: dict[tuple[int, str], Cosignature] = field(default_factory=dict)
    carried_height: int = 0

    def add(self, item: Pending) -> None:
        self.queue.append(item)
        self.queued_entries += item.entries

    def add_cosignature(self, sig: Cosignature) -> None:
        if sig.height > self.carried_height:
            self.cosignatures.setdefault((sig.height, sig.agency), sig)

    def deadline_ms(self) -> int | None:
        """When the oldest waiting submission must be proposed at the latest."""
        if not self.queue:
            return None
        return self.queue[0].since_ms + self.max_wait_ms

    def ready(self, now_ms: int, inflight: int) -> bool:
        if not self.queue or inflight >= self.max_inflight:
            return False
        if inflight == 0:
            # Nothing on its way to a quorum: waiting would only add latency.
            # Under load batches grow anyway while earlier ones are in flight.
            return True
        if len(self.queue) >= self.max_submissions:
            return True
        if self.queued_entries >= self.max_entries:
            return True
        deadline = self.deadline_ms()
        return deadline is not None and now_ms >= deadline

    def cut(self, now_ms: int) -> tuple[BatchInput, list[Pending]]:
        """Take the next batch off the queue (with the queue empty: a batch
        of no submissions)."""
        taken: list[Pending] = []
        entries = 0
        while self.queue and len(taken) < self.max_submissions:
            nxt = self.queue[0]
            if taken and entries + nxt.entries > self.max_entries:
                break
            taken.append(self.queue.popleft())
            entries += nxt.entries
        self.queued_entries -= entries
        sigs = sorted(self.cosignatures.values(), key=lambda s: (s.height, s.agency))
        self.cosignatures.clear()
        batch = BatchInput(
            time_ms=now_ms,
            submissions=tuple(p.raw for p in taken),
            cosignatures=tuple(sigs[:256]),
        )
        for sig in sigs[256:]:
            self.cosignatures[(sig.height, sig.agency)] = sig
        return batch, taken

    def refresh_due(self, now_ms: int, last_block_ms: int, inflight: int) -> bool:
        """Whether an empty block is due: nothing waits or is in flight, and
        the last block (or, before any, the node's start) is ``refresh_ms``
        old."""
        if self.queue or inflight or self.refresh_ms is None:
            return False
        return now_ms - last_block_ms >= self.refresh_ms

    def empty(self, now_ms: int) -> BatchInput:
        """A batch without submissions: a block that moves the checkpoint's
        time on (and carries what cosignatures are collected)."""
        batch, taken = self.cut(now_ms)
        assert not taken
        return batch

    def fail_all(self, exc: BaseException) -> None:
        """Leadership was lost: nothing queued here will be proposed by us."""
        for item in self.queue:
            if not item.future.done():
                item.future.set_exception(exc)
        self.queue.clear()
        self.queued_entries = 0
