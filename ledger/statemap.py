"""The state map: a sparse Merkle tree over 256-bit keys (docs/statemap.md).

Theory of operation
-------------------
The tree, its hashing and its proofs are defined in ``ledger.stateproof``
(re-exported here): a leaf sits at the shortest bit prefix of its key where
no other key shares it, and its hash ``H(0x02 || key || H(value))`` does not
depend on that depth, so a leaf pushed down or pulled up keeps its hash.

Storage groups four binary levels into one stored node of 16 slots,
path-keyed under ``NODE_PREFIX``; values are stored by key under
``VALUE_PREFIX`` so ``get`` is one read. A slot is empty, a leaf (its key and
leaf hash) or an inner child (its subtree hash; the child node is stored at
the next nibble depth). Invariants of the stored tree:

* the root node (nibble depth 0) exists iff the tree is not empty;
* every other stored node has at least two keys below it, so a single key
  below a slot is always a leaf slot, never a node;
* the leaf slot of key ``k`` is in the node on ``k``'s path whose slot holds
  no other key, and ``VALUE_PREFIX + k`` holds ``k``'s value.

A node's hash is the binary fold of its slots in which a half that holds a
single leaf and nothing else is that leaf's hash; given the second invariant
that is exactly the leaf-shortcut tree.

Pending writes. ``update`` returns the writes for the caller to commit with
its block and keeps them in ``_pending``, so this instance reads its own tree
before the caller commits. Invariant: reading ``_pending`` first and the kv
second gives the stored tree whose root is ``_root``. Once the caller has
committed every batch returned so far (in order) it calls
``mark_committed``; to drop uncommitted updates it opens a new ``StateMap``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Final, Protocol, TypeAlias, TypeVar

from ledger.domains import STATE_NODE
from ledger.errors import CorruptStoreError
from ledger.kept import Kept
from ledger.stateproof import (
    EMPTY,
    EMPTY_ROOT,
    HASH_SIZE,
    KEY_SIZE,
    MAX_DEPTH,
    OTHER_LEAF,
    PRESENT,
    PROOF_KINDS,
    StateProof,
    check_key,
    check_root,
    key_bit,
    leaf_hash,
    node_hash,
    pack_path,
    value_hash,
    verify_state,
)

__all__ = [
    "EMPTY",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "KEY_SIZE",
    "MAX_DEPTH",
    "NODE_PREFIX",
    "OTHER_LEAF",
    "PRESENT",
    "PROOF_KINDS",
    "VALUE_PREFIX",
    "KVReader",
    "StateMap",
    "StateProof",
    "key_bit",
    "leaf_hash",
    "node_hash",
    "value_hash",
    "verify_state",
]

# Storage keys; everything the state map owns starts with b"s".
NODE_PREFIX: Final = b"sn"
VALUE_PREFIX: Final = b"sv"

_ZERO: Final = EMPTY_ROOT
_sha256 = hashlib.sha256
_ROOT_ID: Final = NODE_PREFIX + b"\x00"
_FANOUT: Final = 16

# A slot: None (empty), (hash, None) an inner child, (leaf hash, key) a leaf.
_Slot: TypeAlias = "tuple[bytes, bytes | None] | None"
# A node's binary levels as a heap of (hashes, sizes), see _full_heap.
_Heap: TypeAlias = "tuple[list[bytes], list[int]]"
_Change: TypeAlias = "tuple[bytes, bytes | None]"
_Writes: TypeAlias = "dict[bytes, bytes | None]"
_V = TypeVar("_V")


class KVReader(Protocol):
    """Read access to the node's key-value store (LevelDB, or a dict)."""

    def get(self, key: bytes) -> bytes | None: ...


def _nibble(key: bytes, depth: int) -> int:
    byte = key[depth >> 1]
    return byte & 0x0F if depth & 1 else byte >> 4


def _node_id(depth: int, key: bytes) -> bytes:
    """Storage key of the node at nibble depth ``depth`` (0..63) on ``key``'s
    path: the prefix, the depth, then the depth's nibbles of the key padded
    with a zero nibble to whole bytes."""
    prefix = key[: (depth + 1) >> 1]
    if depth & 1:
        prefix = prefix[:-1] + bytes((prefix[-1] & 0xF0,))
    return NODE_PREFIX + bytes((depth,)) + prefix


# --- stored nodes ---------------------------------------------------------


def _encode_node(slots: Sequence[_Slot]) -> bytes:
    """``u16 inner bits || u16 leaf bits`` (bit 15 is slot 0), then each
    non-empty slot in order: an inner child as its hash, a leaf as its key
    then its leaf hash."""
    inner = leaves = 0
    bit = 0x8000
    parts: list[bytes] = []
    for slot in slots:
        if slot is not None:
            if slot[1] is None:
                inner |= bit
                parts.append(slot[0])
            else:
                leaves |= bit
                parts.append(slot[1] + slot[0])
        bit >>= 1
    return ((inner << 16) | leaves).to_bytes(4, "big") + b"".join(parts)


