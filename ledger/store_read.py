"""Reads that need more than one key: the view the rules read, where a leaf
came from, its path in its signed batch, and the state map as of an older
height."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from ledger.errors import CorruptStoreError, EncodingError, StorageError
from ledger.kept import Kept
from ledger.merkle import MerkleLog, NodeReader, TreeLevels, inclusion_path, leaf_hash
from ledger.statemap import VALUE_PREFIX
from ledger.status import StatusRecord
from ledger.store_keys import (
    CHUNK,
    STORED_MIN_LEVEL,
    SUBMISSION,
    Meta,
    RawKV,
    SubRecord,
    decode_undo,
    nonce_key,
    read_leaves,
    sub_key,
    undo_key,
)
from ledger.trust import TrustList

# Decoded submission records kept, by their stored bytes. A record of
# 10,000 leaves with its chunk tree takes about 50 KB.
RECORD_CACHE: Final = 128
# Decoded status records kept, by their stored bytes (under 1 KB each).
STATUS_CACHE: Final = 4096


class NotFoundError(StorageError, LookupError):
    """No such block, leaf, document or proof in this store (an API 404)."""


class NoFinalCheckpointError(StorageError):
    """No checkpoint is final yet, or the store can no longer back one."""


def decode_status(raw: bytes | None) -> StatusRecord | None:
    """A stored state-map value as a status record (None stays None)."""
    if raw is None:
        return None
    try:
        return StatusRecord.decode(raw)
    except EncodingError as exc:
        raise CorruptStoreError(f"stored status record: {exc}") from exc


@functools.lru_cache(maxsize=STATUS_CACHE)
def _status_of(raw: bytes) -> StatusRecord:
    try:
        return StatusRecord.decode(raw)
    except EncodingError as exc:
        raise CorruptStoreError(f"stored status record: {exc}") from exc


def read_status(raw: bytes | None) -> StatusRecord | None:
    """``decode_status`` for readers: a value read again (the same document
    twice in one request, a popular one) is not decoded again. Keyed by the
    bytes themselves, so it can only answer what they decode to; a status
    record is frozen, so sharing one is safe."""
    return None if raw is None else _status_of(raw)


class StoreView:
    """``rules.StateView`` of the store at the tip ``meta``."""

    __slots__ = ("_kv", "_meta", "_trust")

    def __init__(self, kv: RawKV, meta: Meta, trust: TrustList) -> None:
        self._kv = kv
        self._meta = meta
        self._trust = trust

    @property
    def trust(self) -> TrustList:
        return self._trust

    @property
    def height(self) -> int:
        return self._meta.height

    @property
    def tree_size(self) -> int:
        return self._meta.tree_size

    @property
    def last_hash(self) -> bytes:
        return self._meta.last_hash

    def status(self, key: bytes) -> StatusRecord | None:
        return decode_status(self._kv.get(VALUE_PREFIX + key))

    def nonce_seen(self, agency: str, nonce: bytes) -> bool:
        return self._kv.get(nonce_key(agency, nonce)) is not None


@dataclass(frozen=True, slots=True)
class LeafLocation:
    """Where leaf ``index`` came from: its block, submission and position."""

    index: int
    height: int
    submission: int  # position of the submission in the block
    position: int  # position of the leaf in the submission (batch index)
    record: SubRecord


@dataclass(frozen=True, slots=True)
class BatchProof:
    """A leaf's place in its signed submission: what checks the issuer's
    batch signature over it."""

    location: LeafLocation
    batch_size: int
    path: tuple[bytes, ...]  # inclusion path of the leaf in the batch tree


@dataclass(slots=True)
class _Record:
    """A decoded submission record and, once a batch path needed it, the
    tree over its chunk hashes (a pure function of the record)."""

    record: SubRecord
    chunk_tree: TreeLevels | None = None


@functools.lru_cache(maxsize=RECORD_CACHE)
def _record_of(raw: bytes) -> _Record:
    # Keyed by the stored bytes: an entry is only ever what they decode to,
    # so nothing needs invalidating (an EncodingError is not cached).
    return _Record(SubRecord.decode(raw))


def _find_record(kv: RawKV, index: int) -> _Record:
    found = next(kv.scan(SUBMISSION, sub_key(index + 1), reverse=True), None)
    try:
        if found is None:
            raise EncodingError("none stored")
        return _record_of(found[1])
    except EncodingError as exc:
        raise CorruptStoreError(f"submission of leaf {index}: {exc}") from exc


def locate(kv: RawKV, index: int) -> LeafLocation:
    """Block, submission and batch position of a stored leaf ``index``.

    One seek: the submission record with the greatest first leaf <= index.
    """
    return _locate(_find_record(kv, index).record, index)


def _locate(record: SubRecord, index: int) -> LeafLocation:
    if not record.first_leaf <= index < record.first_leaf + record.count:
        raise CorruptStoreError(f"leaf {index} belongs to no submission record")
    return LeafLocation(
        index=index,
        height=record.height,
        submission=record.index,
        position=index - record.first_leaf,
        record=record,
    )


@dataclass(frozen=True, slots=True)
class LeafProof:
    """A leaf with both its proofs: in the log, and in its signed batch."""

    leaf: bytes
    inclusion: list[bytes]  # against the tree size asked for
    batch: BatchProof


# The leaves under one lowest stored log node: an inclusion proof hashes
# them instead of reading a node.
_LOW: Final = 1 << STORED_MIN_LEVEL


def leaf_proof(kv: RawKV, log: MerkleLog, index: int, size: int) -> LeafProof:
    """Leaf ``index``, its inclusion proof in the tree of ``size`` and its
    batch proof, from one read of the leaves both proofs hash: the leaf's
    chunk and the ``_LOW`` leaves around it (the two mostly overlap).

    Precondition: ``0 <= index < size <= log.size`` (``ValueError``).
    """
    if not 0 <= index < size <= log.size:
        raise ValueError(f"no leaf {index} in size {size} of {log.size}")
    cached = _find_record(kv, index)
    loc = _locate(cached.record, index)
    start, end = _chunk_of(loc)
    low = index - index % _LOW
    # The last leaves of a tree may not fill a stored node: the log's own
    # proof handles that edge.
    whole = low + _LOW <= size
    first, last = (min(start, low), max(end, low + _LOW)) if whole else (start, end)
    leaves = read_leaves(kv, first, last)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    if whole:
        below = hashes[low - first : low - first + _LOW]
        inclusion = inclusion_path(below, index - low)
        inclusion += log.path_above(STORED_MIN_LEVEL, index // _LOW, size)
    else:
        inclusion = log.inclusion_proof(index, size)
    return LeafProof(
        leaf=leaves[index - first],
        inclusion=inclusion,
        batch=_batch_proof(cached, loc, start, hashes[start - first : end - first]),
    )


def _chunk_of(loc: LeafLocation) -> tuple[int, int]:
    """The leaves ``[start, end)`` of the batch chunk holding ``loc``."""
    rec = loc.record
    start = rec.first_leaf + loc.position - loc.position % CHUNK
    return start, min(start + CHUNK, rec.first_leaf + rec.count)


def _batch_proof(
    cached: _Record, loc: LeafLocation, start: int, chunk_hashes: list[bytes]
) -> BatchProof:
    """The batch proof of ``loc`` from the hashes of its chunk, which starts
    at leaf ``start``."""
    rec = cached.record
    path = inclusion_path(chunk_hashes, loc.index - start)
    if rec.chunks:
        if cached.chunk_tree is None:
            # Two readers may both build it: the same value, no harm.
            cached.chunk_tree = TreeLevels(rec.chunks)
        path += cached.chunk_tree.path(loc.position // CHUNK)
    return BatchProof(location=loc, batch_size=rec.count, path=tuple(path))


class CachedNodes:
    """``merkle.NodeReader`` that keeps the hashes of the perfect subtrees of
    at least ``2**min_level`` leaves it read: every inclusion proof reads
    one node per level, and the high ones are shared by many proofs.

    A perfect subtree's hash is a function of its leaves, which never
    change once stored, so a kept hash is never stale; a node not stored
    yet raises (StorageError) and is not kept. At most ``limit`` hashes are
    kept: when full, it starts over. ``fit`` lowers ``min_level`` as far
    as the tree's size allows all the kept levels to fit at once.
    """

    __slots__ = ("_floor", "_kept", "_limit", "_min_level", "_reader")

    def __init__(self, reader: NodeReader, *, min_level: int, limit: int) -> None:
        self._reader = reader
        self._floor = self._min_level = min_level
        self._limit = limit
        self._kept: Kept[tuple[int, int], bytes] = Kept(limit)

    @property
    def min_level(self) -> int:
        return self._min_level

    def fit(self, tree_size: int) -> None:
        """Keep the lowest levels whose nodes, in a tree of ``tree_size``
        leaves, fill at most half of ``limit`` (never below the floor given
        at construction). Levels ``l`` and above hold at most ``tree_size >>
        (l - 1)`` nodes; the least ``k = l - 1`` with that at most ``half``
        is the bit length of ``tree_size // (half + 1)``."""
        need = (tree_size // (self._limit // 2 + 1)).bit_length() + 1
        self._min_level = max(self._floor, need)

    def node(self, level: int, index: int) -> bytes:
        if level < self._min_level:
            return self._reader.node(level, index)
        kept = self._kept.get((level, index))
        if kept is None:
            kept = self._reader.node(level, index)
            self._kept.put((level, index), kept)
        return kept


class PastKV:
    """``statemap.KVReader`` as of an older height: undo over the live kv."""

    __slots__ = ("_kv", "_overlay")

    def __init__(self, kv: RawKV, overlay: dict[bytes, bytes | None]) -> None:
        self._kv = kv
        self._overlay = overlay

    def get(self, key: bytes) -> bytes | None:
        if key in self._overlay:
            return self._overlay[key]
        return self._kv.get(key)


def past_overlay(kv: RawKV, height: int, tip: int) -> dict[bytes, bytes | None]:
    """The ``s`` entries blocks ``height + 1 .. tip`` overwrote, as they
    were at ``height``. NoFinalCheckpointError if an undo record is gone."""
    overlay: dict[bytes, bytes | None] = {}
    # Newest first, so the oldest block's "before" value wins.
    for h in range(tip, height, -1):
        raw = kv.get(undo_key(h))
        if raw is None:
            raise NoFinalCheckpointError(f"no undo record of block {h}")
        try:
            overlay.update(decode_undo(raw))
        except EncodingError as exc:
            raise CorruptStoreError(f"undo of block {h}: {exc}", height=h) from exc
    return overlay
