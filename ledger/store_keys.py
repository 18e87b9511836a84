"""The key layout of the LevelDB store and its small internal records.

Every key starts with one byte naming its family; integers are big-endian,
so LevelDB's byte order is numeric order and a range is one scan.

- ``G``: chain id of the genesis trust list (32 bytes).
- ``M``: ``Meta``, the tip; rewritten with every block.
- ``T`` u32 version: a trust list (``TrustList.to_value()``), per version.
- ``B`` u64 height: ``BlockRecord`` (header, compact submissions, outcomes,
  carried cosignatures).
- ``L`` u64 index: leaf bytes (the canonical entry).
- ``N`` u8 level u64 index: perfect-subtree hash, ``level >= STORED_MIN_LEVEL``.
- ``S`` u64 first leaf: ``SubRecord``, an accepted submission.
- ``H`` key32 u64 leaf: history; a non-anchor leaf that changed state ``key``.
- ``C`` u64 height: cosignatures of that height's checkpoint.
- ``O`` agency 0x00 nonce: nonce record, the submission timestamp (u64).
- ``Q`` u64 time agency 0x00 nonce: the same nonce by time, for pruning.
- ``U`` u64 height: undo, the ``s`` entries that block overwrote.
- ``s``...: state-map nodes and values (layout owned by ``statemap.py``).

Space (measured: ~210 bytes per anchored document in batches, ~360 for
one-document submissions, whose signature and nonce cannot be shared).
Log levels 0 to 2 are not stored: a leaf hash is one SHA-256 of the stored
leaf, a level-2 node seven over four leaves, so a proof pays a few leaf
reads and hashes while the disk saves ~40 bytes per leaf (levels 3 and up
cost ~11). An accepted submission's entries are the leaves, so the block
record keeps a pointer (the first leaf) instead of a second copy, and
``SubRecord`` keeps the rest of the signed submission plus the batch-tree
hash of each aligned chunk of ``CHUNK`` leaves: a batch path then reads one
record and at most ``CHUNK`` leaves. Anchors get no history entry (the
status record names the anchor leaf).

Undo records exist because the state map keeps one version of its tree
(nodes are keyed by path) while a bundle proves the state at the latest
*final* checkpoint, which trails the tip by a block or more. ``U`` of height
``h`` holds the previous value (None: absent) of every ``s`` key block ``h``
wrote, so the tree at any height whose later blocks all keep their undo
records can be read back. They are dropped once a later checkpoint is final.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import plyvel

from ledger.block import Block, BlockHeader, Cosignature, Outcome
from ledger.codec import Value, pack, unpack
from ledger.errors import CorruptStoreError, EncodingError, StorageError
from ledger.merkle import leaf_hash, root_of
from ledger.submission import Submission, encode_submission

GENESIS: Final = b"G"
META: Final = b"M"
TRUST: Final = b"T"
BLOCK: Final = b"B"
LEAF: Final = b"L"
NODE: Final = b"N"
SUBMISSION: Final = b"S"
HISTORY: Final = b"H"
COSIG: Final = b"C"
NONCE: Final = b"O"
NONCE_TIME: Final = b"Q"
UNDO: Final = b"U"
STATE: Final = b"s"

# The lowest log level kept on disk; lower nodes are hashed from leaves.
STORED_MIN_LEVEL: Final = 3
# Leaves per stored batch-tree chunk (a power of two).
CHUNK: Final = 32

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


def u64(n: int) -> bytes:
    """Big-endian 8 bytes; ``0 <= n < 2**64``."""
    return _U64.pack(n)


def read_u64(data: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(data, offset)[0])


def trust_key(version: int) -> bytes:
    return TRUST + _U32.pack(version)


def block_key(height: int) -> bytes:
    return BLOCK + u64(height)


def leaf_key(index: int) -> bytes:
    return LEAF + u64(index)


def node_key(level: int, index: int) -> bytes:
    return NODE + bytes([level]) + u64(index)


def sub_key(first_leaf: int) -> bytes:
    return SUBMISSION + u64(first_leaf)


def history_key(state_key: bytes, leaf: int) -> bytes:
    return HISTORY + state_key + u64(leaf)


def cosig_key(height: int) -> bytes:
    return COSIG + u64(height)


def nonce_key(agency: str, nonce: bytes) -> bytes:
    # Agency ids never contain 0x00, so the separator keeps keys unambiguous.
    return NONCE + agency.encode("ascii") + b"\x00" + nonce


def nonce_time_key(timestamp_ms: int, agency: str, nonce: bytes) -> bytes:
    return NONCE_TIME + u64(timestamp_ms) + nonce_key(agency, nonce)[1:]


def nonce_of_time_key(key: bytes) -> bytes:
    """The ``O`` key that a ``Q`` key indexes."""
    return NONCE + key[9:]


def undo_key(height: int) -> bytes:
    return UNDO + u64(height)


def height_of(key: bytes) -> int:
    """The u64 after the one-byte prefix of a ``B``, ``C`` or ``U`` key."""
    return read_u64(key, 1)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (not all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


# --- typed access to LevelDB ---------------------------------------------------


class RawKV(Protocol):
    """What the records below read: a plyvel DB or snapshot, typed."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop``, in key order (or reversed)."""
        ...


