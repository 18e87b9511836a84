"""What one node sends another over the peer transport.

The transport moves opaque frames; the first byte says what a frame holds:
a Raft message, a checkpoint cosignature (after applying a block every
node signs its checkpoint and tells its peers), or a follower's notice to
the leader that it lost its log (see ``Node._clamp_heartbeat``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consensus.messages import Message, decode_message, encode_message
from ledger.block import Cosignature
from ledger.codec import pack, unpack
from ledger.errors import EncodingError

RAFT: Final = b"R"
COSIG: Final = b"C"
LOST: Final = b"L"


@dataclass(frozen=True, slots=True)
class CosigFrame:
    cosignatures: tuple[Cosignature, ...]


@dataclass(frozen=True, slots=True)
class LostFrame:
    """The sender's Raft log ends at ``last``, below what the leader thinks."""

    last: int


def raft_frame(msg: Message) -> bytes:
    return RAFT + encode_message(msg)


def cosig_frame(sigs: tuple[Cosignature, ...]) -> bytes:
    return COSIG + pack([c.to_value() for c in sigs])


def lost_frame(last: int) -> bytes:
    return LOST + pack(last)


def decode_frame(frame: bytes) -> Message | CosigFrame | LostFrame:
    """Raises EncodingError for anything but a well-formed frame."""
    tag, body = frame[:1], frame[1:]
    if tag == RAFT:
        return decode_message(body)
    if tag == COSIG:
        value = unpack(body)
        if not isinstance(value, list) or not 0 < len(value) <= 64:
            raise EncodingError("cosignature frame: expected 1 to 64 items")
        return CosigFrame(tuple(Cosignature.from_value(v) for v in value))
    if tag == LOST:
        last = unpack(body)
        if not isinstance(last, int) or isinstance(last, bool) or last < 0:
            raise EncodingError("lost-log frame: expected an index")
        return LostFrame(last)
    raise EncodingError(f"unknown frame tag {tag!r}")