def _decode_node(raw: bytes, nid: bytes) -> list[_Slot]:
    bits = int.from_bytes(raw[:4], "big")
    inner, leaves = bits >> 16, bits & 0xFFFF
    if len(raw) < 4 or inner & leaves or not bits:
        raise CorruptStoreError(f"state node {nid.hex()} is malformed")
    slots: list[_Slot] = [None] * _FANOUT
    pos = 4
    for i in range(_FANOUT):
        bit = 0x8000 >> i
        if inner & bit:
            slots[i] = (raw[pos : pos + 32], None)
            pos += 32
        elif leaves & bit:
            slots[i] = (raw[pos + 32 : pos + 64], raw[pos : pos + 32])
            pos += 64
    if pos != len(raw):
        raise CorruptStoreError(f"state node {nid.hex()} has the wrong length")
    return slots


# --- hashing a node -------------------------------------------------------
#
# A node's four binary levels form a heap: index 1 is the node itself, the
# children of i are 2i and 2i+1, slot j is 16 + j. ``sizes`` holds 0 for an
# empty subtree, 1 for a single leaf and 2 for two keys or more.


def _full_heap(slots: Sequence[_Slot]) -> _Heap:
    hashes = [_ZERO] * 16 + [_ZERO if s is None else s[0] for s in slots]
    sizes = [0] * 16 + [0 if s is None else 2 if s[1] is None else 1 for s in slots]
    # The loop is the hottest in update(), hence the local names.
    sha, node = _sha256, STATE_NODE
    for i in range(15, 0, -1):
        left = i + i
        lsize, rsize = sizes[left], sizes[left + 1]
        if lsize + rsize > 1:
            hashes[i] = sha(node + hashes[left] + hashes[left + 1]).digest()
            sizes[i] = 2
        elif lsize:
            hashes[i], sizes[i] = hashes[left], 1
        elif rsize:
            hashes[i], sizes[i] = hashes[left + 1], 1
    return hashes, sizes


@functools.lru_cache(maxsize=64)
def _hashed_node(raw: bytes, nid: bytes) -> tuple[list[_Slot], _Heap]:
    """A stored node decoded and hashed. Keyed by its bytes (and id, for the
    error message), so it is only ever what they decode to: the root node,
    which every new StateMap checks, is hashed once. Callers must not
    change what it returns."""
    slots = _decode_node(raw, nid)
    return slots, _full_heap(slots)


# Proofs keep the nodes down to this nibble depth, by id and hash: every
# proof's path starts through them, and a kept one is found without a read.
# A tree has at most 273 of them, about 4 KB each decoded; the limit leaves
# room for the versions later blocks replace. (Depth 3 would save a fifth
# of a proof's time at 3*10^5 keys, for 4,369 nodes: some 18 MB.)
_KEPT_DEPTH: Final = 2
_KEPT_NODES: Final = 1024
_kept: Final[Kept[tuple[bytes, bytes], tuple[list[_Slot], _Heap]]] = Kept(_KEPT_NODES)


# --- applying a batch -----------------------------------------------------


def _groups(
    items: list[tuple[bytes, _V]], depth: int
) -> Iterator[tuple[int, list[tuple[bytes, _V]]]]:
    """Split ``items`` (sorted by key, the key first) by nibble ``depth``."""
    if len(items) == 1:  # most calls, deep in the tree
        yield _nibble(items[0][0], depth), items
        return
    at = depth >> 1
    if depth & 1:
        nibs = [item[0][at] & 0x0F for item in items]
    else:
        nibs = [item[0][at] >> 4 for item in items]
    start, count = 0, len(items)
    while start < count:
        nib = nibs[start]
        end = start + 1
        while end < count and nibs[end] == nib:
            end += 1
        yield nib, items[start:end]
        start = end


def _merge_leaf(
    slot: _Slot, changes: list[_Change], writes: _Writes
) -> list[tuple[bytes, bytes]]:
    """The (key, leaf hash) pairs, sorted, under a slot that held at most one
    leaf, once ``changes`` apply; records the value writes."""
    old_key = slot[1] if slot is not None else None
    out: list[tuple[bytes, bytes]] = []
    for key, value in changes:
        if key == old_key:
            old_key = None  # replaced or deleted: do not keep it below
            if value is None:
                writes[VALUE_PREFIX + key] = None
                continue
        elif value is None:
            continue  # deleting a key that is not there
        digest = leaf_hash(key, value_hash(value))
        if slot is None or digest != slot[0]:
            writes[VALUE_PREFIX + key] = value
        out.append((key, digest))
    if old_key is not None and slot is not None:
        out.append((old_key, slot[0]))
        out.sort()
    return out


