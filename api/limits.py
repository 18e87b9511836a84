"""Request limits: a rate per agency (a token bucket each), and a budget of
submission bodies in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from api.problems import ProblemError


@dataclass(slots=True)
class RateLimiter:
    """Allows ``rate`` requests per second per agency, bursts up to ``burst``."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The node checks large submissions in a worker thread, and they are
    # charged there.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, agency: str) -> None:
        with self._lock:
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


class BodyBudget:
    """The bytes of submission bodies a node holds at once: read, decoded,
    checked or waiting for their block. Anyone can send a 16 MiB body with
    a bad signature; the budget bounds the memory and the hashing such
    bodies take, so that they cannot starve the node's Raft loop. One body
    is always let in, however large (the size limit bounds it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0  # on the event loop only: no lock

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Reserve ``size`` bytes for the block of code, or raise the 503
        problem ``unavailable`` (with Retry-After) if they are not free."""
        if self.used and self.used + size > self.limit:
            raise ProblemError(
                "unavailable",
                "too many large submissions at once; try again shortly",
                headers={"Retry-After": "1"},
            )
        self.used += size
        try:
            yield
        finally:
            self.used -= size
