"""Per-agency request rate limits (a token bucket per agency)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from api.problems import ProblemError


@dataclass(slots=True)
class RateLimiter:
    """Allows ``rate`` requests per second per agency, bursts up to ``burst``."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self, agency: str) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(agency, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self.rate
            raise ProblemError(
                "rate-limited",
                f"agency {agency} is over {self.rate:g} requests per second",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        self._buckets[agency] = (tokens - 1.0, now)
