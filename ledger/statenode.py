"""The stored nodes of the state map (``ledger.statemap``): their
encoding, and the hashing of one node.

A stored node groups four binary levels of the tree into 16 slots; it is
stored under ``node_id`` (path-keyed under ``NODE_PREFIX``). Decoded, it is
a heap over those levels (see "stored nodes" below), which ``fold`` fills
from the slots up. Nothing here reads or writes storage.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from typing import Final, TypeAlias

from ledger.domains import STATE_NODE
from ledger.errors import CorruptStoreError
from ledger.stateproof import EMPTY_ROOT, HASH_SIZE

NODE_PREFIX: Final = b"sn"

_ZERO: Final = EMPTY_ROOT
_sha256 = hashlib.sha256

# A slot: None (empty), (hash, None) an inner child, (leaf hash, key) a leaf.
Slot: TypeAlias = "tuple[bytes, bytes | None] | None"
# A decoded node: (hashes, sizes, keys), see "stored nodes" below.
Node: TypeAlias = "tuple[list[bytes], list[int], list[bytes | None]]"

FANOUT: Final = 16
# The start of every node id at each nibble depth, and each byte's high
# nibble padded with a zero one: the pieces of node_id.
_NODE_TAGS: Final = tuple(NODE_PREFIX + bytes((depth,)) for depth in range(64))
_HIGH_NIBBLE: Final = tuple(bytes((byte & 0xF0,)) for byte in range(256))
# A node whose 16 slots are all inner children (every node near the root):
# its slot sizes, its leading bitmaps and its encoded length.
_DENSE: Final = [2] * FANOUT
_DENSE_BITS: Final = b"\xff\xff\x00\x00"
_DENSE_SIZE: Final = 4 + FANOUT * HASH_SIZE
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
_FIELDS: Final = [struct.Struct("32s" * n) for n in range(2 * FANOUT + 1)]


def nibble(key: bytes, depth: int) -> int:
    byte = key[depth >> 1]
    return byte & 0x0F if depth & 1 else byte >> 4


def node_id(depth: int, key: bytes) -> bytes:
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
# slots only; ``fold`` fills the levels above them.


def empty_node() -> Node:
    return [_ZERO] * 32, [0] * 32, [None] * FANOUT


def decode_node(raw: bytes, nid: bytes) -> Node:
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
        return _NO_LEVELS + list(fields), _DENSE_SIZES[:], [None] * FANOUT
    hashes, sizes = [_ZERO] * 32, [0] * 32
    keys: list[bytes | None] = [None] * FANOUT
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


def encode_node(node: Node) -> bytes:
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


def splice(raw: bytes, node: Node, changed: list[int]) -> bytes:
    """``encode_node(node)`` where ``raw`` encodes ``node`` as it was before
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


def set_slot(node: Node, nib: int, slot: Slot) -> None:
    hashes, sizes, keys = node
    j = 16 + nib
    if slot is None:
        hashes[j], sizes[j], keys[nib] = _ZERO, 0, None
    else:
        hashes[j], keys[nib] = slot
        sizes[j] = 1 if slot[1] is not None else 2


# --- hashing a node -------------------------------------------------------


def fold(hashes: list[bytes], sizes: list[int]) -> None:
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
def hashed_node(raw: bytes, nid: bytes) -> Node:
    """A stored node decoded and folded. Keyed by its bytes (and id, for the
    error message), so it is only ever what they decode to: the root node,
    which every new StateMap checks, is hashed once. Callers must not
    change what it returns."""
    node = decode_node(raw, nid)
    fold(node[0], node[1])
    return node
