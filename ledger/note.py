"""Signed notes (C2SP signed-note), the envelope of every checkpoint.

A note is a text ending in a newline, a blank line, then one or more
signature lines ``— <key name> <base64(4-byte key id || signature)>``. The
whole note is UTF-8 without control characters other than newline, and the
text is separated from the signatures by the *last* blank line, so the text
may itself contain blank lines. Each signature covers the text's UTF-8
bytes, its final newline included and the separating blank line excluded.

Verification follows the spec: a signature whose (name, key id) matches no
known key is skipped, whatever it contains; one that matches a known key
must verify or the whole note is rejected; and a quorum counts distinct
keys, never signature lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ledger.errors import VerificationError
from ledger.keys import (
    KEY_ID_SIZE,
    SigningKey,
    Verifier,
    check_key_name,
    decode_base64,
    encode_base64,
    key_id,
)

SIGNATURE_PREFIX: Final = "\u2014 "  # em dash, space
# The spec asks verifiers to bound the signatures they look at (and to take
# at least 16); this bound keeps the work for one hostile note small.
MAX_SIGNATURES: Final = 100

_FORBIDDEN: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")  # controls but newline


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key ``name``, 4-byte ``key_id``, raw ``signature``.

    Invariant (``ValueError`` on construction otherwise): ``name`` is a
    valid key name, ``key_id`` is 4 bytes, ``signature`` is not empty.
    """

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_SIZE:
            raise ValueError(f"a key id is {KEY_ID_SIZE} bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise ValueError("a signature is non-empty bytes")

    def line(self) -> str:
        """The signature line, newline included."""
        blob = encode_base64(self.key_id + self.signature)
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note's ``text`` (final newline included) and its signatures."""

    text: str
    signatures: tuple[Signature, ...]


def check_text(text: str) -> None:
    """Raise ``ValueError`` unless ``text`` can be the text of a signed note.

    It must end in a newline, encode as UTF-8 and hold no control character
    other than newline.
    """
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    if _FORBIDDEN.search(text):
        raise ValueError("note text contains a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("note text is not valid UTF-8") from exc


def sign_text(text: str, name: str, key: SigningKey) -> Signature:
    """``key``'s signature of the note text ``text`` under ``name``.

    Preconditions: ``check_text(text)`` and ``check_key_name(name)`` pass
    (``ValueError`` otherwise).
    """
    check_text(text)
    kid = key_id(name, key.public_key)
    return Signature(name, kid, key.sign(text.encode("utf-8")))


def format_note(text: str, signatures: Sequence[Signature]) -> str:
    """The note text, a blank line, then one line per signature, in order.

    Preconditions: ``check_text(text)`` passes; 1 to ``MAX_SIGNATURES``
    signatures (``ValueError`` otherwise). Nothing is verified here.
    """
    check_text(text)
    if not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise ValueError(f"a note carries 1 to {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(sig.line() for sig in signatures)


def sign_note(text: str, name: str, key: SigningKey) -> str:
    """The full signed note: ``text`` signed by ``key`` under ``name``.

    Preconditions as for ``sign_text``.
    """
    return format_note(text, [sign_text(text, name, key)])


def _malformed(message: str) -> VerificationError:
    return VerificationError("malformed", message)


def _as_text(note: str | bytes) -> str:
    if isinstance(note, bytes):
        try:
            return note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed("note is not valid UTF-8") from exc
    try:
        note.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _malformed("note is not valid UTF-8") from exc
    return note


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise _malformed(f"signature line does not start with an em dash: {line!r}")
    name, space, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise _malformed(f"signature line without a signature: {line!r}")
    try:
        raw = decode_base64(blob)
        return Signature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])
    except ValueError as exc:
        raise _malformed(f"bad signature line {line!r}: {exc}") from exc


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into its text and signature lines.

    Nothing is verified. Raises ``VerificationError("malformed")`` if the
    note is not UTF-8, holds a control character other than newline, has no
    blank line, no signatures or more than ``MAX_SIGNATURES``, or a
    signature line that is not ``— <name> <base64 of 5 or more bytes>``.
    """
    msg = _as_text(note)
    if _FORBIDDEN.search(msg):
        raise _malformed("note contains a control character")
    split = msg.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line before the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block.endswith("\n"):
        raise _malformed("signature block missing or not ended by a newline")
    if block.count("\n") > MAX_SIGNATURES:
        raise _malformed(f"more than {MAX_SIGNATURES} signatures")
    lines = block[:-1].split("\n")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _index_verifiers(
    verifiers: Sequence[Verifier],
) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if known.setdefault(slot, verifier) != verifier:
            raise ValueError(f"two verifiers for {verifier.name}+{slot[1].hex()}")
    return known


def _verify_line(verifier: Verifier, message: bytes, sig: Signature) -> None:
    try:
        verifier.verify(message, sig.signature)
    except VerificationError as exc:
        raise VerificationError(
            "tampered", f"signature by {sig.name}+{sig.key_id.hex()} fails"
        ) from exc


def verify_note(note: str | bytes, verifiers: Sequence[Verifier], quorum: int) -> Note:
    """Verify a note against known keys; return it with verified signatures only.

    Preconditions: ``quorum >= 1``; no two ``verifiers`` share a name and key
    id with different keys (``ValueError`` otherwise). Raises
    ``VerificationError``: ``malformed`` as ``parse_note``; ``tampered`` if a
    signature by a known key fails or fewer than ``quorum`` distinct known
    keys signed. The returned signatures keep one line per key, in order.
    """
    # (1): structure, before any key is looked at.
    parsed = parse_note(note)
    if quorum < 1:
        raise ValueError("quorum must be at least 1: no note is valid unsigned")
    known = _index_verifiers(verifiers)
    message = parsed.text.encode("utf-8")

    # (2): every line naming a known key must verify; the others are ignored,
    # as the spec requires, even if they share a name or an id with a key.
    kept: dict[tuple[str, bytes], Signature] = {}
    signers: set[bytes] = set()
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if kept.get((sig.name, sig.key_id)) != sig:  # identical lines: once
            _verify_line(verifier, message, sig)
        kept.setdefault((sig.name, sig.key_id), sig)
        signers.add(verifier.public_key)

    # (3): quorum. Signature duplication to fake a quorum: the same line
    # repeated, or one key listed under two names, must count once, so
    # count distinct public keys, not lines.
    if len(signers) < quorum:
        raise VerificationError(
            "tampered",
            f"quorum not met: {len(signers)} of {quorum} required distinct keys "
            f"signed ({len(parsed.signatures)} signature lines)",
        )
    return Note(parsed.text, tuple(kept.values()))


def add_signatures(note: str, lines: Sequence[Signature]) -> str:
    """Merge ``lines`` into the signed ``note``, one line per (name, key id).

    A line already in the note wins over a new one for the same key.
    Nothing is verified. Raises ``VerificationError("malformed")`` if
    ``note`` does not parse, ``ValueError`` if the result would carry more
    than ``MAX_SIGNATURES`` signatures.
    """
    parsed = parse_note(note)
    merged: dict[tuple[str, bytes], Signature] = {}
    for sig in (*parsed.signatures, *lines):
        merged.setdefault((sig.name, sig.key_id), sig)
    return format_note(parsed.text, list(merged.values()))
