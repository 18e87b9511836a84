"""Submission intake: the checks a leader makes before it proposes.

These are the envelope checks of ``ledger.rules`` (known agency and key,
signature, replay, time window, size) run against the node's current state,
so that a bad submission is refused at once with its reason instead of
costing a Raft round. The rules run again, deterministically, when the block
is applied: intake is a fast path, never the authority.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ledger.errors import EncodingError, RuleViolation, VerificationError
from ledger.rules import TIMESTAMP_WINDOW_MS
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    decode_submission,
    verify_submission,
)
from ledger.trust import TrustList


class IntakeView(Protocol):
    @property
    def trust(self) -> TrustList: ...

    def nonce_seen(self, agency: str, nonce: bytes) -> bool: ...


def precheck(
    view: IntakeView,
    raw: bytes,
    *,
    now_ms: int,
    admit: Callable[[str], None] | None = None,
    decoded: Submission | None = None,
) -> int:
    """Check one encoded submission; return its number of entries.

    Raises RuleViolation with the same reason codes the rules use.
    ``admit(agency)`` runs once the signature holds and may refuse (a rate
    limit): only an agency's own signed submissions count against it.
    ``decoded``, if given, is ``decode_submission(raw)`` (the caller has
    decoded it already).
    """
    try:
        sub = decode_submission(raw) if decoded is None else decoded
    except EncodingError as exc:
        raise RuleViolation("malformed", str(exc)) from None
    if len(sub.entries) > MAX_ENTRIES:
        raise RuleViolation("too_many_entries", f"{len(sub.entries)} entries")
    trust = view.trust
    try:
        agency = trust.agency(sub.agency)
    except KeyError:
        raise RuleViolation("unknown_agency", sub.agency) from None
    try:
        verify_submission(sub, trust.origin, agency.issuer_keys)
    except VerificationError as exc:
        raise RuleViolation("bad_signature", exc.message) from None
    if abs(sub.timestamp_ms - now_ms) > TIMESTAMP_WINDOW_MS:
        raise RuleViolation(
            "timestamp_window",
            f"timestamp {sub.timestamp_ms} is more than "
            f"{TIMESTAMP_WINDOW_MS // 1000} s from the node's clock",
        )
    if view.nonce_seen(sub.agency, sub.nonce):
        raise RuleViolation("replay", f"nonce {sub.nonce.hex()} already used")
    # Charged last: every signed submission is public (GET /v1/blocks), so
    # anyone can post an old one again; a replay must not spend the
    # agency's quota, only a submission that could be applied.
    if admit is not None:
        admit(sub.agency)
    return len(sub.entries)
