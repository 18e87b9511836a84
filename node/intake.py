"""Submission intake: the checks a leader makes before it proposes.

These are the envelope checks of ``ledger.rules`` (known agency and key,
signature, replay, time window, size), and for small submissions the entry
refusals no pending submission can undo, run against the node's current state,
so that a bad submission is refused at once with its reason instead of
costing a Raft round. The rules run again, deterministically, when the block
is applied: intake is a fast path, never the authority.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ledger.errors import EncodingError, RuleViolation, VerificationError
from ledger.rules import TIMESTAMP_WINDOW_MS, StateView, precheck_entries
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    decode_submission,
    verify_submission,
)

# Submissions of at most this many entries have their entries prechecked.
PRECHECK_MAX_ENTRIES: Final = 256


def precheck(
    view: StateView,
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
        raise RuleViolation(
            "unknown_agency", f"agency {sub.agency!r} is not in the trust list"
        ) from None
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
    # Charged after the replay check: every signed submission is public
    # (GET /v1/blocks), so anyone can post an old one again; a replay must
    # not spend the agency's quota. A fresh one is the agency's own.
    if admit is not None:
        admit(sub.agency)
    # A small submission's entries, against the state as it is: what is
    # refused for good (another agency's document, a revoked one revoked
    # again) is refused here, and never becomes a block. A large one is
    # left to the apply, which records any refusal in its block: checking
    # its entries here would hold the event loop for tens of milliseconds.
    if len(sub.entries) <= PRECHECK_MAX_ENTRIES:
        precheck_entries(view, sub)
    return len(sub.entries)
