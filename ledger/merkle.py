"""The append-only Merkle log of RFC 9162 §2.1.

Theory of operation. Leaves hash as ``H(0x00 || data)``, interior nodes as
``H(0x01 || left || right)``, and a tree of ``n > 1`` leaves splits at the
largest power of two below ``n``. The empty tree's root is ``H("")``.

Node ``(level, index)`` names the perfect subtree over the leaves
``[index * 2**level, (index + 1) * 2**level)``; only such nodes are stored.
Every other subtree the log needs lies on the right edge of some tree and is
rebuilt from the perfect subtrees of its binary decomposition, so a root or a
proof costs O(log n) stored reads.

``MerkleLog`` keeps the *compact range* in memory: the perfect subtrees of
the binary decomposition of its size, highest level first. Appending a leaf
is a binary increment over that range, so ``append`` and the current root
read nothing, not even the nodes that earlier appends returned and the
caller may not have persisted yet.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2, plus the checks the
transparency-dev probes pin: the proof length is derived from the index and
sizes, so hashes added before or after a valid proof are refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from ledger.domains import LOG_LEAF, LOG_NODE
from ledger.errors import RootMismatchError, StorageError, VerificationError
from ledger.kept import Kept

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "DictNodeStore",
    "MerkleLog",
    "NodeReader",
    "TreeLevels",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
_RANGES_KEPT: Final = 256  # MerkleLog's kept edge ranges, about 100 B each
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """``H(0x00 || data)``: the hash of one leaf."""
    return _sha256(LOG_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(LOG_NODE + left + right).digest()


# --- in memory ----------------------------------------------------------------


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    # Pairing neighbours and carrying a lone last node up unchanged builds
    # exactly the RFC tree: each node at level L then covers an aligned block
    # of 2**L leaves, cut short only at the right edge.
    up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) & 1:
        up.append(level[-1])
    return up


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaf_hashes``; ``EMPTY_ROOT`` if none.

    Precondition: every element is a 32-byte leaf hash (not checked: this
    runs on every submission).
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level: Sequence[bytes] = leaf_hashes
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def inclusion_path(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree over ``leaf_hashes``.

    Precondition: ``0 <= index < len(leaf_hashes)`` (``ValueError``).
    Hashes run from the leaf's sibling up to the child of the root.
    """
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"index {index} outside [0, {len(leaf_hashes)})")
    path: list[bytes] = []
    level: Sequence[bytes] = leaf_hashes
    while len(level) > 1:
        sibling = index ^ 1
        # A lone last node has no sibling at this level: it is carried up.
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        index >>= 1
    return path


class TreeLevels:
    """Every level of the tree over some leaf hashes, leaves first, so that
    each inclusion path costs no hashing (building costs ``n - 1`` hashes
    and keeps about ``2n`` of them). Immutable once built."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels: list[Sequence[bytes]] = [tuple(leaf_hashes)]
        while len(levels[-1]) > 1:
            levels.append(tuple(_next_level(levels[-1])))
        self._levels = tuple(levels)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def path(self, index: int) -> list[bytes]:
        """``inclusion_path(leaf_hashes, index)``, read from the levels.

        Precondition: ``0 <= index < size`` (``ValueError``).
        """
        if not 0 <= index < self.size:
            raise ValueError(f"index {index} outside [0, {self.size})")
        path: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


# --- verification -------------------------------------------------------------


def _tampered(message: str) -> VerificationError:
    return VerificationError("tampered", message)


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise _tampered(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    # The length follows from the index and sizes alone, so a proof with
    # hashes added before or after a valid one is refused here, before any
    # hashing.
    if len(proof) != want:
        raise _tampered(f"proof has {len(proof)} hashes, want {want}")
    for i, item in enumerate(proof):
        _check_hash(f"proof[{i}]", item)


def _inclusion_length(index: int, size: int) -> int:
    """Proof length for ``0 <= index < size``."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(first: int, second: int) -> int:
    """Proof length for ``0 < first < second``."""
    shift = (first & -first).bit_length() - 1
    inner = ((first - 1) ^ (second - 1)).bit_length() - shift
    border = ((first - 1) >> (inner + shift)).bit_count()
    # A power-of-two first tree is itself a node of the second: the verifier
    # knows its hash already, so the proof leaves it out.
    return inner + border + (0 if first == 1 << shift else 1)


