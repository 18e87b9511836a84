"""The auditor: replay the whole history from any copy and re-derive everything.

Theory of operation. ``audit`` reads blocks in pages from an
``AuditSource`` and applies each one, with ``ledger.rules`` (through a fresh
``LedgerStore`` in a temporary folder), on top of the state the auditor
itself derived. The source is never believed: every served value is
compared with the re-derived one, and the first difference stops the audit
with an ``AuditError`` naming the block height and, when one leaf is to
blame, its index.

Per block, in order (the first failure decides):

1. the height is the next one (a missing block is a rewritten chain);
2. the body hash of the header covers the served body;
3. the previous-hash link: the chain id at height 1, then each hash;
4. the re-applied outcomes equal the served ones (each submission's
   signature is verified here, once, under the trust list in force, which
   governance entries in earlier blocks may have changed);
5. the served leaves are the accepted entries, byte for byte;
6. the re-derived header (tree size, log root, state root, trust version)
   and so the block hash equal the served ones;
7. every carried cosignature verifies with its agency's node key over the
   re-derived checkpoint of its height.

After the last block: the served final checkpoint verifies under a quorum of
the trust list of its height and equals the re-derived one; each final
checkpoint is consistent with the one before (served consistency proofs
checked against re-derived roots) and with a checkpoint kept from an earlier
run (a rewritten history fails here even if it is self-consistent); a sample
of served inclusion and consistency proofs equals the re-derived tree's
(this exercises the source's stored subtree hashes); and each document's
served status equals the re-derived one.

Throughput: one signature check per submission and one hash per leaf, both
inside ``rules.apply_batch``; leaves are compared as bytes.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from cli.audit_final import check_documents, check_finals, sample_proofs
from cli.audit_replay import LeafStream, Replay
from cli.audit_report import (
    AuditError,
    AuditReport,
    DocumentsProgress,
    KeptCheckpoint,
    Progress,
)
from cli.sources import AuditSource
from ledger.block import Block
from ledger.store import LedgerStore
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

__all__ = [
    "AuditError",
    "AuditReport",
    "DocumentsProgress",
    "KeptCheckpoint",
    "Progress",
    "audit",
]

BLOCK_PAGE: Final = 100
DEFAULT_PROOF_SAMPLES: Final = 32


def audit(
    source: AuditSource,
    trust: TrustList,
    *,
    keep: KeptCheckpoint | None = None,
    documents: int | None = None,
    proofs: int = DEFAULT_PROOF_SAMPLES,
    progress: Progress | None = None,
    documents_progress: DocumentsProgress | None = None,
    work_dir: Path | None = None,
    seed: int | None = None,
) -> AuditReport:
    """Audit the chain ``source`` serves against the genesis ``trust``.

    ``documents``: how many document statuses to compare (None: all, 0:
    none); ``proofs``: how many served inclusion and consistency proofs to
    compare with the re-derived tree. Raises ``AuditError`` on the first
    discrepancy, and whatever the source raises when it cannot be read.
    """
    started = time.perf_counter()
    report = AuditReport(chain_id=trust.chain_id())
    # Taken before the replay, so the replay reaches at least its height.
    served_note = source.final_checkpoint()
    tip = source.height()
    with tempfile.TemporaryDirectory(prefix="ledger-audit-", dir=work_dir) as tmp:
        # A scratch replay, deleted after: syncing its blocks buys nothing.
        store = LedgerStore.open(
            Path(tmp) / "replay", trust, full_check=False, durable=False
        )
        try:
            replay = Replay(
                source=source,
                store=store,
                report=report,
                collect_docs=documents != 0,
                leaves=LeafStream(source),
            )

            def replay_to(height: int) -> None:
                for page in _served_pages(source, replay.store.height + 1, height):
                    replay.read_ahead = page[-1].header.tree_size
                    for block in page:
                        replay.check_block(block, replay.store.height + 1)
                        if progress is not None:
                            progress(report.blocks, report.entries)

            replay_to(tip)
            report.replay_seconds = time.perf_counter() - started
            report.replay_entries = report.entries
            check_finals(replay, served_note, keep)
            sample_proofs(replay, proofs, random.Random(seed))
            # A live chain grows while documents are checked: a status the
            # source serves as of a later block is compared after replaying
            # up to that block (replay_to), not taken for a lie.
            check_documents(
                replay,
                documents,
                random.Random(seed),
                progress=documents_progress,
                replay_to=replay_to,
            )
        finally:
            store.close()
    report.seconds = time.perf_counter() - started
    logger.info(
        "audit done blocks=%d entries=%d seconds=%.2f",
        report.blocks,
        report.entries,
        report.seconds,
    )
    return report


def _served_pages(source: AuditSource, first: int, tip: int) -> Iterator[list[Block]]:
    """Blocks first..tip in pages; an empty page before the tip is a gap."""
    height = first
    while height <= tip:
        page = source.blocks(height, min(BLOCK_PAGE, tip - height + 1))
        if not page:
            raise AuditError(
                "tampered", f"missing: the source has no block {height}", height=height
            )
        # A page may hold blocks beyond the tip the audit started from.
        page = [b for b in page if b.header.height <= tip] or page[:1]
        yield page
        height = page[-1].header.height + 1
