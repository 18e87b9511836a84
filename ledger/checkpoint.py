"""Checkpoints (C2SP tlog-checkpoint) with the ledger's extension lines.

The note text of a checkpoint is exactly::

    <origin>
    <tree size>
    <base64 log root>
    state <base64 state-map root>
    block <height> <base64 block hash>
    time <batch time in ms>

The first three lines are the spec's, so generic checkpoint tooling reads
the log part; the three extension lines follow in this order, each once.
Numbers are ASCII decimal without leading zeros and base64 is canonical, so
``parse_checkpoint(body).body() == body`` for every body that parses: one
checkpoint has one text, and one signature over it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ledger.errors import VerificationError
from ledger.keys import SigningKey, Verifier, decode_base64, encode_base64
from ledger.note import Note, Signature, check_text, sign_text, verify_note

HASH_SIZE: Final = 32
UINT64_MAX: Final = 2**64 - 1
LINE_COUNT: Final = 6

_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,19}")  # ASCII only, no sign or _


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A signed statement of the log, the state map and the chain at a height.

    Invariants (``ValueError`` on construction otherwise): ``origin`` is one
    non-empty line of valid note text; ``0 <= size, height, time_ms < 2**64``;
    ``root``, ``state_root`` and ``block_hash`` are 32 bytes. Keyword-only,
    because the three hashes and the three numbers are easy to swap.
    """

    origin: str
    size: int
    root: bytes
    state_root: bytes
    height: int
    block_hash: bytes
    time_ms: int

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ValueError("origin must be one non-empty line")
        check_text(self.origin + "\n")
        for name in ("size", "height", "time_ms"):
            _check_uint(name, getattr(self, name))
        for name in ("root", "state_root", "block_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise ValueError(f"{name} must be {HASH_SIZE} bytes")

    def body(self) -> str:
        """The note text of this checkpoint (ends with a newline)."""
        return (
            f"{self.origin}\n{self.size}\n{encode_base64(self.root)}\n"
            f"state {encode_base64(self.state_root)}\n"
            f"block {self.height} {encode_base64(self.block_hash)}\n"
            f"time {self.time_ms}\n"
        )


def _check_uint(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int")
    if not 0 <= value <= UINT64_MAX:
        raise ValueError(f"{name} {value} is out of range")


def _malformed(message: str) -> VerificationError:
    return VerificationError("malformed", message)


def _parse_uint(what: str, text: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > UINT64_MAX:
        raise _malformed(f"{what} {text[:40]!r} is not a canonical uint64")
    return int(text)


def _parse_hash(what: str, text: str) -> bytes:
    try:
        raw = decode_base64(text)
    except ValueError as exc:
        raise _malformed(f"{what}: {exc}") from exc
    if len(raw) != HASH_SIZE:
        raise _malformed(f"{what} is {len(raw)} bytes, not {HASH_SIZE}")
    return raw


def _extension(line: str, keyword: str) -> str:
    """The value of extension line ``<keyword> <value>``, else malformed."""
    head, space, value = line.partition(" ")
    if head != keyword or not space:
        raise _malformed(f"expected the {keyword!r} line, got {line[:60]!r}")
    return value


def _split_lines(body: str | bytes) -> list[str]:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed("checkpoint is not valid UTF-8") from exc
    if not body.endswith("\n"):
        raise _malformed("checkpoint must end with a newline")
    lines = body[:-1].split("\n", LINE_COUNT)
    if len(lines) != LINE_COUNT:
        raise _malformed(f"checkpoint has {len(lines)} lines, not {LINE_COUNT}")
    return lines


def parse_checkpoint(body: str | bytes) -> Checkpoint:
    """Parse a checkpoint's note text (as produced by ``Checkpoint.body``).

    Raises ``VerificationError("malformed")`` on anything else: missing,
    extra, unknown or reordered lines, non-canonical numbers or base64,
    hashes that are not 32 bytes, control characters, invalid UTF-8.
    """
    origin, size, root, state, block, time = _split_lines(body)
    height, space, block_hash = _extension(block, "block").partition(" ")
    if not space:
        raise _malformed("block line needs a height and a hash")
    try:
        return Checkpoint(
            origin=origin,
            size=_parse_uint("tree size", size),
            root=_parse_hash("root", root),
            state_root=_parse_hash("state root", _extension(state, "state")),
            height=_parse_uint("block height", height),
            block_hash=_parse_hash("block hash", block_hash),
            time_ms=_parse_uint("time", _extension(time, "time")),
        )
    except ValueError as exc:  # the origin line, checked by Checkpoint
        raise _malformed(f"bad checkpoint: {exc}") from exc


def sign_checkpoint(cp: Checkpoint, name: str, key: SigningKey) -> Signature:
    """``key``'s note signature over ``cp.body()`` under key name ``name``.

    Precondition: ``name`` is a valid key name (``ValueError`` otherwise).
    Combine signatures into a note with ``ledger.note.format_note``.
    """
    return sign_text(cp.body(), name, key)


def verify_checkpoint(
    note_text: str | bytes,
    verifiers: Sequence[Verifier],
    quorum: int,
    *,
    origin: str,
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint of the log named ``origin``.

    Preconditions as for ``verify_note``. Returns the checkpoint and the note
    with its verified signatures. Raises ``VerificationError``:
    ``malformed`` for a note or body that does not parse, ``tampered`` for a
    failing known signature, a missed quorum or another origin.
    """
    # (1): signatures first: the text means nothing until a quorum signed it.
    note = verify_note(note_text, verifiers, quorum)

    # (2): the body, held to the one exact form.
    cp = parse_checkpoint(note.text)

    # (3): cross-log replay: the same agency keys may sign checkpoints of
    # another chain (a test network, a second Raft group); that checkpoint
    # must not pass for one of this log.
    if cp.origin != origin:
        raise VerificationError(
            "tampered", f"checkpoint of origin {cp.origin!r}, expected {origin!r}"
        )
    return cp, note
