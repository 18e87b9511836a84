"""``Kept``: values worth keeping that can never go stale.

Every user keys it by immutable data (a stored subtree's position, a block
height below the tip, the hash of what was verified), so a kept value is
always right and a miss only costs recomputing it. Bounded: when full it
starts over, which is cheaper on hot paths than LRU bookkeeping and, for
these uses, nearly as good (the hot entries come back at once).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class Kept(Generic[_K, _V]):
    """At most ``limit`` (key, value) pairs; thread-safe as a dict is."""

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._items: dict[_K, _V] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: _K) -> bool:
        return key in self._items

    def get(self, key: _K) -> _V | None:
        return self._items.get(key)

    def put(self, key: _K, value: _V) -> None:
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[key] = value
