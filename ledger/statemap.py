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

Applying a batch. ``update`` sorts the keys and applies them in one
descent, so keys that share a path share its reads. A node on the way is
read and decoded once, its changed slots are set, it is folded once, and
its new bytes are its old ones with the changed slots spliced in: exactly
what encoding it afresh gives (the tests pin both to the format).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import struct
from collections.abc import Iterator, Mapping
from typing import Final, Protocol, TypeAlias

from ledger.domains import STATE_LEAF, STATE_NODE
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
# The start of every node id at each nibble depth, and each byte's high
# nibble padded with a zero one: the pieces of _node_id.
_NODE_TAGS: Final = tuple(NODE_PREFIX + bytes((depth,)) for depth in range(64))
_HIGH_NIBBLE: Final = tuple(bytes((byte & 0xF0,)) for byte in range(256))
# A node whose 16 slots are all inner children (every node near the root):
# its slot sizes, its leading bitmaps and its encoded length.
_DENSE: Final = [2] * _FANOUT
_DENSE_BITS: Final = b"\xff\xff\x00\x00"
_DENSE_SIZE: Final = 4 + _FANOUT * HASH_SIZE
_NO_LEVELS: Final = [_ZERO] * 16
_DENSE_SIZES: Final = [0] * 16 + _DENSE
# The heap positions of the slots set in a byte of a slot bitmap: the high
# byte (slots 0..7) and the low one (slots 8..15).
_POSITIONS_HIGH: Final = tuple(
    tuple(16 + k for k in range(8) if byte & (0x80 >> k)) for byte in range(256)
)
_POSITIONS_LOW: Final = tuple(tuple(j + 8 for j in js) for js in _POSITIONS_HIGH)
# The fold's steps, children before parents: (position, left, right).
_STEPS: Final = tuple((i, i + i, i + i + 1) for i in range(15, 0, -1))
# A stored node after its bitmaps is n fields of 32 bytes (0 <= n <= 32).
_FIELDS: Final = [struct.Struct("32s" * n) for n in range(2 * _FANOUT + 1)]
# Up to this many changed slots a node's new bytes are spliced from its old.
_SPLICE_MAX: Final = 4
# Below this many keys a group's end is found by scanning, not bisecting.
_SCAN: Final = 8

# A slot: None (empty), (hash, None) an inner child, (leaf hash, key) a leaf.
_Slot: TypeAlias = "tuple[bytes, bytes | None] | None"
# A decoded node: (hashes, sizes, keys), see "stored nodes" below.
_Node: TypeAlias = "tuple[list[bytes], list[int], list[bytes | None]]"
_Values: TypeAlias = "list[bytes | None]"
_Writes: TypeAlias = "dict[bytes, bytes | None]"


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
    half = depth >> 1
    if depth & 1:
        return _NODE_TAGS[depth] + key[:half] + _HIGH_NIBBLE[key[half]]
    return _NODE_TAGS[depth] + key[:half]


# --- stored nodes ---------------------------------------------------------
#
# A node is decoded into a heap over its four binary levels: index 1 is the
# node itself, the children of i are 2i and 2i+1, slot j is 16 + j (index 0
# is unused). ``sizes`` holds 0 for an empty subtree (its hash is ZERO), 1
# for a single leaf and 2 for two keys or more, so at a slot: empty, a leaf,
# or an inner child (two keys or more below it: the second invariant).
# ``keys[j]`` is the key of slot j's leaf, else None. Decoding fills the
# slots only; ``_fold`` fills the levels above them.


def _empty_node() -> _Node:
    return [_ZERO] * 32, [0] * 32, [None] * _FANOUT


