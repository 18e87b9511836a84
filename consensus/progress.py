"""What the leader knows about each follower's log, and its flow control.

A follower is in one of three states (as in etcd's raft):

- PROBE: the leader does not know where the logs agree; it sends one append
  at a time and waits for the answer (or a heartbeat response) before the next.
- REPLICATE: the logs agree up to ``match``; the leader streams appends
  optimistically (``next`` runs ahead of ``match``), at most ``max_inflight``
  messages unacknowledged.
- SNAPSHOT: the follower needs compacted entries; the leader sent a snapshot
  and sends nothing else until the follower answers (or times out).
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


# Heartbeat responses to wait for an answer to a snapshot before sending
# another: the snapshot or its answer may have been lost.
SNAPSHOT_RETRY_HEARTBEATS = 4


class Inflights:
    """Last indexes of appends sent but not acknowledged, oldest first."""

    __slots__ = ("_last", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._last: deque[int] = deque()

    def add(self, last_index: int) -> None:
        self._last.append(last_index)

    def free_le(self, index: int) -> None:
        last = self._last
        while last and last[0] <= index:
            last.popleft()

    def free_first(self) -> None:
        if self._last:
            self._last.popleft()

    def full(self) -> bool:
        return len(self._last) >= self.size

    def reset(self) -> None:
        self._last.clear()

    def __len__(self) -> int:
        return len(self._last)


class Progress:
    """One follower as seen by the leader.

    Invariants: ``match < next``; in SNAPSHOT, ``pending_snapshot`` is the
    index of the snapshot sent.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snapshot_wait",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, *, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        # PROBE: an append is outstanding; wait for its answer.
        self.probe_sent = False
        # Heard from since the last check-quorum round.
        self.recent_active = False
        self.snapshot_wait = 0
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_wait = 0
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot the follower has at least the snapshot's entries.
        floor = self.pending_snapshot if self.state is ProgressState.SNAPSHOT else 0
        self._reset(ProgressState.PROBE)
        self.next = max(self.match, floor) + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement of ``index``; ``False`` if stale."""
        updated = self.match < index
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int | None) -> None:
        """An append was sent; ``last_index`` is its last entry (or None)."""
        if self.state is ProgressState.REPLICATE and last_index is not None:
            self.next = last_index + 1
            self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """A rejection of the append after ``rejected``; ``False`` if stale.

        ``hint`` is the largest index where the logs might agree.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # answers an append we have since overtaken
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not the probe we are waiting on
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
