"""Extrapolating a size that grows with the depth of a tree.

Proofs (inclusion, state, bundles) grow by about one hash per doubling of
the tree, so their size is close to ``a + b * log2(n)``. We measure a few
sizes we can afford and fit that line by least squares; a figure built on
it says in its note that it is an extrapolation and from which points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogFit:
    """``y = a + b * log2(n)``."""

    a: float
    b: float

    @classmethod
    def of(cls, points: Sequence[tuple[int, float]]) -> LogFit:
        """Least squares over (n, y); one point gives a flat line."""
        if not points:
            raise ValueError("no points to fit")
        xs = [math.log2(n) for n, _ in points]
        ys = [y for _, y in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        if var == 0:
            return cls(my, 0.0)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
        return cls(my - b * mx, b)

    def at(self, n: float) -> float:
        return self.a + self.b * math.log2(n)

    def describe(self) -> str:
        return f"{self.a:.0f} + {self.b:.1f}·log2(n)"