def _decode_node(raw: bytes, nid: bytes) -> _Node:
    """The slots of node ``nid`` stored as ``raw``, not yet folded;
    CorruptStoreError if ``raw`` is not a node's encoding."""
    bits = int.from_bytes(raw[:4], "big")
    inner, leaves = bits >> 16, bits & 0xFFFF
    count, rest = divmod(len(raw) - 4, HASH_SIZE)
    if len(raw) < 4 or inner & leaves or not bits:
        raise CorruptStoreError(f"state node {nid.hex()} is malformed")
    if rest or count != inner.bit_count() + 2 * leaves.bit_count():
        raise CorruptStoreError(f"state node {nid.hex()} has the wrong length")
    # The 32-byte fields in order: a hash per inner child, a key and a
    # hash per leaf.
    fields = _FIELDS[count].unpack_from(raw, 4)
    if inner == 0xFFFF:  # every node near the root
        return _NO_LEVELS + list(fields), _DENSE_SIZES[:], [None] * _FANOUT
    hashes, sizes = [_ZERO] * 32, [0] * 32
    keys: list[bytes | None] = [None] * _FANOUT
    at = 0
    occupied = inner | leaves
    inner <<= 16  # bit 47 - j now says whether heap position j is inner
    for j in _POSITIONS_HIGH[occupied >> 8] + _POSITIONS_LOW[occupied & 0xFF]:
        if inner >> (47 - j) & 1:
            hashes[j] = fields[at]
            sizes[j] = 2
            at += 1
        else:
            keys[j - 16] = fields[at]
            hashes[j] = fields[at + 1]
            sizes[j] = 1
            at += 2
    return hashes, sizes, keys


def _encode_node(node: _Node) -> bytes:
    """``u16 inner bits || u16 leaf bits`` (bit 15 is slot 0), then each
    non-empty slot in order: an inner child as its hash, a leaf as its key
    then its leaf hash."""
    hashes, sizes, keys = node
    if sizes[16:] == _DENSE:
        return _DENSE_BITS + b"".join(hashes[16:])
    inner = leaves = 0
    bit = 0x8000
    parts: list[bytes] = []
    for j in range(16, 32):
        size = sizes[j]
        if size == 2:
            inner |= bit
            parts.append(hashes[j])
        elif size:
            leaves |= bit
            parts.append(keys[j - 16] + hashes[j])  # type: ignore[operator]
        bit >>= 1
    return ((inner << 16) | leaves).to_bytes(4, "big") + b"".join(parts)


def _splice(raw: bytes, node: _Node, changed: list[int]) -> bytes:
    """``_encode_node(node)`` where ``raw`` encodes ``node`` as it was before
    the slots ``changed`` (ascending) changed: the bytes of the others are
    copied over in runs."""
    hashes, sizes, keys = node
    bits = int.from_bytes(raw[:4], "big")
    old_inner, old_leaves = bits >> 16, bits & 0xFFFF
    inner, leaves = old_inner, old_leaves
    parts = [b""]  # the bitmaps go first
    done = 4  # raw[:done] is accounted for
    for nib in changed:
        bit = 0x8000 >> nib
        earlier = 0xFFFF ^ (bit + bit - 1)  # the slots before nib
        start = (
            4
            + 32 * (old_inner & earlier).bit_count()
            + 64 * (old_leaves & earlier).bit_count()
        )
        parts.append(raw[done:start])
        done = start + (32 if old_inner & bit else 64 if old_leaves & bit else 0)
        inner &= ~bit
        leaves &= ~bit
        size = sizes[16 + nib]
        if size == 2:
            inner |= bit
            parts.append(hashes[16 + nib])
        elif size:
            leaves |= bit
            parts.append(keys[nib])  # type: ignore[arg-type]
            parts.append(hashes[16 + nib])
    parts.append(raw[done:])
    parts[0] = ((inner << 16) | leaves).to_bytes(4, "big")
    return b"".join(parts)


def _set_slot(node: _Node, nib: int, slot: _Slot) -> None:
    hashes, sizes, keys = node
    j = 16 + nib
    if slot is None:
        hashes[j], sizes[j], keys[nib] = _ZERO, 0, None
    else:
        hashes[j], keys[nib] = slot
        sizes[j] = 1 if slot[1] is not None else 2


# --- hashing a node -------------------------------------------------------


