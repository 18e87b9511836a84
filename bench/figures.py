"""What a benchmark produces: named figures, and the small helpers to time them.

A ``Figure`` is one measured number with its unit and the goal DESIGN.md sets
for it. ``value`` is None when the figure could not be measured in this run
(a module not written yet, etcd missing, a phase that failed); ``note`` then
says why. No figure is ever filled in with a guess: an extrapolation says so
in its note.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

# A figure name is stable snake_case; results are compared across runs by it.
NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(slots=True, kw_only=True)
class Figure:
    """One measured figure. Invariant: ``name`` is snake_case and unique
    within a run (``Results.add`` checks)."""

    name: str
    value: float | None
    unit: str
    goal: float | None = None
    higher_is_better: bool = True
    # The share of the machine ceiling that bounds it (bench/ceiling.py):
    # value / ceiling for a rate, ceiling time / value for a time; <= 1.
    ceiling_ratio: float | None = None
    # value / what etcd does with the same load (bench/etcd.py).
    etcd_ratio: float | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= NAME_CHARS:
            raise ValueError(f"figure name {self.name!r} is not snake_case")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"figure {self.name}: value {self.value} is not finite")

    def goal_ratio(self) -> float | None:
        """How far the goal is met: >= 1 means met, whatever the direction."""
        if self.value is None or self.goal is None or self.goal == 0:
            return None
        if self.higher_is_better:
            return self.value / self.goal
        return self.goal / self.value if self.value > 0 else math.inf

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            # Six significant digits: more would be noise, not precision.
            "value": None if self.value is None else float(f"{self.value:.6g}"),
            "unit": self.unit,
            "goal": self.goal,
            "higher_is_better": self.higher_is_better,
        }
        if self.ceiling_ratio is not None:
            out["ceiling_ratio"] = round(self.ceiling_ratio, 4)
        if self.etcd_ratio is not None:
            out["etcd_ratio"] = round(self.etcd_ratio, 4)
        if self.note:
            out["note"] = self.note
        return out


def missing(
    name: str,
    unit: str,
    why: str,
    *,
    goal: float | None = None,
    higher_is_better: bool = True,
) -> Figure:
    """A figure this run could not measure, with the reason."""
    return Figure(
        name=name,
        value=None,
        unit=unit,
        goal=goal,
        higher_is_better=higher_is_better,
        note=why,
    )


@dataclass(slots=True)
class Results:
    """Figures in the order they were measured."""

    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        if self.get(figure.name) is not None:
            raise ValueError(f"figure {figure.name} measured twice")
        self.figures.append(figure)
        return figure

    def extend(self, figures: Sequence[Figure]) -> None:
        for figure in figures:
            self.add(figure)

    def get(self, name: str) -> Figure | None:
        for figure in self.figures:
            if figure.name == name:
                return figure
        return None

    def value(self, name: str) -> float | None:
        figure = self.get(name)
        return None if figure is None else figure.value


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base`` when both are known and base is positive."""
    if value is None or base is None or base <= 0:
        return None
    return value / base


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method.

    Nearest rank rather than interpolation: a p99 is then a latency some
    request really had. Precondition: ``samples`` is not empty.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class Stopwatch:
    """Wall time of a block, in seconds (``perf_counter``, monotonic)."""

    __slots__ = ("elapsed", "start")

    def __init__(self) -> None:
        self.start = 0.0
        self.elapsed = 0.0


@contextmanager
def timed() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    watch.start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.elapsed = time.perf_counter() - watch.start


def per_second(run: Callable[[], int], *, min_seconds: float) -> float:
    """Operations per second of ``run`` (which returns how many it did),
    called repeatedly until ``min_seconds`` of wall time have passed.

    Repeating rather than timing one call keeps a short call from being
    dominated by timer resolution and warm-up.
    """
    done = 0
    start = time.perf_counter()
    while True:
        done += run()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


_STARTED = time.perf_counter()


def since_start() -> float:
    """Seconds since the run started (this module's import)."""
    return time.perf_counter() - _STARTED


def say(message: str) -> None:
    """A progress line with the time since the run started."""
    print(f"[{time.perf_counter() - _STARTED:6.1f} s] {message}", flush=True)
