"""State proofs sized at 10^8 keys, measured on an equivalent tree.

Nobody can insert 10^8 keys here, but a present key's proof does not depend
on the whole map (``ledger.stateproof``, docs/statemap.md): it holds the
bitmap of which siblings along the key's path are non-empty, and those
siblings (32 bytes each), down to the depth where the key is alone. Those
are fixed by where the *other* keys fall relative to the key's path, and
for n uniformly random keys that is easy to draw exactly: at the root the
``n - 1`` others are each on either side with probability 1/2, so the count
in the sibling half is Binomial(m, 1/2) with m = n - 1; the rest share the
next bit with the key, and the draw goes on one level down with m = that
count, until no other key is left on the key's side.

A real ``StateMap`` then holds the key and one real key inside each
non-empty sibling subtree (sharing exactly that prefix with the key, then
differing): every sibling on the path is empty or not exactly as in the
full map, the key becomes alone at the same depth, so the real proof, built
by ``StateMap.prove`` and checked with ``verify_state``, has exactly the
size it would have in the map of n keys (sibling hashes differ, their
sizes do not).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Final

from ledger.statemap import EMPTY_ROOT, KEY_SIZE, StateMap, verify_state

# Below this many keys a draw is the popcount of that many random bits,
# which is Binomial(m, 1/2) by definition; above it, BTRS (cheaper).
POPCOUNT_MAX: Final = 4_096


class DictKV:
    """A ``KVReader`` over a dict, holding what ``StateMap.update`` wrote."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


def binomial_half(rng: random.Random, m: int) -> int:
    """A draw of Binomial(m, 1/2). Precondition: ``m >= 0``.

    Exact in both branches: the popcount of m fair bits, or Hörmann's BTRS
    (transformed rejection with squeeze, 1993), the algorithm Python 3.12's
    ``random.binomialvariate`` uses; this is Python 3.11, which lacks it.
    """
    if m <= POPCOUNT_MAX:
        return rng.getrandbits(m).bit_count() if m else 0
    p = 0.5
    spq = math.sqrt(m * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = m * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / (1.0 - p))
    mode = math.floor((m + 1) * p)
    h = math.lgamma(mode + 1) + math.lgamma(m - mode + 1)
    while True:
        u = rng.random() - 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > m:
            continue
        v = rng.random()
        if us >= 0.07 and v <= vr:
            return k  # the squeeze: accepted without the costly test
        v *= alpha / (a / (us * us) + b)
        log_pk = h - math.lgamma(k + 1) - math.lgamma(m - k + 1) + (k - mode) * lpq
        if math.log(v) <= log_pk:
            return k


def draw_path(rng: random.Random, n: int) -> list[int]:
    """For one key among ``n`` random keys: the depths (1-based) of the
    non-empty siblings on its path. The last is the depth where the key is
    alone. Precondition: ``2 <= n``, and n far below 2^256 (so the key is
    alone long before the 256th bit: a tie that deep never happens)."""
    if n < 2:
        raise ValueError("a map of one key has no path to size")
    depths: list[int] = []
    m = n - 1  # the other keys sharing the key's prefix so far
    depth = 0
    while m:
        depth += 1
        sibling = binomial_half(rng, m)  # those whose next bit differs
        if sibling:
            depths.append(depth)
        m -= sibling
    return depths


def _flip_bit(key: bytes, bit: int) -> bytes:
    raw = bytearray(key)
    raw[bit >> 3] ^= 0x80 >> (bit & 7)
    return bytes(raw)


def _inside_sibling(key: bytes, depth: int) -> bytes:
    """A random key sharing exactly ``depth - 1`` leading bits with ``key``,
    so it lies in the sibling subtree at ``depth``."""
    bit = depth - 1
    noise = int.from_bytes(os.urandom(KEY_SIZE), "big")
    mine = int.from_bytes(_flip_bit(key, bit), "big")
    low = (1 << (8 * KEY_SIZE - 1 - bit)) - 1  # the bits below ``bit``
    return ((mine & ~low) | (noise & low)).to_bytes(KEY_SIZE, "big")


@dataclass(frozen=True, slots=True)
class SizedProof:
    bytes: int
    depth: int
    siblings: int


def proof_for_path(depths: list[int], value: bytes) -> SizedProof:
    """Build the equivalent map for ``depths`` (``draw_path``), prove its
    key, verify the proof against the map's root and size it.

    Precondition: ``depths`` is strictly increasing, non-empty, within 1..255.
    """
    key = os.urandom(KEY_SIZE)
    items = {key: value}
    for depth in depths:
        items[_inside_sibling(key, depth)] = value
    kv = DictKV()
    smap = StateMap(kv, EMPTY_ROOT)
    root, writes = smap.update(items)
    for skey, raw in writes.items():
        if raw is not None:
            kv.data[skey] = raw
    smap.mark_committed()
    # Proved from a map opened afresh over the committed nodes, as a store
    # proves, not from the writer's pending cache.
    proof = StateMap(kv, root).prove(key)
    verify_state(root, key, value, proof)
    if proof.depth != depths[-1] or len(proof.siblings) != len(depths):
        raise AssertionError(
            f"equivalent tree: proof depth {proof.depth} with "
            f"{len(proof.siblings)} siblings, drawn {depths[-1]} and {len(depths)}"
        )
    return SizedProof(len(proof.to_bytes()), proof.depth, len(proof.siblings))


def sample(n: int, samples: int, value: bytes, seed: int) -> list[SizedProof]:
    """``samples`` present keys' proofs in a map of ``n`` random keys."""
    rng = random.Random(seed)
    return [proof_for_path(draw_path(rng, n), value) for _ in range(samples)]
