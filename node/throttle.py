"""At most one log line a minute for an event that can come in floods."""

from __future__ import annotations

import time
from collections.abc import Callable


class EveryMinute:
    """Counts an event; ``count`` says when a line about it is due: at the
    first, then at most once per ``period_s``, with how many came since."""

    def __init__(
        self, period_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._period = period_s
        self._clock = clock
        self._since = 0  # events since the last line
        self._last = float("-inf")

    def count(self) -> int | None:
        """One more event: the number to report if a line is due, else None."""
        self._since += 1
        now = self._clock()
        if now - self._last < self._period:
            return None
        reported, self._since, self._last = self._since, 0, now
        return reported
