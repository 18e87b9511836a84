"""Finality: which stored checkpoint a quorum of agencies has signed.

A checkpoint is final when distinct agencies of the *current* trust list,
more than half of them, signed its body with their node keys. Only final
checkpoints back a proof bundle, so the store keeps the latest one and its
assembled note cached, and looks again only at heights that received new
cosignatures (all heights once the trust list changes: a rotated node key
or a removed agency can take finality away from an old checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ledger.block import Cosignature
from ledger.checkpoint import Checkpoint
from ledger.errors import VerificationError
from ledger.keys import key_id
from ledger.note import Signature, format_note
from ledger.store_keys import COSIG, RawKV, height_of, prefix_end
from ledger.store_write import check_cosignature, read_cosignatures
from ledger.trust import TrustList


def final_note(kv: RawKV, trust: TrustList, cp: Checkpoint) -> str | None:
    """The note of ``cp`` with every stored signature that verifies under
    ``trust``, if they reach its quorum; else None."""
    message = cp.body().encode()
    lines: list[Signature] = []
    for agency, sig in read_cosignatures(kv, cp.height):
        cosig = Cosignature(height=cp.height, agency=agency, signature=sig)
        try:
            check_cosignature(trust, message, cosig)
        except VerificationError:
            continue
        node = trust.agency(agency).node_key
        lines.append(Signature(agency, key_id(agency, node), sig))
    if len(lines) < trust.quorum:
        return None
    return format_note(cp.body(), lines)


class Finality:
    """The cached latest final checkpoint. Not thread-safe: the store calls
    it under its writer lock."""

    def __init__(self) -> None:
        self._final: tuple[Checkpoint, str] | None = None
        self._trust_version: int | None = None  # of the last full search
        self._dirty: set[int] = set()  # heights with new cosignatures since

    def touched(self, heights: Iterable[int]) -> None:
        """New cosignatures were stored for ``heights``."""
        self._dirty.update(heights)

    def reset(self) -> None:
        self._final, self._trust_version = None, None
        self._dirty.clear()

    def latest(
        self,
        kv: RawKV,
        trust: TrustList,
        checkpoint: Callable[[int], Checkpoint],
    ) -> tuple[tuple[Checkpoint, str] | None, bool]:
        """(the latest final checkpoint and its note, whether it changed)."""
        heights: Iterable[int]
        if self._trust_version != trust.version:
            self._final, self._trust_version = None, trust.version
            # Lazily, from the top: the latest final checkpoint is almost
            # always among the last few, and this runs under the writer
            # lock, so it must not read every cosignature of a long chain.
            heights = _cosigned_heights(kv)
        else:
            heights = sorted(self._dirty, reverse=True)
        self._dirty.clear()
        floor = self._final[0].height if self._final else 0
        for height in heights:
            if height <= floor:
                break
            cp = checkpoint(height)
            note = final_note(kv, trust, cp)
            if note is not None:
                self._final = (cp, note)
                return self._final, True
        return self._final, False


def _cosigned_heights(kv: RawKV) -> Iterator[int]:
    """Every height holding cosignatures (one record each), highest first."""
    for key, _ in kv.scan(COSIG, prefix_end(COSIG), reverse=True):
        yield height_of(key)
