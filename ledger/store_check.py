"""Integrity checks of a stored chain: the cheap one at the tip, the full walk.

What each catches (both raise ``CorruptStoreError`` naming the block):

- ``check_tip`` (every open; block-sized work plus ``TIP_DEPTH`` reads):
  a lost, extra or altered tip block; broken hash links among the last
  ``TIP_DEPTH`` blocks; a tree size that disagrees with the stored leaves;
  any altered byte in the tip block's leaves, its submission records or the
  log nodes it wrote or builds on; a state root without its stored tree.
- ``check_full`` (O(n) reads, O(log n) + one block of memory): all of the
  above for every block (every leaf re-hashed, every stored log node and
  every body hash compared, every hash link followed), plus the state map's
  values hashed back into the state root. What it does not re-derive is the
  state map's inner nodes below the root and each status from the rules;
  that is an audit (replaying every block through ``rules``).
- ``check_chain``: only the hash links of every header (one read a block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from ledger.block import block_hash, verify_body
from ledger.errors import CorruptStoreError, RootMismatchError, StorageError
from ledger.merkle import EMPTY_ROOT, DictNodeStore, MerkleLog, leaf_hash
from ledger.statemap import VALUE_PREFIX, StateMap
from ledger.stateproof import EMPTY_ROOT as STATE_EMPTY
from ledger.stateproof import leaf_hash as state_leaf_hash
from ledger.stateproof import node_hash, value_hash
from ledger.store_keys import (
    BLOCK,
    LEAF,
    STORED_MIN_LEVEL,
    BlockRecord,
    Meta,
    RawKV,
    StoredNodes,
    assemble_block,
    block_key,
    decode_block_record,
    height_of,
    leaf_key,
    node_key,
    prefix_end,
    read_leaves,
)

# How many blocks below the tip ``check_tip`` follows by hash.
TIP_DEPTH: Final = 8


def _corrupt(height: int, message: str) -> CorruptStoreError:
    return CorruptStoreError(f"block {height}: {message}", height=height)


def check_tip(kv: RawKV, *, chain_id: bytes, meta: Meta) -> None:
    """The cheap check ``LedgerStore.open`` always runs (see the module doc)."""
    h = meta.height

    # (1): the empty chain has nothing stored. A store whose meta was lost
    # or rolled back while blocks remain is refused, not silently reused.
    if h == 0:
        if kv.get(block_key(1)) is not None or kv.get(leaf_key(0)) is not None:
            raise _corrupt(1, "stored, but the tip says the chain is empty")
        if (
            meta.tree_size
            or meta.state_root != STATE_EMPTY
            or meta.last_hash != chain_id
        ):
            raise CorruptStoreError("empty chain with a non-empty tip", height=0)
        return

    # (2): the tip block exists, is the one the tip names, and nothing is
    # stored above it (half an apply from a foreign writer).
    record = decode_block_record(kv, h)
    header = record.header
    if block_hash(header) != meta.last_hash:
        raise _corrupt(h, "header does not hash to the stored tip")
    if kv.get(block_key(h + 1)) is not None:
        raise _corrupt(h + 1, "stored above the tip")
    if (header.tree_size, header.state_root) != (meta.tree_size, meta.state_root):
        raise _corrupt(h, "tree size or state root differs from the tip")

    # (3): hash links below the tip (a block swapped for another).
    _check_links(kv, h, chain_id)

    # (4): the leaves end exactly at the tree size.
    if kv.get(leaf_key(header.tree_size)) is not None:
        raise _corrupt(h, f"leaf {header.tree_size} stored beyond the tree size")
    leaves = read_leaves_at(kv, h, header.first_leaf, header.tree_size)

    # (5): the stored compact range before the tip block gives the previous
    # block's log root, and the tip block's leaves over it give its own; the
    # nodes it wrote are the ones stored. Catches one altered byte in any of
    # its leaves or in a node or leaf that proofs at the tip will read.
    prev_root = EMPTY_ROOT
    if h > 1:
        prev_root = decode_block_record(kv, h - 1).header.log_root
    _check_block_log(kv, record, leaves, prev_root)

    # (6): its body (submission records rebuilt from the leaves).
    _check_body(kv, record, leaves)

    # (7): the state map's stored root node hashes to the state root.
    try:
        StateMap(kv, meta.state_root)
    except CorruptStoreError as exc:
        raise _corrupt(h, f"state map: {exc}") from exc


def read_leaves_at(kv: RawKV, height: int, start: int, end: int) -> list[bytes]:
    try:
        return read_leaves(kv, start, end)
    except CorruptStoreError as exc:
        raise _corrupt(height, str(exc)) from exc


def _check_links(kv: RawKV, tip: int, chain_id: bytes) -> None:
    low = max(1, tip - TIP_DEPTH)
    above = decode_block_record(kv, tip).header
    for h in range(tip - 1, low - 1, -1):
        header = decode_block_record(kv, h).header
        if above.prev_hash != block_hash(header):
            raise _corrupt(h + 1, f"prev_hash does not match block {h}")
        if above.first_leaf != header.tree_size:
            raise _corrupt(h + 1, f"first leaf does not follow block {h}")
        above = header
    if low == 1 and above.prev_hash != chain_id:
        raise _corrupt(1, "prev_hash is not the chain id")
    if low == 1 and above.first_leaf != 0:
        raise _corrupt(1, "first leaf is not 0")


def _check_block_log(
    kv: RawKV, record: BlockRecord, leaves: list[bytes], prev_root: bytes
) -> None:
    header = record.header
    before = header.height - 1
    try:
        log = MerkleLog(StoredNodes(kv), header.first_leaf)
    except StorageError as exc:
        raise _corrupt(before, f"log nodes or leaves: {exc}") from exc
    if log.root() != prev_root:
        raise _corrupt(before, "stored log nodes or leaves do not give its log root")
    nodes = log.append([leaf_hash(leaf) for leaf in leaves])
    if log.root() != header.log_root:
        raise _corrupt(header.height, "stored leaves do not hash to its log root")
    _compare_nodes(kv, header.height, nodes)


def _compare_nodes(kv: RawKV, height: int, nodes: list[tuple[int, int, bytes]]) -> None:
    for level, index, digest in nodes:
        if level >= STORED_MIN_LEVEL and kv.get(node_key(level, index)) != digest:
            raise _corrupt(height, f"stored log node ({level}, {index}) is wrong")


def _check_body(kv: RawKV, record: BlockRecord, leaves: list[bytes]) -> None:
    try:
        verify_body(assemble_block(kv, record, leaves))
    except RootMismatchError as exc:
        raise _corrupt(record.header.height, f"body: {exc}") from exc


def _records(kv: RawKV) -> Iterator[BlockRecord]:
    """Every block record from height 1 up; a gap names the missing height."""
    expected = 1
    for key, raw in kv.scan(BLOCK, prefix_end(BLOCK)):
        height = height_of(key)
        if height != expected:
            raise _corrupt(expected, "missing")
        yield decode_block_record(kv, height, raw)
        expected += 1


def check_chain(kv: RawKV, *, chain_id: bytes, meta: Meta) -> None:
    """Every header links to the one before it, up to the stored tip."""
    prev, height = chain_id, 0
    for record in _records(kv):
        header = record.header
        if header.prev_hash != prev:
            raise _corrupt(header.height, "prev_hash does not match")
        prev, height = block_hash(header), header.height
    if height != meta.height or prev != meta.last_hash:
        raise _corrupt(max(height, meta.height), "blocks end elsewhere than the tip")


def check_full(
    kv: RawKV,
    *,
    chain_id: bytes,
    meta: Meta,
    pace: Callable[[int], None] | None = None,
) -> None:
    """Walk everything (see the module doc); O(log n) + one block of memory.

    ``pace``, if given, is called after each block and every
    ``PACE_VALUES`` state values (a background walk sleeps there, to leave
    the node its processor, and may raise there to stop).
    """
    log = MerkleLog(DictNodeStore(), 0)  # appends never read
    prev, height = chain_id, 0
    for record in _records(kv):
        if pace is not None and height:
            pace(height)
        header = record.header
        height = header.height

        # (1): chain: the hash link and contiguous leaf ranges.
        if header.prev_hash != prev or header.first_leaf != log.size:
            raise _corrupt(height, "does not follow the block before it")

        # (2): every leaf re-hashed into the log gives the block's root,
        # and the nodes stored for proofs are the recomputed ones.
        leaves = read_leaves_at(kv, height, header.first_leaf, header.tree_size)
        nodes = log.append([leaf_hash(leaf) for leaf in leaves])
        if log.root() != header.log_root:
            raise _corrupt(height, "stored leaves do not hash to its log root")
        _compare_nodes(kv, height, nodes)

        # (3): the body hash, over submissions rebuilt from the leaves.
        _check_body(kv, record, leaves)
        prev = block_hash(header)

    # (4): the tip is the last block, and no leaf lies beyond it.
    if (height, prev, log.size) != (meta.height, meta.last_hash, meta.tree_size):
        raise _corrupt(max(height, meta.height), "blocks end elsewhere than the tip")
    if next(kv.scan(leaf_key(log.size), prefix_end(LEAF)), None) is not None:
        raise _corrupt(height, "leaves stored beyond the tree size")

    # (5): every stored status hashes into the state root.
    if state_root_of_values(kv, pace=pace) != meta.state_root:
        raise _corrupt(height, "state values do not hash to the state root")


# --- the state root from the stored values -----------------------------------


class _Peek:
    """Stored (key as an int, leaf hash), in key order, with look-ahead."""

    __slots__ = ("_buf", "_items")

    def __init__(self, items: Iterator[tuple[int, bytes]]) -> None:
        self._items = items
        self._buf: list[tuple[int, bytes]] = []

    def peek(self, i: int) -> tuple[int, bytes] | None:
        buf = self._buf
        while len(buf) <= i:
            item = next(self._items, None)
            if item is None:
                return None
            buf.append(item)
        return buf[i]

    def pop(self) -> bytes:
        return self._buf.pop(0)[1]


def _subtree(stream: _Peek, depth: int) -> bytes:
    """Hash of the subtree at the next key's ``depth``-bit prefix; consumes
    exactly the keys under it (the leaf-shortcut tree of ``statemap``).

    One level per call: how deep the keys under a prefix reach is only
    known once the last of them is seen. Recursion is at most 256 deep.
    """
    first, second = stream.peek(0), stream.peek(1)
    assert first is not None
    shift = 256 - depth  # keys with equal bits above `shift` share the prefix
    if second is None or (first[0] ^ second[0]) >> shift:
        return stream.pop()
    if (first[0] >> (shift - 1)) & 1:
        return node_hash(STATE_EMPTY, _subtree(stream, depth + 1))
    left = _subtree(stream, depth + 1)
    after = stream.peek(0)
    if after is None or (first[0] ^ after[0]) >> shift:
        return node_hash(left, STATE_EMPTY)
    return node_hash(left, _subtree(stream, depth + 1))


# A background walk's ``pace`` is called after this many state values too.
PACE_VALUES: Final = 10_000


def state_root_of_values(
    kv: RawKV, *, pace: Callable[[int], None] | None = None
) -> bytes:
    """The state root over every stored value, streamed in key order
    (``pace``, if given, is called with the count after every
    ``PACE_VALUES`` values)."""
    start = len(VALUE_PREFIX)

    def values() -> Iterator[tuple[bytes, bytes]]:
        for count, item in enumerate(
            kv.scan(VALUE_PREFIX, prefix_end(VALUE_PREFIX)), start=1
        ):
            yield item
            if pace is not None and count % PACE_VALUES == 0:
                pace(count)

    items = (
        (
            int.from_bytes(skey[start:], "big"),
            state_leaf_hash(skey[start:], value_hash(value)),
        )
        for skey, value in values()
    )
    stream = _Peek(items)
    if stream.peek(0) is None:
        return STATE_EMPTY
    return _subtree(stream, 0)