class LevelKV:
    """``RawKV`` over a plyvel ``DB`` or a snapshot of one (same methods)."""

    __slots__ = ("_db",)

    def __init__(self, db: plyvel.DB) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(start=start, stop=stop, reverse=reverse) as it:
            yield from it


def read_leaves(kv: RawKV, start: int, end: int) -> list[bytes]:
    """Leaves ``[start, end)``; CorruptStoreError if any is missing."""
    if end == start + 1:  # a get costs less than an iterator
        leaf = kv.get(leaf_key(start))
        if leaf is None:
            raise CorruptStoreError(f"leaf {start} is not stored")
        return [leaf]
    leaves = [v for _, v in kv.scan(leaf_key(start), leaf_key(end))]
    if len(leaves) != end - start:
        raise CorruptStoreError(f"leaves [{start}, {end}) are not all stored")
    return leaves


class StoredNodes:
    """``merkle.NodeReader`` over the store: levels below ``STORED_MIN_LEVEL``
    are hashed from the leaves, the others read from ``N`` keys."""

    __slots__ = ("_kv",)

    def __init__(self, kv: RawKV) -> None:
        self._kv = kv

    def node(self, level: int, index: int) -> bytes:
        if level >= STORED_MIN_LEVEL:
            value = self._kv.get(node_key(level, index))
            if value is None or len(value) != 32:
                raise StorageError(f"no stored node level={level} index={index}")
            return value
        start = index << level
        stop = leaf_key(start + (1 << level))
        leaves = [v for _, v in self._kv.scan(leaf_key(start), stop)]
        if len(leaves) != 1 << level:
            raise StorageError(f"no stored leaves for node level={level} index={index}")
        return root_of([leaf_hash(leaf) for leaf in leaves])


# --- records -------------------------------------------------------------------


def _fields(data: bytes, count: int, what: str) -> list[Value]:
    value = unpack(data)
    if not isinstance(value, list) or len(value) != count:
        raise EncodingError(f"{what}: expected a list of {count}")
    return value


