"""When the applier snapshots the Raft log, and how much of it it keeps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.applier import snapshot_keep

MIB = 1024 * 1024


def test_a_snapshot_is_due_after_enough_entries_or_bytes() -> None:
    plan = {"interval": 10_000, "max_bytes": 64 * MIB}
    assert snapshot_keep(9_999, 0, 100, **plan) is None
    assert snapshot_keep(10_000, 0, 100, **plan) == 5_000
    # A few huge batches: due by bytes long before the count.
    assert snapshot_keep(130, 100, 64 * MIB - 1, **plan) is None
    assert snapshot_keep(130, 100, 64 * MIB, **plan) == 115
    # Nothing applied since the last snapshot: never a second one.
    assert snapshot_keep(100, 100, 64 * MIB, **plan) is None


@given(
    last=st.integers(0, 10**9),
    since=st.integers(1, 10**6),
    bytes_since=st.integers(0, 2**40),
    interval=st.integers(1, 10**5),
    max_bytes=st.integers(1, 2**32),
)
def test_the_kept_tail_is_half_of_what_came_since(
    last: int, since: int, bytes_since: int, interval: int, max_bytes: int
) -> None:
    applied = last + since
    keep = snapshot_keep(
        applied, last, bytes_since, interval=interval, max_bytes=max_bytes
    )
    assert (keep is None) == (since < interval and bytes_since < max_bytes)
    if keep is not None:
        # Compaction never passes the snapshot, never goes back before the
        # last one, and keeps at most half an interval.
        assert last <= keep <= applied
        assert applied - keep == min(since, interval) // 2
