"""State-map hashing, proofs and their verification (docs/statemap.md).

This is the half of the state map an offline verifier needs; the stored
tree that produces proofs is ``ledger.statemap`` (which re-exports all of
this). Nothing here reads storage.

The tree: over 32-byte keys, the subtree under a bit prefix ``p`` is empty
(32 zero bytes) when no key starts with ``p``, the leaf of ``k`` when ``k`` is
the only key starting with ``p`` ("leaf shortcut": a leaf sits at the
shortest prefix where it is alone), and otherwise the node
``H(0x03 || left || right)`` over ``p0`` and ``p1``. A leaf is
``H(0x02 || key || H(value))``. Key bits are read most significant first;
bit ``d`` of the key picks the child at depth ``d + 1`` (0 left, 1 right).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from ledger import codec
from ledger.domains import STATE_LEAF, STATE_NODE
from ledger.errors import EncodingError, RootMismatchError, VerificationError

KEY_SIZE: Final = 32
HASH_SIZE: Final = 32
MAX_DEPTH: Final = 8 * KEY_SIZE
EMPTY_ROOT: Final = bytes(HASH_SIZE)

# The three kinds of proof: the key's own leaf ends its path, an empty
# subtree does, or the leaf of another key does.
PRESENT: Final = "present"
EMPTY: Final = "empty"
OTHER_LEAF: Final = "other_leaf"
PROOF_KINDS: Final = (PRESENT, EMPTY, OTHER_LEAF)

_sha256 = hashlib.sha256


def leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    """``SHA-256(0x02 || key || value_hash)``; both arguments are 32 bytes."""
    return _sha256(STATE_LEAF + key + value_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x03 || left || right)``; both arguments are 32 bytes."""
    return _sha256(STATE_NODE + left + right).digest()


def value_hash(value: bytes) -> bytes:
    """``SHA-256(value)``: what a leaf commits to and a proof may carry."""
    return _sha256(value).digest()


def key_bit(key: bytes, i: int) -> int:
    """Bit ``i`` of ``key``, most significant first (``0 <= i < 256``)."""
    return (key[i >> 3] >> (7 - (i & 7))) & 1


