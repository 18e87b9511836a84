"""What an audit reports: its result, its failure, and the checkpoint it keeps."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledger.checkpoint import Checkpoint, parse_checkpoint
from ledger.errors import ConfigError, VerificationError
from ledger.note import parse_note


class AuditError(VerificationError):
    """The copy audited disagrees with what its own blocks imply.

    ``reason`` is ``tampered`` or ``malformed``; ``height`` the block and
    ``leaf`` the leaf index to blame, when known.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        height: int | None = None,
        leaf: int | None = None,
    ) -> None:
        where = []
        if height is not None:
            where.append(f"block {height}")
        if leaf is not None:
            where.append(f"leaf {leaf}")
        prefix = ", ".join(where)
        super().__init__(reason, f"{prefix}: {message}" if prefix else message)
        self.height = height
        self.leaf = leaf


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptCheckpoint:
    """The last checkpoint an auditor verified, kept between runs."""

    chain_id: bytes
    note: str

    @property
    def checkpoint(self) -> Checkpoint:
        return parse_checkpoint(parse_note(self.note).text)

    @classmethod
    def load(cls, path: Path) -> KeptCheckpoint | None:
        """None if ``path`` does not exist; ConfigError if it is not ours."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read kept checkpoint {path}: {exc}") from exc
        try:
            obj = json.loads(text)
            kept = cls(chain_id=bytes.fromhex(obj["chain_id"]), note=str(obj["note"]))
            kept.checkpoint  # noqa: B018 - parse now, fail with the file's name
        except (ValueError, KeyError, TypeError, VerificationError) as exc:
            raise ConfigError(f"{path} is not a kept checkpoint: {exc}") from exc
        return kept

    def save(self, path: Path) -> None:
        """Replace ``path`` atomically, so a crash never loses the old one."""
        cp = self.checkpoint
        body = {
            "chain_id": self.chain_id.hex(),
            "origin": cp.origin,
            "height": cp.height,
            "size": cp.size,
            "note": self.note,
        }
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"cannot write kept checkpoint {path}: {exc}") from exc


@dataclass(slots=True)
class AuditReport:
    """What an audit covered; ``final_note`` is the checkpoint to keep."""

    chain_id: bytes
    blocks: int = 0
    entries: int = 0
    submissions: int = 0
    rejected: int = 0
    cosignatures: int = 0
    final_checkpoints: int = 0
    consistency_proofs: int = 0
    inclusion_proofs: int = 0
    documents: int = 0
    seconds: float = 0.0  # the whole audit
    replay_seconds: float = 0.0  # replaying the blocks, the first part
    replay_entries: int = 0  # the entries of that part
    final_note: str | None = None
    final_height: int | None = None
    kept_height: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def entries_per_second(self) -> float:
        """The replay's rate (the document checks after it, and the blocks
        they replayed, are not in it)."""
        if self.replay_seconds > 0:
            return self.replay_entries / self.replay_seconds
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "chain_id": self.chain_id.hex(),
            "blocks": self.blocks,
            "entries": self.entries,
            "submissions": self.submissions,
            "rejected_submissions": self.rejected,
            "cosignatures": self.cosignatures,
            "final_checkpoints": self.final_checkpoints,
            "consistency_proofs": self.consistency_proofs,
            "inclusion_proofs": self.inclusion_proofs,
            "documents": self.documents,
            "seconds": round(self.seconds, 3),
            "replay_seconds": round(self.replay_seconds, 3),
            "replay_entries": self.replay_entries,
            "entries_per_second": round(self.entries_per_second, 1),
            "final_height": self.final_height,
            "kept_height": self.kept_height,
            "warnings": self.warnings,
        }


Progress = Callable[[int, int], None]  # (blocks done, entries done)
# (documents checked, documents to check), every DOCUMENTS_TICK and at the end
DocumentsProgress = Callable[[int, int], None]
