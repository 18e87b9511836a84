"""EveryMinute: one log line at the first event, then at most one a period."""

from __future__ import annotations

from node.throttle import EveryMinute


def test_a_line_is_due_at_the_first_event_then_once_a_period_with_the_count() -> None:
    now = [100.0]
    throttle = EveryMinute(60.0, clock=lambda: now[0])
    assert throttle.count() == 1
    assert [throttle.count() for _ in range(3)] == [None, None, None]
    now[0] += 59.9
    assert throttle.count() is None
    now[0] += 0.1
    assert throttle.count() == 5  # the four held back, and this one
    assert throttle.count() is None