def check_key(key: bytes) -> None:
    """Raise ValueError unless ``key`` is exactly 32 bytes."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"state map keys are exactly {KEY_SIZE} bytes")


def check_root(root: bytes) -> None:
    """Raise ValueError unless ``root`` is exactly 32 bytes."""
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise ValueError(f"a state root is exactly {HASH_SIZE} bytes")


def _malformed(message: str) -> VerificationError:
    return VerificationError("malformed", f"state proof: {message}")


def _bitmap_depth(bitmap: bytes) -> int:
    """1 + the index of the last set bit (0 for an empty bitmap)."""
    if not bitmap:
        return 0
    last = bitmap[-1]
    return 8 * len(bitmap) - ((last & -last).bit_length() - 1)


def pack_path(path: list[bytes]) -> tuple[bytes, tuple[bytes, ...]]:
    """The bitmap and non-empty siblings for siblings at depths 1..len(path).

    Precondition: the last entry of ``path`` is not empty.
    """
    bitmap = bytearray((len(path) + 7) // 8)
    siblings: list[bytes] = []
    for i, digest in enumerate(path):
        if digest != EMPTY_ROOT:
            bitmap[i >> 3] |= 0x80 >> (i & 7)
            siblings.append(digest)
    return bytes(bitmap), tuple(siblings)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateProof:
    """Where a key's path ends, and the siblings along it.

    ``kind``: PRESENT (the key's own leaf), EMPTY (an empty subtree) or
    OTHER_LEAF (the leaf of ``leaf_key``, whose value hashes to
    ``leaf_value_hash``). Bit i of ``bitmap`` (most significant first) says
    the sibling at depth i + 1 is non-empty; ``siblings`` lists those, root
    side first. Invariants, checked on construction (VerificationError
    "malformed"): the bitmap has no trailing zero byte and its last set bit
    is the path's depth, so the deepest sibling is never empty; no listed
    sibling is 32 zero bytes; the leaf fields are set exactly for OTHER_LEAF.
    """

    kind: str
    bitmap: bytes
    siblings: tuple[bytes, ...]
    leaf_key: bytes | None = None
    leaf_value_hash: bytes | None = None

    def __post_init__(self) -> None:
        _check_shape(self)

    @property
    def depth(self) -> int:
        """The depth of the position the path ends at (0 = the root)."""
        return _bitmap_depth(self.bitmap)

    def path(self) -> list[bytes]:
        """The sibling at each depth 1..depth, empty ones as 32 zero bytes."""
        listed = iter(self.siblings)
        return [
            next(listed) if self.bitmap[i >> 3] & (0x80 >> (i & 7)) else EMPTY_ROOT
            for i in range(self.depth)
        ]

    def to_json(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {
            "kind": self.kind,
            "bitmap": self.bitmap.hex(),
            "siblings": [s.hex() for s in self.siblings],
        }
        if self.leaf_key is not None and self.leaf_value_hash is not None:
            out["leaf_key"] = self.leaf_key.hex()
            out["leaf_value_hash"] = self.leaf_value_hash.hex()
        return out

    @classmethod
    def from_json(cls, data: object) -> StateProof:
        """Parse ``to_json`` output; VerificationError("malformed") if bad."""
        if not isinstance(data, dict):
            raise _malformed("expected an object")
        names = set(data)
        if not {"kind", "bitmap", "siblings"} <= names <= {f.name for f in _FIELDS}:
            raise _malformed("unknown or missing fields")
        kind, siblings = data["kind"], data["siblings"]
        if not isinstance(kind, str) or not isinstance(siblings, list):
            raise _malformed("kind is a string and siblings a list")
        return cls(
            kind=kind,
            bitmap=_unhex(data["bitmap"], None),
            siblings=tuple(_unhex(s, HASH_SIZE) for s in siblings),
            leaf_key=_unhex_opt(data, "leaf_key"),
            leaf_value_hash=_unhex_opt(data, "leaf_value_hash"),
        )

    def to_bytes(self) -> bytes:
        """The canonical msgpack map (keys in ``_FIELDS`` order)."""
        siblings: list[codec.Value] = list(self.siblings)
        values: dict[str, codec.Value] = {
            "kind": self.kind,
            "bitmap": self.bitmap,
            "siblings": siblings,
            "leaf_key": self.leaf_key,
            "leaf_value_hash": self.leaf_value_hash,
        }
        return codec.pack(codec.build_record(_FIELDS, values))

    @classmethod
    def from_bytes(cls, data: bytes) -> StateProof:
        """Parse ``to_bytes`` output; VerificationError("malformed") if bad."""
        try:
            rec = codec.check_record(codec.unpack(data), _FIELDS, "state proof")
        except EncodingError as exc:
            raise _malformed(str(exc)) from exc
        siblings = [s for s in codec.get_list(rec, "siblings") if isinstance(s, bytes)]
        if len(siblings) != len(codec.get_list(rec, "siblings")):
            raise _malformed("siblings are bytes")
        return cls(
            kind=codec.get_str(rec, "kind"),
            bitmap=codec.get_bytes(rec, "bitmap"),
            siblings=tuple(siblings),
            leaf_key=codec.get_opt_bytes(rec, "leaf_key"),
            leaf_value_hash=codec.get_opt_bytes(rec, "leaf_value_hash"),
        )


_FIELDS: Final = (
    codec.Field("kind", str, max_len=16),
    codec.Field("bitmap", bytes, max_len=KEY_SIZE),
    codec.Field("siblings", list, max_len=MAX_DEPTH),
    codec.Field("leaf_key", bytes, optional=True, size=KEY_SIZE),
    codec.Field("leaf_value_hash", bytes, optional=True, size=HASH_SIZE),
)


def _unhex(text: object, size: int | None) -> bytes:
    if not isinstance(text, str):
        raise _malformed("expected a hex string")
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise _malformed("expected hex") from exc
    # fromhex also takes upper case and spaces; only one spelling is valid.
    if raw.hex() != text or (size is not None and len(raw) != size):
        raise _malformed(f"expected {size or 'some'} bytes of lowercase hex")
    return raw


def _unhex_opt(data: dict[str, object], name: str) -> bytes | None:
    """An optional 32-byte field: absent is None, but null is malformed."""
    return _unhex(data[name], HASH_SIZE) if name in data else None


def _check_shape(proof: StateProof) -> None:
    if proof.kind not in PROOF_KINDS:
        raise _malformed(f"unknown kind {proof.kind!r}")
    bitmap = proof.bitmap
    if not isinstance(bitmap, bytes) or len(bitmap) > KEY_SIZE:
        raise _malformed("bitmap is at most 32 bytes")
    # A trailing zero byte, or an empty sibling spelled out, would give one
    # path two encodings; an empty deepest sibling would let a leaf be shown
    # below the depth where it is alone. The bitmap rules all three out.
    if bitmap and bitmap[-1] == 0:
        raise _malformed("bitmap has a trailing zero byte")
    siblings = proof.siblings
    if not isinstance(siblings, tuple) or not all(
        isinstance(s, bytes) and len(s) == HASH_SIZE and s != EMPTY_ROOT
        for s in siblings
    ):
        raise _malformed("siblings are non-empty 32-byte hashes")
    if len(siblings) != int.from_bytes(bitmap, "big").bit_count():
        raise _malformed("bitmap and siblings disagree")
    leaf_fields = (proof.leaf_key, proof.leaf_value_hash)
    if proof.kind == OTHER_LEAF:
        if not all(isinstance(f, bytes) and len(f) == HASH_SIZE for f in leaf_fields):
            raise _malformed("other_leaf needs leaf_key and leaf_value_hash")
    elif leaf_fields != (None, None):
        raise _malformed(f"a {proof.kind} proof carries no leaf fields")


def verify_state(
    root: bytes, key: bytes, value: bytes | None, proof: StateProof
) -> None:
    """Check that under ``root``, ``key`` maps to ``value`` (None: is absent).

    Preconditions: ``root`` and ``key`` are 32 bytes (ValueError otherwise);
    ``proof`` is well formed (its constructor checked that). Returns nothing
    when the claim holds; raises VerificationError("tampered"), or its
    subclass RootMismatchError when the path leads to another root.
    """
    check_key(key)
    check_root(root)

    # (1): the claim and the kind agree. Otherwise a proof for a present key
    # could be passed off as absence (hiding an anchor or a revocation), or
    # a proof of absence as presence.
    if (value is not None) != (proof.kind == PRESENT):
        raise VerificationError("tampered", "state proof kind contradicts the claim")

    # (2): the hash where the key's path ends. For PRESENT it is computed from
    # the claimed key and value, never read from the proof, so a proof for one
    # key or value cannot stand in for another.
    if value is not None:
        current = leaf_hash(key, value_hash(value))
    elif proof.kind == EMPTY:
        current = EMPTY_ROOT
    else:
        current = _other_leaf_hash(key, proof)

    # (3): fold up to the root along the key's own bits.
    path = proof.path()
    for depth in range(len(path), 0, -1):
        if key_bit(key, depth - 1):
            current = _sha256(STATE_NODE + path[depth - 1] + current).digest()
        else:
            current = _sha256(STATE_NODE + current + path[depth - 1]).digest()

    # (4): the computed root must be the committed one.
    if current != root:
        raise RootMismatchError("state root", expected=root, computed=current)


def _other_leaf_hash(key: bytes, proof: StateProof) -> bytes:
    """The hash of the other leaf a proof of absence ends at, once checked."""
    leaf_key, vhash = proof.leaf_key, proof.leaf_value_hash
    assert leaf_key is not None and vhash is not None  # by _check_shape

    # The key's own leaf offered as "another" leaf would prove a present key
    # absent while every hash still matches.
    if leaf_key == key:
        raise VerificationError("tampered", "other_leaf is the key's own leaf")

    # A leaf can only sit on its own key's path (leaf relocation). The root
    # comparison catches this too when the tree was built canonically; the
    # explicit check keeps absence from resting on that.
    differ = int.from_bytes(key, "big") ^ int.from_bytes(leaf_key, "big")
    if differ >> (MAX_DEPTH - proof.depth):
        raise VerificationError("tampered", "other_leaf is off the key's path")
    return leaf_hash(leaf_key, vhash)
