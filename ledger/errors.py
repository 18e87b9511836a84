"""The error hierarchy of the ledger.

One root, ``LedgerError``, and a few families below it. Verifiers never
return ``False``: they return nothing (or a verdict) or raise a
``VerificationError`` whose ``reason`` is one of the statuses a verifier
reports (see ``STATUSES``). Foreign exceptions are translated at the boundary
with ``raise ... from``.
"""

from __future__ import annotations

from typing import Final

# Statuses a verifier reports; the ones that are failures are raised as the
# ``reason`` of a VerificationError, the others are returned in a verdict.
STATUSES: Final = (
    "valid",
    "revoked",
    "superseded",
    "expired",
    "not_yet_valid",
    "not_found",
    "tampered",
    "unknown_issuer",
    "stale",
    "malformed",
)


class LedgerError(Exception):
    """Root of every error this project raises on purpose."""


class EncodingError(LedgerError):
    """Bytes that are not the one canonical encoding of a valid value."""


class VerificationError(LedgerError):
    """A proof, signature or bundle did not verify.

    ``reason`` is one of ``STATUSES`` (``tampered``, ``unknown_issuer``,
    ``stale``, ``malformed`` and, for bundles, ``not_found``).
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in STATUSES:
            raise ValueError(f"unknown verification reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class RootMismatchError(VerificationError):
    """A recomputed root differs from the expected one; carries both."""

    def __init__(self, what: str, *, expected: bytes, computed: bytes) -> None:
        super().__init__(
            "tampered",
            f"{what}: expected {expected.hex()}, computed {computed.hex()}",
        )
        self.expected = expected
        self.computed = computed


class StorageError(LedgerError):
    """The store cannot be opened, read or written."""


class CorruptStoreError(StorageError):
    """The stored chain disagrees with itself; names the first bad block."""

    def __init__(self, message: str, *, height: int | None = None) -> None:
        super().__init__(message)
        self.height = height


class ConsensusError(LedgerError):
    """Raft refused an operation (not the leader, a change in progress...)."""


class NotLeaderError(ConsensusError):
    """Only the leader takes proposals; ``leader`` is the one we know of."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader={leader})")
        self.leader = leader


class CommitTimeoutError(ConsensusError):
    """A proposal was not committed (or made final) in time. Unlike a
    refusal, it may still commit: a client retries with the same bytes."""


class ConfigError(LedgerError):
    """A configuration or trust-list file is missing or wrong."""


class RuleViolation(LedgerError):  # noqa: N818 - a verdict on input, not a fault
    """A submission breaks a ledger rule; ``code`` is its stable reason code."""

    def __init__(self, code: str, message: str, *, entry: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.entry = entry
