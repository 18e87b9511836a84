"""Blocks: what one committed batch produced, and the hash that chains them.

A block's header commits to everything: the log and state-map roots after the
block, the previous block's hash (height 1 points at the chain id), and the
``body_hash`` over the submissions, their outcomes and the cosignatures the
leader carried. ``block_hash`` is SHA-256 of the canonical header, so two
nodes that applied the same batch to the same state agree on it byte for
byte.

Invariant of a well-formed block: one outcome per submission, in order.
``decode_block`` checks the shape; ``verify_body`` checks ``body_hash``
(readers of untrusted blocks, like the auditor, call both).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from ledger.codec import (
    Field,
    Value,
    check_record,
    get_bytes,
    get_int,
    get_list,
    get_opt_int,
    get_str,
    pack,
    unpack,
)
from ledger.entries import check_agency_id
from ledger.errors import EncodingError, RootMismatchError

OK: Final = "ok"

HEADER_FIELDS: Final = (
    Field("height", int, low=1),
    Field("prev_hash", bytes, size=32),
    Field("time", int),
    Field("first_leaf", int),
    Field("tree_size", int),
    Field("log_root", bytes, size=32),
    Field("state_root", bytes, size=32),
    Field("body_hash", bytes, size=32),
    Field("trust_version", int),
)
OUTCOME_FIELDS: Final = (
    Field("code", str, max_len=40),
    Field("entry", int, optional=True),
)
COSIGNATURE_FIELDS: Final = (
    Field("height", int, low=1),
    Field("agency", str, max_len=40),
    Field("signature", bytes, size=64),
)
BLOCK_FIELDS: Final = (
    Field("header", dict),
    Field("submissions", list),
    Field("outcomes", list),
    Field("cosignatures", list),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader:
    """The hashed part of a block. Leaves ``[first_leaf, tree_size)`` are its own.

    ``trust_version`` is the trust-list version in force after the block.
    """

    height: int  # >= 1
    prev_hash: bytes  # block_hash of height - 1; the chain id at height 1
    time_ms: int  # the leader's batch time
    first_leaf: int  # tree size before the block; first_leaf <= tree_size
    tree_size: int
    log_root: bytes
    state_root: bytes
    body_hash: bytes
    trust_version: int

    def __post_init__(self) -> None:
        if self.first_leaf > self.tree_size:
            raise EncodingError("block header: first_leaf beyond tree_size")

    def to_value(self) -> dict[str, Value]:
        return {
            "height": self.height,
            "prev_hash": self.prev_hash,
            "time": self.time_ms,
            "first_leaf": self.first_leaf,
            "tree_size": self.tree_size,
            "log_root": self.log_root,
            "state_root": self.state_root,
            "body_hash": self.body_hash,
            "trust_version": self.trust_version,
        }

    @classmethod
    def from_value(cls, value: Value) -> BlockHeader:
        rec = check_record(value, HEADER_FIELDS, "block header")
        return cls(
            height=get_int(rec, "height"),
            prev_hash=get_bytes(rec, "prev_hash"),
            time_ms=get_int(rec, "time"),
            first_leaf=get_int(rec, "first_leaf"),
            tree_size=get_int(rec, "tree_size"),
            log_root=get_bytes(rec, "log_root"),
            state_root=get_bytes(rec, "state_root"),
            body_hash=get_bytes(rec, "body_hash"),
            trust_version=get_int(rec, "trust_version"),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """``code`` is ``"ok"`` or a rule's reason code; ``entry`` the failing entry.

    ``entry`` is None for ``ok`` and for failures of the submission as a whole.
    """

    code: str
    entry: int | None = None

    def to_value(self) -> dict[str, Value]:
        if self.entry is None:
            return {"code": self.code}
        return {"code": self.code, "entry": self.entry}

    @classmethod
    def from_value(cls, value: Value) -> Outcome:
        rec = check_record(value, OUTCOME_FIELDS, "outcome")
        return cls(get_str(rec, "code"), get_opt_int(rec, "entry"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosignature:
    """``agency``'s node-key signature over the checkpoint body of ``height``."""

    height: int
    agency: str
    signature: bytes

    def __post_init__(self) -> None:
        check_agency_id(self.agency, "cosigning agency")
        if len(self.signature) != 64:
            raise EncodingError("cosignature must be 64 bytes")

    def to_value(self) -> dict[str, Value]:
        return {
            "height": self.height,
            "agency": self.agency,
            "signature": self.signature,
        }

    @classmethod
    def from_value(cls, value: Value) -> Cosignature:
        rec = check_record(value, COSIGNATURE_FIELDS, "cosignature")
        return cls(
            height=get_int(rec, "height"),
            agency=get_str(rec, "agency"),
            signature=get_bytes(rec, "signature"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A header and the body it commits to (submissions are encoded bytes)."""

    header: BlockHeader
    submissions: tuple[bytes, ...]
    outcomes: tuple[Outcome, ...]  # one per submission, same order
    cosignatures: tuple[Cosignature, ...] = ()

    def __post_init__(self) -> None:
        if len(self.outcomes) != len(self.submissions):
            raise EncodingError(
                f"block: {len(self.outcomes)} outcomes "
                f"for {len(self.submissions)} submissions"
            )

    @property
    def hash(self) -> bytes:
        return block_hash(self.header)


def block_hash(header: BlockHeader) -> bytes:
    """SHA-256 of the canonical header."""
    return hashlib.sha256(pack(header.to_value())).digest()


def body_hash(
    submissions: tuple[bytes, ...],
    outcomes: tuple[Outcome, ...],
    cosignatures: tuple[Cosignature, ...],
) -> bytes:
    """SHA-256(pack([submissions, outcomes, cosignatures])) (values, in order)."""
    body: Value = [
        list(submissions),
        [o.to_value() for o in outcomes],
        [c.to_value() for c in cosignatures],
    ]
    return hashlib.sha256(pack(body)).digest()


def verify_body(block: Block) -> None:
    """Raise RootMismatchError unless the header's body_hash fits the body."""
    computed = body_hash(block.submissions, block.outcomes, block.cosignatures)
    if computed != block.header.body_hash:
        raise RootMismatchError(
            f"block {block.header.height} body",
            expected=block.header.body_hash,
            computed=computed,
        )


def encode_block(block: Block) -> bytes:
    return pack(
        {
            "header": block.header.to_value(),
            "submissions": list(block.submissions),
            "outcomes": [o.to_value() for o in block.outcomes],
            "cosignatures": [c.to_value() for c in block.cosignatures],
        }
    )


def decode_block(data: bytes) -> Block:
    """Parse a block; EncodingError unless canonical and well-formed.

    Does not check ``body_hash``: call ``verify_body`` on untrusted blocks.
    """
    rec = check_record(unpack(data), BLOCK_FIELDS, "block")
    submissions = get_list(rec, "submissions")
    for sub in submissions:
        if not isinstance(sub, bytes):
            raise EncodingError("block: a submission is not bytes")
    return Block(
        header=BlockHeader.from_value(rec["header"]),
        submissions=tuple(s for s in submissions if isinstance(s, bytes)),
        outcomes=tuple(Outcome.from_value(v) for v in get_list(rec, "outcomes")),
        cosignatures=tuple(
            Cosignature.from_value(v) for v in get_list(rec, "cosignatures")
        ),
    )
