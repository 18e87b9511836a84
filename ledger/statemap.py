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
import hashlib
from collections.abc import Iterator, Mapping
from typing import Final, Protocol, TypeAlias

from ledger.domains import STATE_LEAF
from ledger.errors import CorruptStoreError
from ledger.kept import Kept
from ledger.statenode import (
    FANOUT,
    NODE_PREFIX,
    Node,
    Slot,
    decode_node,
    empty_node,
    encode_node,
    fold,
    hashed_node,
    nibble,
    node_id,
    set_slot,
    splice,
)
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

# Storage keys; everything the state map owns starts with b"s" (nodes
# under NODE_PREFIX, ledger.statenode).
VALUE_PREFIX: Final = b"sv"

_ZERO: Final = EMPTY_ROOT
_sha256 = hashlib.sha256
_ROOT_ID: Final = NODE_PREFIX + b"\x00"
# Up to this many changed slots a node's new bytes are spliced from its old.
_SPLICE_MAX: Final = 4
# Below this many keys a group's end is found by scanning, not bisecting.
_SCAN: Final = 8

_Values: TypeAlias = "list[bytes | None]"
_Writes: TypeAlias = "dict[bytes, bytes | None]"


class KVReader(Protocol):
    """Read access to the node's key-value store (LevelDB, or a dict)."""

    def get(self, key: bytes) -> bytes | None: ...


# Proofs keep the nodes down to this nibble depth, by id and hash: every
# proof's path starts through them, and a kept one is found without a read.
# A tree has at most 273 of them, about 4 KB each decoded; the limit leaves
# room for the versions later blocks replace. (Depth 3 would save a fifth
# of a proof's time at 3*10^5 keys, for 4,369 nodes: some 18 MB.)
_KEPT_DEPTH: Final = 2
_KEPT_NODES: Final = 1024
_kept: Final[Kept[tuple[bytes, bytes], Node]] = Kept(_KEPT_NODES)


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
    slot: Slot, keys: list[bytes], values: _Values, lo: int, hi: int, writes: _Writes
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
            stored = hashed_node(raw, _ROOT_ID)[0][1]
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
            nid = node_id(depth, key)
            node = self._proof_node(depth, nid, digest)
            nib = nibble(key, depth)
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

    def _proof_node(self, depth: int, nid: bytes, digest: bytes) -> Node:
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
        node = decode_node(self._stored(nid), nid)
        fold(node[0], node[1])
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
        node = empty_node() if raw is None else decode_node(raw, _ROOT_ID)
        if not self._apply_node(0, node, keys, values, 0, len(keys), writes):
            return self._root
        hashes, sizes, _ = node
        fold(hashes, sizes)
        if not sizes[1]:
            writes[_ROOT_ID] = None
            return _ZERO
        writes[_ROOT_ID] = encode_node(node)
        return hashes[1]

    def _apply_node(
        self,
        depth: int,
        node: Node,
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
    ) -> Slot:
        """The new slot of the inner child (hash ``digest``) at ``depth``
        on the path of keys [lo, hi), once they apply."""
        nid = node_id(depth, keys[lo])
        raw = self._stored(nid)
        if self._before is not None:
            self._before[nid] = raw
        node = decode_node(raw, nid)
        changed = self._apply_node(depth, node, keys, values, lo, hi, writes)
        if not changed:
            return (digest, None)
        hashes, sizes, leaf_keys = node
        fold(hashes, sizes)
        if sizes[1] == 2:
            if len(changed) <= _SPLICE_MAX:
                writes[nid] = splice(raw, node, changed)
            else:
                writes[nid] = encode_node(node)
            return (hashes[1], None)
        # Keep "a stored non-root node has two keys or more": an emptied
        # node goes, and a lone leaf moves up into the parent's slot.
        writes[nid] = None
        if not sizes[1]:
            return None
        return (hashes[1], next(k for k in leaf_keys if k is not None))

    def _build(
        self, depth: int, keys: list[bytes], digests: list[bytes], writes: _Writes
    ) -> Slot:
        """The slot at nibble depth ``depth`` holding the leaves of ``keys``
        (sorted, one prefix) with their leaf hashes ``digests``.
        Precondition: no node is stored there."""
        if not keys:
            return None
        if len(keys) == 1:
            return (digests[0], keys[0])
        node = empty_node()
        for nib, start, end in _runs(keys, 0, len(keys), depth):
            slot = self._build(depth + 1, keys[start:end], digests[start:end], writes)
            set_slot(node, nib, slot)
        nid = node_id(depth, keys[0])
        if self._before is not None:
            self._before[nid] = None  # the precondition: nothing was there
        fold(node[0], node[1])
        writes[nid] = encode_node(node)
        return (node[0][1], None)

    # -- proving -----------------------------------------------------------

    def _finish_proof(self, key: bytes, end: Slot, path: list[bytes]) -> StateProof:
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


def _walk(node: Node, nib: int, path: list[bytes], is_root: bool) -> Slot:
    """Follow nibble ``nib`` down one folded node, appending the siblings to
    ``path``; return what ends the path (None or a leaf slot), or _CONTINUE.

    The path ends at the first subtree holding at most one key; its sibling
    then holds at least one, as its parent held two or more.
    """
    hashes, sizes, _ = node
    if is_root and sizes[1] <= 1:
        return _lone(node, 0, FANOUT)
    i = 1
    for shift in range(3, -1, -1):
        i = i + i + ((nib >> shift) & 1)
        path.append(hashes[i ^ 1])
        if sizes[i] <= 1:
            return _lone(node, (i << shift) - 16, ((i + 1) << shift) - 16)
    return _CONTINUE


def _lone(node: Node, start: int, end: int) -> Slot:
    """The one non-empty slot in [start, end), or None if all are empty."""
    hashes, sizes, keys = node
    for j in range(start, end):
        if sizes[16 + j]:
            return (hashes[16 + j], keys[j])
    return None
