"""Submissions: a batch of entries from one agency, signed once.

The agency's issuer key signs ``signing_message``: the domain prefix, then
the canonical array ``[origin, agency, nonce, timestamp_ms, batch_root]``.
``batch_root`` is the RFC 9162 root over the leaf hashes of the encoded
entries, so one signature covers every entry and a single document can
later be shown to be in the batch by its inclusion path.

The origin in the message binds a signature to one chain: a batch signed for
a test chain cannot be replayed on the production one. The nonce and the
timestamp bound replays within a chain (the rules check both).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ledger import domains
from ledger.codec import (
    Field,
    check_record,
    get_bytes,
    get_int,
    get_list,
    get_str,
    pack,
    unpack,
)
from ledger.entries import check_agency_id
from ledger.errors import EncodingError, RuleViolation
from ledger.keys import SigningKey, key_id, verify_ed25519
from ledger.merkle import leaf_hash, root_of

MAX_ENTRIES: Final = 10_000
NONCE_SIZE: Final = 16
# One entry is a few hundred bytes at most (a governance entry adding an
# agency is the largest); the bound keeps a hostile batch from hiding
# megabytes inside one leaf.
MAX_ENTRY_SIZE: Final = 64 * 1024

SUBMISSION_FIELDS: Final = (
    Field("agency", str, max_len=40),
    Field("key_id", bytes, size=4),
    Field("nonce", bytes, size=NONCE_SIZE),
    Field("timestamp", int),
    Field("entries", list),
    Field("signature", bytes, size=64),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """A signed batch; ``entries`` are leaf bytes (``encode_entry`` output).

    Invariant: 1 <= len(entries); the upper bound ``MAX_ENTRIES`` is a rule
    (``too_many_entries``), checked when the batch is applied, so an
    oversized batch is recorded as rejected rather than unreadable.
    """

    agency: str
    key_id: bytes  # key_id(agency, issuer public key)
    nonce: bytes
    timestamp_ms: int
    entries: tuple[bytes, ...]
    signature: bytes

    def __post_init__(self) -> None:
        check_agency_id(self.agency)
        if len(self.key_id) != 4 or len(self.nonce) != NONCE_SIZE:
            raise EncodingError("submission: key id or nonce of a bad size")
        if len(self.signature) != 64:
            raise EncodingError("submission: signature of a bad size")
        if not self.entries:
            raise EncodingError("submission: an empty batch")
        for entry in self.entries:
            if not 0 < len(entry) <= MAX_ENTRY_SIZE:
                raise EncodingError("submission: entry of a bad size")


def batch_root(entries: Sequence[bytes]) -> bytes:
    """RFC 9162 root over ``leaf_hash`` of each encoded entry."""
    return root_of([leaf_hash(e) for e in entries])


def signing_message(
    origin: str, agency: str, nonce: bytes, timestamp_ms: int, root: bytes
) -> bytes:
    """The bytes an issuer key signs for one batch."""
    return domains.SUBMISSION + pack([origin, agency, nonce, timestamp_ms, root])


def sign_submission(
    origin: str,
    agency: str,
    entries: Sequence[bytes],
    key: SigningKey,
    *,
    nonce: bytes | None = None,
    timestamp_ms: int | None = None,
) -> Submission:
    """Sign ``entries`` as ``agency``; a fresh random nonce and now by default.

    Refuses batches the ledger would reject for their size (RuleViolation
    ``too_many_entries``) or could not read (EncodingError).
    """
    if len(entries) > MAX_ENTRIES:
        raise RuleViolation("too_many_entries", f"{len(entries)} > {MAX_ENTRIES}")
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if timestamp_ms is None:
        timestamp_ms = time.time_ns() // 1_000_000
    root = batch_root(entries)
    message = signing_message(origin, agency, nonce, timestamp_ms, root)
    return Submission(
        agency=agency,
        key_id=key_id(agency, key.public_key),
        nonce=nonce,
        timestamp_ms=timestamp_ms,
        entries=tuple(entries),
        signature=key.sign(message),
    )


def find_issuer_key(sub: Submission, issuer_keys: Iterable[bytes]) -> bytes:
    """The key among ``issuer_keys`` whose key id the submission names.

    Raises RuleViolation("unknown_key") if none does.
    """
    for key in issuer_keys:
        if key_id(sub.agency, key) == sub.key_id:
            return key
    raise RuleViolation(
        "unknown_key", f"key {sub.key_id.hex()} is not an issuer key of {sub.agency}"
    )


def check_signature(
    sub: Submission, origin: str, public_key: bytes, root: bytes
) -> None:
    """Raise VerificationError("tampered") unless ``sub`` is signed over ``root``.

    Precondition: ``root == batch_root(sub.entries)`` (callers that already
    hold the leaf hashes pass the root to avoid hashing twice).
    """
    message = signing_message(origin, sub.agency, sub.nonce, sub.timestamp_ms, root)
    # The leader checks a submission at intake and again when its block is
    # applied: verify_ed25519 answers the second from the first.
    verify_ed25519(public_key, message, sub.signature)


def verify_submission(
    sub: Submission, origin: str, issuer_keys: Iterable[bytes]
) -> None:
    """Check the batch signature against the agency's active issuer keys.

    Raises RuleViolation("unknown_key") if the key id names none of them and
    VerificationError("tampered") if the signature does not hold.
    """
    key = find_issuer_key(sub, issuer_keys)
    check_signature(sub, origin, key, batch_root(sub.entries))


def encode_submission(sub: Submission) -> bytes:
    return pack(
        {
            "agency": sub.agency,
            "key_id": sub.key_id,
            "nonce": sub.nonce,
            "timestamp": sub.timestamp_ms,
            "entries": list(sub.entries),
            "signature": sub.signature,
        }
    )


def decode_submission(data: bytes) -> Submission:
    """Parse a submission; EncodingError unless canonical and well-formed.

    An empty batch is malformed. More than ``MAX_ENTRIES`` still decodes:
    the rules reject it with its own reason code.
    """
    rec = check_record(unpack(data), SUBMISSION_FIELDS, "submission")
    entries = get_list(rec, "entries")
    raw: list[bytes] = []
    for entry in entries:
        if not isinstance(entry, bytes):
            raise EncodingError("submission: an entry is not bytes")
        raw.append(entry)
    return Submission(
        agency=get_str(rec, "agency"),
        key_id=get_bytes(rec, "key_id"),
        nonce=get_bytes(rec, "nonce"),
        timestamp_ms=get_int(rec, "timestamp"),
        entries=tuple(raw),
        signature=get_bytes(rec, "signature"),
    )
