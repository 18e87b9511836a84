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


# A body up to this size is let in whatever the budget holds: one agency's
# single submissions and batches of a few hundred entries.
SMALL_BODY_BYTES = 256 * 1024


class BodyBudget:
    """The bytes of submission bodies a node holds at once, from their first
    byte until they are checked (signature, replay, window). Anyone can send
    a 16 MiB body with a bad signature; the budget bounds the memory and the
    hashing such bodies take, so that they cannot starve the node's Raft
    loop. Bytes are counted as they arrive, so a client that declares a
    large body and sends little holds little. A body is let in, however
    large (the size limit bounds it), while no other holds bytes of the
    budget; and a small one (up to ``SMALL_BODY_BYTES``) always is, so that
    a single submission never waits behind big ones (the connection cap
    bounds what small bodies hold; they count in ``used``). Used on the
    event loop only: no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextmanager
    def hold(self) -> Iterator[Held]:
        """A share of the budget for one request, given back at the latest
        when the block of code ends."""
        held = Held(self)
        try:
            yield held
        finally:
            held.release()


class Held:
    """One request's share of a ``BodyBudget``."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.size = 0
        self._released = False

    def grow(self, count: int) -> None:
        """``count`` more bytes arrived; the 503 problem ``unavailable`` (with
        Retry-After) if the budget has no room for them."""
        if self._released:
            return
        budget = self._budget
        others = budget.used - self.size
        small = self.size + count <= SMALL_BODY_BYTES
        if others and not small and budget.used + count > budget.limit:
            raise ProblemError(
                "unavailable",
                "too many large submissions at once; try again shortly",
                headers={"Retry-After": "1"},
            )
        self.size += count
        budget.used += count

    def release(self) -> None:
        """The body is checked (or the request is over): its bytes no longer
        count. Idempotent."""
        if not self._released:
            self._released = True
            self._budget.used -= self.size