def _shift_to_odd(fn: int, sn: int) -> tuple[int, int]:
    # RFC 9162: shift both until LSB(fn) is set or fn is 0.
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` gives for leaf ``index`` of a ``size`` tree.

    Raises ``VerificationError("tampered")`` if ``0 <= index < size`` fails,
    a hash is not 32 bytes, or the proof has the wrong length.
    """
    # (1): shape, before any hashing.
    if not 0 <= index < size:
        raise _tampered(f"leaf index {index} outside tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_proof(proof, _inclusion_length(index, size))

    # (2): RFC 9162 §2.1.3.2, step by step.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise _tampered("inclusion proof longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_to_odd(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1

    # (3): the path must have reached the root. The length check above
    # already ensures it; this is the RFC's own final check, kept so the
    # algorithm stands on its own.
    if sn != 0:
        raise _tampered("inclusion proof shorter than the tree is high")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` of the ``size`` tree with ``root`` is ``leaf_hash``.

    Raises ``VerificationError("tampered")`` on any failure and
    ``RootMismatchError`` (carrying both roots) if the proof leads elsewhere.
    """
    _check_hash("root", root)
    computed = root_from_inclusion(leaf_hash, index, size, proof)
    if computed != root:
        raise RootMismatchError("inclusion proof", expected=root, computed=computed)


def verify_consistency(
    first: int,
    second: int,
    proof: Sequence[bytes],
    first_root: bytes,
    second_root: bytes,
) -> None:
    """Check that the ``first`` tree is a prefix of the ``second`` tree.

    Requires ``0 < first <= second``. Raises ``VerificationError("tampered")``
    on any failure and ``RootMismatchError`` when a root differs.
    """
    # (1): sizes. Every tree extends the empty one, so a proof from size 0
    # proves nothing; refusing it keeps a caller from trusting a vacuous
    # "consistent" (the probes pin 0 -> 0 as an error too).
    if not 0 < first <= second:
        raise _tampered(f"no consistency proof from size {first} to {second}")

    # (2): equal sizes: nothing to hash, so the roots are compared as given
    # (the probes accept equal roots of any length here).
    if first == second:
        if proof:
            raise _tampered("equal sizes need an empty proof")
        if first_root != second_root:
            raise RootMismatchError(
                "roots of equal sizes", expected=second_root, computed=first_root
            )
        return

    # (3): shape, before any hashing.
    _check_hash("first root", first_root)
    _check_hash("second root", second_root)
    _check_proof(proof, _consistency_length(first, second))

    # (4): RFC 9162 §2.1.4.2, step by step.
    fr, sr, sn = _consistency_roots(first, second, proof, first_root)

    # (5): the path must have reached the second root (already ensured by
    # the length check; the RFC's own final check), then both roots match.
    if sn != 0:
        raise _tampered("consistency proof shorter than the tree is high")
    if fr != first_root:
        raise RootMismatchError("first root", expected=first_root, computed=fr)
    if sr != second_root:
        raise RootMismatchError("second root", expected=second_root, computed=sr)


def _consistency_roots(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes
) -> tuple[bytes, bytes, int]:
    """RFC 9162 §2.1.4.2 steps 2-6: (first root, second root, final sn)."""
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _tampered("consistency proof longer than the tree is high")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            fn, sn = _shift_to_odd(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr, sr, sn


# --- stored complete subtrees -------------------------------------------------


class NodeReader(Protocol):
    """Read access to stored perfect-subtree hashes."""

    def node(self, level: int, index: int) -> bytes:
        """The hash over leaves ``[index * 2**level, (index + 1) * 2**level)``.

        Level 0 is the leaf hash. Raises ``StorageError`` if it is missing.
        """
        ...


class MerkleLog:
    """The log over stored perfect subtrees, with its compact range in memory.

    ``append`` and ``root()`` read nothing; an older root or a proof reads
    O(log n) nodes. Precondition for those reads: the nodes ``append``
    returned for the leaves they cover have been persisted to ``reader``
    (the store writes them in the same batch as the block, so a proof is
    only ever asked of a committed size). Not thread-safe.
    """

    def __init__(self, reader: NodeReader, size: int) -> None:
        """Open the log at ``size`` (``>= 0``) with ``popcount(size)`` reads."""
        if size < 0:
            raise ValueError(f"negative log size {size}")
        self._reader = reader
        self._size = size
        # Invariant: _peaks[j] is the j-th perfect subtree of the binary
        # decomposition of _size, highest level first; one per set bit.
        self._peaks = [
            reader.node(level, (size >> level) - 1) for level in _set_bits(size)
        ]
        self._by_id = self._peak_index()
        self._root: bytes | None = None
        # Hashes of ranges cut short by a tree's right edge, by (start, end):
        # every proof in the left part of a tree of one size needs the same
        # one. Leaves never change once stored, so a kept hash is not stale.
        self._ranges: Kept[tuple[int, int], bytes] = Kept(_RANGES_KEPT)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Append leaves; return every newly completed node (level, index, hash).

        Level 0 (the leaf itself) is included. The caller persists the
        nodes; the log never reads them back for ``append`` or ``root()``.
        Precondition: every hash is 32 bytes (``ValueError``, nothing added).
        """
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ValueError(f"leaf hash is {len(h)} bytes, not {HASH_SIZE}")
        out: list[tuple[int, int, bytes]] = []
        peaks = self._peaks
        n = self._size
        for h in leaf_hashes:
            out.append((0, n, h))
            n += 1
            level = 0
            # Binary increment: each trailing one bit of the old size is a
            # peak that now has a right sibling and merges with it.
            while not (n >> level) & 1:
                h = node_hash(peaks.pop(), h)
                level += 1
                out.append((level, (n >> level) - 1, h))
            peaks.append(h)
        self._size = n
        self._by_id = self._peak_index()
        self._root = None
        return out

    def root(self, size: int | None = None) -> bytes:
        """Root at ``size`` (default: now); ``0 <= size <= self.size``.

        The current root reads nothing; an older one O(log n) nodes.
        """
        if size is None or size == self._size:
            if self._root is None:
                self._root = _fold(self._peaks) if self._peaks else EMPTY_ROOT
            return self._root
        if not 0 <= size < self._size:
            raise ValueError(f"size {size} outside [0, {self._size}]")
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Proof of leaf ``index`` in the tree of ``size`` leaves.

        Precondition: ``0 <= index < size <= self.size`` (``ValueError``).
        """
        if not 0 <= index < size <= self._size:
            raise ValueError(f"no leaf {index} in size {size} of {self._size}")
        return self._path(0, index, size)

    def path_above(self, level: int, index: int, size: int) -> list[bytes]:
        """The part of an inclusion proof above the perfect subtree ``(level,
        index)``: its siblings up to the root of ``size``. A caller that has
        the subtree's leaves hashes the part below itself, with
        ``inclusion_path``, without reading them again.

        Precondition: ``0 < (index + 1) << level <= size <= self.size``
        (``ValueError``).
        """
        if not (level >= 0 and index >= 0 and (index + 1) << level <= size):
            raise ValueError(f"node ({level}, {index}) not inside size {size}")
        if size > self._size:
            raise ValueError(f"size {size} above {self._size}")
        return self._path(level, index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """Proof that the ``first`` tree is a prefix of the ``second``.

        Precondition: ``0 < first <= second <= self.size`` (``ValueError``);
        equal sizes give an empty proof.
        """
        if not 0 < first <= second <= self._size:
            raise ValueError(f"no proof from {first} to {second} of {self._size}")
        if first == second:
            return []
        # The largest perfect subtree ending at `first`: its path up the
        # second tree is the proof, preceded by the node itself unless it
        # is the whole first tree (whose root the verifier already has).
        level = (first & -first).bit_length() - 1
        index = (first - 1) >> level
        head = [self._node(level, index)] if index else []
        return head + self._path(level, index, second)

    def _peak_index(self) -> dict[tuple[int, int], bytes]:
        # Proofs near the tip often need a peak; serving it from memory
        # saves a read.
        n = self._size
        return {
            (level, (n >> level) - 1): h
            for level, h in zip(_set_bits(n), self._peaks, strict=True)
        }

    def _node(self, level: int, index: int) -> bytes:
        h = self._by_id.get((level, index))
        return h if h is not None else self._reader.node(level, index)

    def _range_hash(self, start: int, end: int) -> bytes:
        """Hash of leaves ``[start, end)``; ``start`` aligned to the top piece.

        Precondition: ``start < end`` and ``start`` is a multiple of the
        largest power of two not above ``end - start``.
        """
        bits = _set_bits(end - start)
        if len(bits) == 1:
            return self._node(bits[0], start >> bits[0])
        kept = self._ranges.get((start, end))
        if kept is not None:
            return kept
        pieces: list[bytes] = []
        at = start
        for level in bits:
            pieces.append(self._node(level, at >> level))
            at += 1 << level
        digest = _fold(pieces)
        self._ranges.put((start, end), digest)
        return digest

    def _path(self, level: int, index: int, size: int) -> list[bytes]:
        """Siblings from node ``(level, index)`` up to the root of ``size``.

        Precondition: the node is perfect and inside ``[0, size)``.
        """
        last = (size - 1) >> level
        inner = (index ^ last).bit_length()
        path = [
            self._node(level + k, (index >> k) ^ 1) for k in range(max(inner - 1, 0))
        ]
        if inner:
            # Where the paths to `index` and to the last leaf part, the
            # sibling is on the right and may be cut short by the edge.
            top = level + inner - 1
            start = ((index >> (inner - 1)) ^ 1) << top
            path.append(self._range_hash(start, min(start + (1 << top), size)))
        rest, k = index >> inner, level + inner
        while rest:
            if rest & 1:
                path.append(self._node(k, (rest ^ 1)))
            rest >>= 1
            k += 1
        return path


def _set_bits(n: int) -> list[int]:
    """Positions of the one bits of ``n >= 0``, highest first."""
    return [b for b in range(n.bit_length() - 1, -1, -1) if (n >> b) & 1]


def _fold(peaks: Sequence[bytes]) -> bytes:
    """Root over adjacent perfect subtrees given highest level first."""
    acc = peaks[-1]
    for h in reversed(peaks[:-1]):
        acc = node_hash(h, acc)
    return acc


class DictNodeStore:
    """A dict-backed ``NodeReader`` for tests and simple callers."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        try:
            return self.nodes[(level, index)]
        except KeyError:
            raise StorageError(f"no stored node level={level} index={index}") from None

    def put(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store the output of ``MerkleLog.append``."""
        for level, index, h in nodes:
            self.nodes[(level, index)] = h