def _fold(hashes: list[bytes], sizes: list[int]) -> None:
    """Fill the heap's levels above the slots, in place: a half that holds
    a single leaf and nothing else is that leaf's hash."""
    # The loops are the hottest in update(), hence the local names.
    sha, node = _sha256, STATE_NODE
    if 0 not in sizes[16:]:  # no empty slot: every position holds two keys
        for i, left, right in _STEPS:
            hashes[i] = sha(node + hashes[left] + hashes[right]).digest()
        sizes[1:16] = _DENSE[1:]
        return
    for i, left, right in _STEPS:
        lsize, rsize = sizes[left], sizes[right]
        if lsize + rsize > 1:
            hashes[i] = sha(node + hashes[left] + hashes[right]).digest()
            sizes[i] = 2
        elif lsize:
            hashes[i], sizes[i] = hashes[left], 1
        else:
            hashes[i], sizes[i] = hashes[right], rsize


@functools.lru_cache(maxsize=64)
def _hashed_node(raw: bytes, nid: bytes) -> _Node:
    """A stored node decoded and folded. Keyed by its bytes (and id, for the
    error message), so it is only ever what they decode to: the root node,
    which every new StateMap checks, is hashed once. Callers must not
    change what it returns."""
    node = _decode_node(raw, nid)
    _fold(node[0], node[1])
    return node


# Proofs keep the nodes down to this nibble depth, by id and hash: every
# proof's path starts through them, and a kept one is found without a read.
# A tree has at most 273 of them, about 4 KB each decoded; the limit leaves
# room for the versions later blocks replace. (Depth 3 would save a fifth
# of a proof's time at 3*10^5 keys, for 4,369 nodes: some 18 MB.)
_KEPT_DEPTH: Final = 2
_KEPT_NODES: Final = 1024
_kept: Final[Kept[tuple[bytes, bytes], _Node]] = Kept(_KEPT_NODES)


# --- applying a batch -----------------------------------------------------


def _group_end(keys: list[bytes], lo: int, hi: int, depth: int) -> int:
    """The end of the run of ``keys[lo:hi]`` (sorted, sharing ``depth``
    nibbles) that shares nibble ``depth`` with ``keys[lo]``."""
    first = keys[lo]
    at = depth >> 1
    byte = first[at]
    if depth & 1:
        if byte & 0x0F == 0x0F:
            return hi
        bound = byte + 1
    else:
        if byte >= 0xF0:
            return hi
        bound = (byte & 0xF0) + 0x10
    if hi - lo <= _SCAN:
        end = lo + 1
        while end < hi and keys[end][at] < bound:
            end += 1
        return end
    return bisect.bisect_left(keys, first[:at] + bytes((bound,)), lo + 1, hi)


def _runs(
    keys: list[bytes], lo: int, hi: int, depth: int
) -> Iterator[tuple[int, int, int]]:
    """Split ``keys[lo:hi]`` (sorted, sharing ``depth`` nibbles) into runs
    by nibble ``depth``: (nibble, start, end) for each."""
    at, shift = depth >> 1, 0 if depth & 1 else 4
    while lo < hi:
        end = hi if hi - lo == 1 else _group_end(keys, lo, hi, depth)
        yield (keys[lo][at] >> shift) & 0x0F, lo, end
        lo = end


def _merge_leaf(
    slot: _Slot, keys: list[bytes], values: _Values, lo: int, hi: int, writes: _Writes
) -> tuple[list[bytes], list[bytes]]:
    """The keys, sorted, and their leaf hashes under a slot that held at
    most one leaf, once the changes [lo, hi) apply; records the value
    writes."""
    old_key = slot[1] if slot is not None else None
    out_keys: list[bytes] = []
    digests: list[bytes] = []
    for i in range(lo, hi):
        key, value = keys[i], values[i]
        if key == old_key:
            old_key = None  # replaced or deleted: do not keep it below
            if value is None:
                writes[VALUE_PREFIX + key] = None
                continue
        elif value is None:
            continue  # deleting a key that is not there
        # leaf_hash(key, value_hash(value)), inlined: once per changed key
        digest = _sha256(STATE_LEAF + key + _sha256(value).digest()).digest()
        if slot is None or digest != slot[0]:
            writes[VALUE_PREFIX + key] = value
        out_keys.append(key)
        digests.append(digest)
    if old_key is not None and slot is not None:
        at = bisect.bisect_left(out_keys, old_key)
        out_keys.insert(at, old_key)
        digests.insert(at, slot[0])
    return out_keys, digests