def _int(value: Value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EncodingError(f"{what}: expected a non-negative integer")
    return value


def _bytes(value: Value, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise EncodingError(f"{what}: expected {size or 'some'} bytes")
    return value


def _str(value: Value, what: str) -> str:
    if not isinstance(value, str):
        raise EncodingError(f"{what}: expected a string")
    return value


def _list(value: Value, what: str) -> list[Value]:
    if not isinstance(value, list):
        raise EncodingError(f"{what}: expected a list")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """The tip. Invariant: it describes the block stored at ``height`` (or the
    empty chain at height 0), because both are written in one batch."""

    height: int
    tree_size: int
    last_hash: bytes  # block hash at height; the chain id at height 0
    state_root: bytes
    applied_index: int  # Raft index of the last applied entry
    trust_version: int

    def encode(self) -> bytes:
        return pack(
            [
                self.height,
                self.tree_size,
                self.last_hash,
                self.state_root,
                self.applied_index,
                self.trust_version,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Meta:
        f = _fields(data, 6, "meta")
        return cls(
            height=_int(f[0], "meta.height"),
            tree_size=_int(f[1], "meta.tree_size"),
            last_hash=_bytes(f[2], "meta.last_hash", 32),
            state_root=_bytes(f[3], "meta.state_root", 32),
            applied_index=_int(f[4], "meta.applied_index"),
            trust_version=_int(f[5], "meta.trust_version"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubRecord:
    """An accepted submission without its entries (they are the leaves
    ``[first_leaf, first_leaf + count)``), located in its block.

    ``chunks`` holds the batch-tree hash of each aligned run of ``CHUNK``
    leaves (the last may be shorter); empty when ``count <= CHUNK``.
    """

    height: int
    index: int  # position of the submission in its block
    first_leaf: int
    count: int
    agency: str
    key_id: bytes
    nonce: bytes
    timestamp_ms: int
    signature: bytes
    chunks: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack(
            [
                self.height,
                self.index,
                self.first_leaf,
                self.count,
                self.agency,
                self.key_id,
                self.nonce,
                self.timestamp_ms,
                self.signature,
                b"".join(self.chunks),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> SubRecord:
        f = _fields(data, 10, "submission record")
        joined = _bytes(f[9], "submission.chunks")
        count = _int(f[3], "submission.count")
        if len(joined) != 32 * chunk_count(count):
            raise EncodingError("submission record: wrong chunk hashes")
        return cls(
            height=_int(f[0], "submission.height"),
            index=_int(f[1], "submission.index"),
            first_leaf=_int(f[2], "submission.first_leaf"),
            count=count,
            agency=_str(f[4], "submission.agency"),
            key_id=_bytes(f[5], "submission.key_id", 4),
            nonce=_bytes(f[6], "submission.nonce"),
            timestamp_ms=_int(f[7], "submission.timestamp"),
            signature=_bytes(f[8], "submission.signature", 64),
            chunks=tuple(joined[i : i + 32] for i in range(0, len(joined), 32)),
        )

    def submission(self, entries: Sequence[bytes]) -> Submission:
        """The signed submission, given its entries (the leaves)."""
        return Submission(
            agency=self.agency,
            key_id=self.key_id,
            nonce=self.nonce,
            timestamp_ms=self.timestamp_ms,
            entries=tuple(entries),
            signature=self.signature,
        )


def chunk_count(count: int) -> int:
    """Chunk hashes a submission of ``count`` entries stores."""
    return 0 if count <= CHUNK else -(-count // CHUNK)


def chunk_roots(hashes: Sequence[bytes]) -> tuple[bytes, ...]:
    """The ``SubRecord.chunks`` of a batch with these leaf hashes.

    RFC 9162 splits a tree at the largest power of two below its size, so
    every aligned run of ``CHUNK`` leaves (the last one cut short) is a
    subtree of the batch tree, and the root over the chunk roots is the
    batch root.
    """
    if len(hashes) <= CHUNK:
        return ()
    return tuple(root_of(hashes[i : i + CHUNK]) for i in range(0, len(hashes), CHUNK))


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRecord:
    """A stored block: an accepted submission is its ``S`` key's first leaf."""

    header: BlockHeader
    submissions: tuple[int | bytes, ...]
    outcomes: tuple[Outcome, ...]
    cosignatures: tuple[Cosignature, ...]

    def encode(self) -> bytes:
        return pack(
            [
                self.header.to_value(),
                list(self.submissions),
                [o.to_value() for o in self.outcomes],
                [c.to_value() for c in self.cosignatures],
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> BlockRecord:
        f = _fields(data, 4, "block record")
        subs: list[int | bytes] = []
        for item in _list(f[1], "block.submissions"):
            if not isinstance(item, bytes):
                item = _int(item, "block.submission pointer")
            subs.append(item)
        outcomes = tuple(Outcome.from_value(v) for v in _list(f[2], "outcomes"))
        if len(outcomes) != len(subs):
            raise EncodingError("block record: one outcome per submission")
        return cls(
            header=BlockHeader.from_value(f[0]),
            submissions=tuple(subs),
            outcomes=outcomes,
            cosignatures=tuple(
                Cosignature.from_value(v) for v in _list(f[3], "cosignatures")
            ),
        )


def decode_block_record(
    kv: RawKV, height: int, raw: bytes | None = None
) -> BlockRecord:
    """The record of block ``height`` (``raw`` if already read).

    CorruptStoreError naming the height if it is missing or bad.
    """
    if raw is None:
        raw = kv.get(block_key(height))
    if raw is None:
        raise CorruptStoreError(f"block {height} is missing", height=height)
    try:
        record = BlockRecord.decode(raw)
    except EncodingError as exc:
        raise CorruptStoreError(f"block {height}: {exc}", height=height) from exc
    if record.header.height != height:
        raise CorruptStoreError(
            f"block stored at {height} says height {record.header.height}",
            height=height,
        )
    return record


def decode_sub_record(kv: RawKV, first_leaf: int, height: int) -> SubRecord:
    raw = kv.get(sub_key(first_leaf))
    try:
        if raw is None:
            raise EncodingError("missing")
        return SubRecord.decode(raw)
    except EncodingError as exc:
        raise CorruptStoreError(
            f"submission record at leaf {first_leaf}: {exc}", height=height
        ) from exc


def assemble_block(
    kv: RawKV, record: BlockRecord, leaves: Sequence[bytes] | None = None
) -> Block:
    """The full block; ``leaves`` (the block's own, if already read) saves reads.

    The submissions come back byte for byte: encodings are canonical, so
    re-encoding the stored fields and leaves gives the bytes that were hashed.
    """
    header = record.header
    if leaves is None:
        leaves = read_leaves(kv, header.first_leaf, header.tree_size)
    subs: list[bytes] = []
    for item in record.submissions:
        if isinstance(item, bytes):
            subs.append(item)
            continue
        sub = decode_sub_record(kv, item, header.height)
        offset = item - header.first_leaf
        if offset < 0 or offset + sub.count > len(leaves):
            raise CorruptStoreError(
                f"block {header.height}: submission outside its leaves",
                height=header.height,
            )
        entries = leaves[offset : offset + sub.count]
        try:
            subs.append(encode_submission(sub.submission(entries)))
        except EncodingError as exc:
            raise CorruptStoreError(
                f"block {header.height}: {exc}", height=header.height
            ) from exc
    return Block(
        header=header,
        submissions=tuple(subs),
        outcomes=record.outcomes,
        cosignatures=record.cosignatures,
    )


def encode_undo(entries: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    return pack([[key, old] for key, old in entries])


def decode_undo(data: bytes) -> list[tuple[bytes, bytes | None]]:
    out: list[tuple[bytes, bytes | None]] = []
    for item in _list(unpack(data), "undo"):
        if not isinstance(item, list) or len(item) != 2:
            raise EncodingError("undo: expected [key, old value]")
        key, old = item
        if not isinstance(key, bytes) or not (old is None or isinstance(old, bytes)):
            raise EncodingError("undo: expected bytes")
        out.append((key, old))
    return out


def encode_cosigs(sigs: Sequence[tuple[str, bytes]]) -> bytes:
    """Cosignatures of one checkpoint, sorted by agency, one per agency."""
    return pack([[agency, sig] for agency, sig in sorted(dict(sigs).items())])


def decode_cosigs(data: bytes) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for item in _list(unpack(data), "cosignatures"):
        if not isinstance(item, list) or len(item) != 2:
            raise EncodingError("cosignatures: expected [agency, signature]")
        out.append((_str(item[0], "cosig.agency"), _bytes(item[1], "cosig.sig", 64)))
    return out