def _sorted_changes(items: Mapping[bytes, bytes | None]) -> list[_Change]:
    for key, value in items.items():
        check_key(key)
        if value is not None and not isinstance(value, bytes):
            raise TypeError("state map values are bytes (or None to delete)")
    return sorted(items.items())


class StateMap:
    """The state map over a kv at ``root``; see the module docstring.

    Precondition: the kv holds the tree committed at ``root``; a
    CorruptStoreError is raised if its root node disagrees. ``update`` and
    ``prove`` cost O(log n) reads, ``get`` one. Keys are exactly 32 bytes
    (ValueError otherwise).
    """

    __slots__ = ("_before", "_kv", "_pending", "_root")

    def __init__(self, kv: KVReader, root: bytes) -> None:
        check_root(root)
        self._kv = kv
        # Writes returned by update() and not yet marked committed.
        self._pending: _Writes = {}
        # During update(): where the stored nodes it read go (see update).
        self._before: _Writes | None = None
        self._root = root
        stored = _ZERO
        raw = self._read(_ROOT_ID)
        if raw is not None:
            stored = _hashed_node(raw, _ROOT_ID)[1][0][1]
        if stored != root:
            raise CorruptStoreError(
                f"state root {root.hex()} does not match the stored nodes "
                f"({stored.hex()})"
            )

    @property
    def root(self) -> bytes:
        return self._root

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        check_key(key)
        return self._read(VALUE_PREFIX + key)

    def mark_committed(self) -> None:
        """The caller has written every batch ``update`` returned to the kv."""
        self._pending.clear()

    def update(
        self, items: Mapping[bytes, bytes | None], *, before: _Writes | None = None
    ) -> tuple[bytes, _Writes]:
        """Set (bytes) or delete (None) each key; return the new root and the
        kv writes (None = delete) to commit atomically with the block.

        Every key and value is checked before anything changes (ValueError,
        TypeError). Deleting an absent key is not an error and writes nothing.
        ``before``, if given, receives the stored node bytes this update read
        (as they were before it), so an undo record needs no second read; a
        written key missing from it is one the update did not read.
        """
        changes = _sorted_changes(items)
        writes: _Writes = {}
        if changes:
            self._before = before
            try:
                self._root = self._update_root(changes, writes)
            finally:
                self._before = None
            self._pending.update(writes)
        return self._root, writes

    def prove(self, key: bytes) -> StateProof:
        """A proof of ``key``'s value, or of its absence, under ``root``."""
        check_key(key)
        if self._root == _ZERO:
            return StateProof(kind=EMPTY, bitmap=b"", siblings=())
        path: list[bytes] = []
        depth = 0
        digest = self._root
        while True:
            nid = _node_id(depth, key)
            slots, heap = self._proof_node(depth, nid, digest)
            nib = _nibble(key, depth)
            end = _walk(heap, slots, nib, path, depth == 0)
            if end is not _CONTINUE:
                return self._finish_proof(key, end, path)
            child = slots[nib]
            assert child is not None  # _walk goes on only into inner children
            digest = child[0]
            depth += 1

    # -- reading -----------------------------------------------------------

    def _read(self, skey: bytes) -> bytes | None:
        pending = self._pending
        if skey in pending:
            return pending[skey]
        return self._kv.get(skey)

    def _proof_node(
        self, depth: int, nid: bytes, digest: bytes
    ) -> tuple[list[_Slot], _Heap]:
        """Node ``nid`` decoded and hashed, given ``digest``, the hash its
        parent holds for it (the root's: ``root``).

        A node's hash binds what it holds, and its id where it is, so a
        node kept under both is right for every tree it belongs to: the
        tip's, an older one's, one with pending writes. Callers must not
        change what it returns.
        """
        kept = depth <= _KEPT_DEPTH
        if kept:
            found = _kept.get((nid, digest))
            if found is not None:
                return found
        slots = _decode_node(self._stored(nid), nid)
        node = (slots, _full_heap(slots))
        if node[1][0][1] != digest:
            raise CorruptStoreError(
                f"state node {nid.hex()} does not hash to what its parent holds"
            )
        if kept:
            _kept.put((nid, digest), node)
        return node

    def _stored(self, nid: bytes) -> bytes:
        raw = self._read(nid)
        if raw is None:
            raise CorruptStoreError(f"state node {nid.hex()} is missing")
        return raw

    # -- updating ----------------------------------------------------------

    def _update_root(self, changes: list[_Change], writes: _Writes) -> bytes:
        # The root node is kept even when it holds a single leaf (that is
        # where the leaf's key is found); with no keys left it is deleted.
        raw = self._read(_ROOT_ID)
        if self._before is not None:
            self._before[_ROOT_ID] = raw
        slots: list[_Slot] = [None] * _FANOUT
        if raw is not None:
            slots = _decode_node(raw, _ROOT_ID)
        changed = self._apply_node(0, slots, changes, writes)
        if not changed:
            return self._root
        if all(slot is None for slot in slots):
            writes[_ROOT_ID] = None
            return _ZERO
        writes[_ROOT_ID] = _encode_node(slots)
        return _full_heap(slots)[0][1]

    def _apply_node(
        self, depth: int, slots: list[_Slot], changes: list[_Change], writes: _Writes
    ) -> list[int]:
        """Apply ``changes`` (sorted, all below this node) to ``slots``;
        return the slots that changed."""
        changed: list[int] = []
        for nib, group in _groups(changes, depth):
            old = slots[nib]
            if old is not None and old[1] is None:
                new = self._apply_child(depth + 1, old, group, writes)
            else:
                new = self._build(depth + 1, _merge_leaf(old, group, writes), writes)
            if new != old:
                slots[nib] = new
                changed.append(nib)
        return changed

    def _apply_child(
        self,
        depth: int,
        slot: tuple[bytes, bytes | None],
        changes: list[_Change],
        writes: _Writes,
    ) -> _Slot:
        nid = _node_id(depth, changes[0][0])
        raw = self._stored(nid)
        if self._before is not None:
            self._before[nid] = raw
        slots = _decode_node(raw, nid)
        changed = self._apply_node(depth, slots, changes, writes)
        if not changed:
            return slot
        present = [s for s in slots if s is not None]
        # Keep "a stored non-root node has two keys or more": an emptied
        # node goes, and a lone leaf moves up into the parent's slot.
        if not present or (len(present) == 1 and present[0][1] is not None):
            writes[nid] = None
            return present[0] if present else None
        writes[nid] = _encode_node(slots)
        return (_full_heap(slots)[0][1], None)

    def _build(
        self, depth: int, leaves: list[tuple[bytes, bytes]], writes: _Writes
    ) -> _Slot:
        """The slot at nibble depth ``depth`` holding ``leaves`` ((key, leaf
        hash), sorted, one prefix). Precondition: no node is stored there."""
        if not leaves:
            return None
        if len(leaves) == 1:
            key, digest = leaves[0]
            return (digest, key)
        slots: list[_Slot] = [None] * _FANOUT
        for nib, group in _groups(leaves, depth):
            slots[nib] = self._build(depth + 1, group, writes)
        nid = _node_id(depth, leaves[0][0])
        if self._before is not None:
            self._before[nid] = None  # the precondition: nothing was there
        writes[nid] = _encode_node(slots)
        return (_full_heap(slots)[0][1], None)

    # -- proving -----------------------------------------------------------

    def _finish_proof(self, key: bytes, end: _Slot, path: list[bytes]) -> StateProof:
        bitmap, siblings = pack_path(path)
        if end is None:
            return StateProof(kind=EMPTY, bitmap=bitmap, siblings=siblings)
        digest, leaf_key = end
        if leaf_key == key:
            return StateProof(kind=PRESENT, bitmap=bitmap, siblings=siblings)
        assert leaf_key is not None  # _walk ends only at leaves or empties
        value = self._read(VALUE_PREFIX + leaf_key)
        if value is None:
            raise CorruptStoreError(f"state value of {leaf_key.hex()} is missing")
        vhash = value_hash(value)
        if leaf_hash(leaf_key, vhash) != digest:
            raise CorruptStoreError(f"state value of {leaf_key.hex()} is wrong")
        return StateProof(
            kind=OTHER_LEAF,
            bitmap=bitmap,
            siblings=siblings,
            leaf_key=leaf_key,
            leaf_value_hash=vhash,
        )


# Returned by _walk when the path goes on into the child node.
_CONTINUE: Final = (b"", b"")


def _walk(
    heap: _Heap, slots: list[_Slot], nib: int, path: list[bytes], is_root: bool
) -> _Slot:
    """Follow nibble ``nib`` down one node, appending the siblings to
    ``path``; return what ends the path (None or a leaf slot), or _CONTINUE.

    The path ends at the first subtree holding at most one key; its sibling
    then holds at least one, as its parent held two or more.
    """
    hashes, sizes = heap
    if is_root and sizes[1] <= 1:
        return _lone(slots, 0, _FANOUT)
    i = 1
    for shift in range(3, -1, -1):
        i = i + i + ((nib >> shift) & 1)
        path.append(hashes[i ^ 1])
        if sizes[i] <= 1:
            return _lone(slots, (i << shift) - 16, ((i + 1) << shift) - 16)
    return _CONTINUE


def _lone(slots: list[_Slot], start: int, end: int) -> _Slot:
    """The one non-empty slot in [start, end), or None if all are empty."""
    for slot in slots[start:end]:
        if slot is not None:
            return slot
    return None