def _sorted_changes(items: Mapping[bytes, bytes | None]) -> list[bytes]:
    """The keys of ``items``, sorted, once every key and value is checked."""
    for key, value in items.items():
        check_key(key)
        if value is not None and not isinstance(value, bytes):
            raise TypeError("state map values are bytes (or None to delete)")
    return sorted(items)


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
            stored = _hashed_node(raw, _ROOT_ID)[0][1]
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
        keys = _sorted_changes(items)
        writes: _Writes = {}
        if keys:
            values = [items[key] for key in keys]
            self._before = before
            try:
                self._root = self._update_root(keys, values, writes)
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
            node = self._proof_node(depth, nid, digest)
            nib = _nibble(key, depth)
            end = _walk(node, nib, path, depth == 0)
            if end is not _CONTINUE:
                return self._finish_proof(key, end, path)
            # _walk goes on only into inner children.
            digest = node[0][16 + nib]
            depth += 1

    # -- reading -----------------------------------------------------------

    def _read(self, skey: bytes) -> bytes | None:
        pending = self._pending
        if skey in pending:
            return pending[skey]
        return self._kv.get(skey)

    def _proof_node(self, depth: int, nid: bytes, digest: bytes) -> _Node:
        """Node ``nid`` decoded and folded, given ``digest``, the hash its
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
        node = _decode_node(self._stored(nid), nid)
        _fold(node[0], node[1])
        if node[0][1] != digest:
            raise CorruptStoreError(
                f"state node {nid.hex()} does not hash to what its parent holds"
            )
        if kept:
            _kept.put((nid, digest), node)
        return node

    def _stored(self, nid: bytes) -> bytes:
        pending = self._pending
        raw = pending[nid] if nid in pending else self._kv.get(nid)
        if raw is None:
            raise CorruptStoreError(f"state node {nid.hex()} is missing")
        return raw

    # -- updating ----------------------------------------------------------
    #
    # The changes are two lists, ``keys`` (sorted) and ``values``; a call
    # gets the half-open range [lo, hi) of them below its node.

    def _update_root(
        self, keys: list[bytes], values: _Values, writes: _Writes
    ) -> bytes:
        # The root node is kept even when it holds a single leaf (that is
        # where the leaf's key is found); with no keys left it is deleted.
        raw = self._read(_ROOT_ID)
        if self._before is not None:
            self._before[_ROOT_ID] = raw
        node = _empty_node() if raw is None else _decode_node(raw, _ROOT_ID)
        if not self._apply_node(0, node, keys, values, 0, len(keys), writes):
            return self._root
        hashes, sizes, _ = node
        _fold(hashes, sizes)
        if not sizes[1]:
            writes[_ROOT_ID] = None
            return _ZERO
        writes[_ROOT_ID] = _encode_node(node)
        return hashes[1]

    def _apply_node(
        self,
        depth: int,
        node: _Node,
        keys: list[bytes],
        values: _Values,
        lo: int,
        hi: int,
        writes: _Writes,
    ) -> list[int]:
        """Apply the changes [lo, hi) (all below this node) to its slots;
        return those that changed, ascending. The levels above them are
        left stale."""
        hashes, sizes, leaf_keys = node
        changed: list[int] = []
        at, shift = depth >> 1, 0 if depth & 1 else 4
        while lo < hi:  # _runs, inlined: this loop is the hottest
            nib = (keys[lo][at] >> shift) & 0x0F
            end = hi if hi - lo == 1 else _group_end(keys, lo, hi, depth)
            j = 16 + nib
            size = sizes[j]
            if size == 2:
                new = self._apply_child(
                    depth + 1, hashes[j], keys, values, lo, end, writes
                )
            else:
                old = (hashes[j], leaf_keys[nib]) if size else None
                merged = _merge_leaf(old, keys, values, lo, end, writes)
                new = self._build(depth + 1, *merged, writes)
            if new is None:
                if size:
                    hashes[j], sizes[j], leaf_keys[nib] = _ZERO, 0, None
                    changed.append(nib)
            elif not size or new[0] != hashes[j] or new[1] != leaf_keys[nib]:
                hashes[j], leaf_keys[nib] = new
                sizes[j] = 2 if new[1] is None else 1
                changed.append(nib)
            lo = end
        return changed

    def _apply_child(
        self,
        depth: int,
        digest: bytes,
        keys: list[bytes],
        values: _Values,
        lo: int,
        hi: int,
        writes: _Writes,
    ) -> _Slot:
        """The new slot of the inner child (hash ``digest``) at ``depth``
        on the path of keys [lo, hi), once they apply."""
        nid = _node_id(depth, keys[lo])
        raw = self._stored(nid)
        if self._before is not None:
            self._before[nid] = raw
        node = _decode_node(raw, nid)
        changed = self._apply_node(depth, node, keys, values, lo, hi, writes)
        if not changed:
            return (digest, None)
        hashes, sizes, leaf_keys = node
        _fold(hashes, sizes)
        if sizes[1] == 2:
            if len(changed) <= _SPLICE_MAX:
                writes[nid] = _splice(raw, node, changed)
            else:
                writes[nid] = _encode_node(node)
            return (hashes[1], None)
        # Keep "a stored non-root node has two keys or more": an emptied
        # node goes, and a lone leaf moves up into the parent's slot.
        writes[nid] = None
        if not sizes[1]:
            return None
        return (hashes[1], next(k for k in leaf_keys if k is not None))

    def _build(
        self, depth: int, keys: list[bytes], digests: list[bytes], writes: _Writes
    ) -> _Slot:
        """The slot at nibble depth ``depth`` holding the leaves of ``keys``
        (sorted, one prefix) with their leaf hashes ``digests``.
        Precondition: no node is stored there."""
        if not keys:
            return None
        if len(keys) == 1:
            return (digests[0], keys[0])
        node = _empty_node()
        for nib, start, end in _runs(keys, 0, len(keys), depth):
            slot = self._build(depth + 1, keys[start:end], digests[start:end], writes)
            _set_slot(node, nib, slot)
        nid = _node_id(depth, keys[0])
        if self._before is not None:
            self._before[nid] = None  # the precondition: nothing was there
        _fold(node[0], node[1])
        writes[nid] = _encode_node(node)
        return (node[0][1], None)

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


def _walk(node: _Node, nib: int, path: list[bytes], is_root: bool) -> _Slot:
    """Follow nibble ``nib`` down one folded node, appending the siblings to
    ``path``; return what ends the path (None or a leaf slot), or _CONTINUE.

    The path ends at the first subtree holding at most one key; its sibling
    then holds at least one, as its parent held two or more.
    """
    hashes, sizes, _ = node
    if is_root and sizes[1] <= 1:
        return _lone(node, 0, _FANOUT)
    i = 1
    for shift in range(3, -1, -1):
        i = i + i + ((nib >> shift) & 1)
        path.append(hashes[i ^ 1])
        if sizes[i] <= 1:
            return _lone(node, (i << shift) - 16, ((i + 1) << shift) - 16)
    return _CONTINUE


def _lone(node: _Node, start: int, end: int) -> _Slot:
    """The one non-empty slot in [start, end), or None if all are empty."""
    hashes, sizes, keys = node
    for j in range(start, end):
        if sizes[16 + j]:
            return (hashes[16 + j], keys[j])
    return None
