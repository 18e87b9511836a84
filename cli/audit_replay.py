"""The per-block half of the audit: re-apply each served block and compare.

``Replay`` holds the auditor's own chain (a fresh ``LedgerStore``) beside
the source's; ``check_block`` runs steps 1 to 7 of ``cli.audit`` for one
block and raises ``AuditError`` at the first difference.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cli.audit_report import AuditError, AuditReport
from cli.sources import AuditSource
from ledger.block import OK, Block, block_hash, verify_body
from ledger.entries import Anchor, Revoke, Supersede, decode_entry
from ledger.errors import EncodingError, LedgerError, VerificationError
from ledger.keys import verify_ed25519
from ledger.merkle import leaf_hash, root_from_inclusion
from ledger.rules import BatchInput
from ledger.store import LedgerStore
from ledger.submission import decode_submission
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

LEAF_PAGE: Final = 1_000
# Locating one bad leaf inside a block asks the source for one inclusion
# proof per leaf; past this many leaves the audit names the block only.
MAX_LEAF_PROBES: Final = 4_096


class LeafStream:
    """The source's leaves in order, fetched a page at a time."""

    def __init__(self, source: AuditSource) -> None:
        self._source = source
        self._buffer: list[bytes] = []
        self._start = 0  # index of _buffer[0]

    def take(self, start: int, end: int, *, limit: int) -> list[bytes]:
        """Leaves ``[start, end)``. ``limit`` (at least ``end``) is how far
        a page may read ahead: the tree size at the end of the page of
        blocks being checked, so many small blocks share one request."""
        if start != self._start:
            self._buffer, self._start = [], start
        while len(self._buffer) < end - start:
            have = start + len(self._buffer)
            stop = min(max(limit, end), have + LEAF_PAGE)
            try:
                page = self._source.leaves(have, stop)
            except LedgerError:
                if stop <= end:
                    raise
                # The read-ahead bound comes from unverified headers; fall
                # back to what this block needs and let its checks speak.
                page = self._source.leaves(have, min(end, have + LEAF_PAGE))
            if not page:
                break
            self._buffer.extend(page)
        out = self._buffer[: end - start]
        self._buffer = self._buffer[end - start :]
        self._start = end
        return out


@dataclass(slots=True)
class Replay:
    """The auditor's own chain, built block by block beside the source's."""

    source: AuditSource
    store: LedgerStore
    report: AuditReport
    collect_docs: bool
    leaves: LeafStream
    # How far leaves may be read ahead: the tree size at the end of the page
    # of blocks being checked (set by the caller for each page).
    read_ahead: int = 0
    doc_ids: list[bytes] = field(default_factory=list)
    # Per height, the carried cosignatures that verified under the trust
    # list of that height: agency -> signature. Finality and the note the
    # report gives are both made of these, with that one trust list.
    signed: dict[int, dict[str, bytes]] = field(default_factory=dict)
    trusts: dict[int, TrustList] = field(default_factory=dict)

    def trust_at(self, height: int) -> TrustList:
        """The trust list in force after block ``height`` (re-derived)."""
        version = self.store.header(height).trust_version
        trust = self.trusts.get(version)
        if trust is None:
            trust = self.store.trust_list(version)
            self.trusts[version] = trust
        return trust

    def check_block(self, served: Block, expected_height: int) -> None:
        header = served.header
        h = expected_height

        # (1): no gap. A source that drops a block has rewritten the chain.
        if header.height != h:
            raise AuditError(
                "tampered",
                f"missing: the source served block {header.height} next",
                height=h,
            )

        # (2): the header commits to this body.
        try:
            verify_body(served)
        except VerificationError as exc:
            self.locate_bad_leaf(served)
            raise AuditError("tampered", str(exc), height=h) from None

        # (3): the hash link, from the chain id at height 1.
        if header.prev_hash != self.store.last_hash:
            raise AuditError(
                "tampered",
                f"previous hash {header.prev_hash.hex()} should be "
                f"{self.store.last_hash.hex()}",
                height=h,
            )

        # (4): re-apply with the rules; compare outcomes.
        batch = BatchInput(
            time_ms=header.time_ms,
            submissions=served.submissions,
            cosignatures=served.cosignatures,
        )
        try:
            mine = self.store.apply(batch, raft_index=h)
        except LedgerError as exc:
            raise AuditError("malformed", f"cannot re-apply: {exc}", height=h) from None
        mine_leaves = self.compare_outcomes(served, mine)

        # (5): the served leaves are exactly the accepted entries.
        self.compare_leaves(served, mine_leaves)

        # (6): the re-derived header, field by field, then the hash.
        for name in ("tree_size", "log_root", "state_root", "trust_version"):
            want, got = getattr(mine.header, name), getattr(header, name)
            if want != got:
                raise AuditError(
                    "tampered",
                    f"{name}: served {_show(got)}, re-derived {_show(want)}",
                    height=h,
                )
        if block_hash(mine.header) != block_hash(header):
            raise AuditError("tampered", "block hash differs", height=h)

        # (7): carried cosignatures.
        self.check_cosignatures(served)
        self.report.blocks += 1
        self.report.entries += len(mine_leaves)

    def compare_outcomes(self, served: Block, mine: Block) -> list[bytes]:
        """Outcomes must agree; returns the accepted entries (the new leaves)."""
        h = served.header.height
        cursor = served.header.first_leaf
        leaves: list[bytes] = []
        pairs = zip(served.outcomes, mine.outcomes, served.submissions, strict=True)
        for i, (theirs, ours, raw) in enumerate(pairs):
            self.report.submissions += 1
            entries: tuple[bytes, ...] = ()
            if ours.code == OK:
                entries = decode_submission(raw).entries
            if theirs != ours:
                leaf = None
                if ours.entry is not None:
                    leaf = cursor + ours.entry
                elif theirs.code == OK and len(decode_submission(raw).entries) == 1:
                    leaf = cursor
                raise AuditError(
                    "tampered",
                    f"submission {i}: served outcome {theirs.code!r}, "
                    f"re-derived {ours.code!r}",
                    height=h,
                    leaf=leaf,
                )
            if ours.code != OK:
                self.report.rejected += 1
            leaves.extend(entries)
            cursor += len(entries)
        return leaves

    def compare_leaves(self, served: Block, mine: list[bytes]) -> None:
        header = served.header
        got = self.leaves.take(
            header.first_leaf, header.tree_size, limit=self.read_ahead
        )
        for offset, (theirs, ours) in enumerate(zip(got, mine, strict=False)):
            if theirs != ours:
                raise AuditError(
                    "tampered",
                    "served leaf differs from the accepted entry",
                    height=header.height,
                    leaf=header.first_leaf + offset,
                )
        if len(got) != len(mine):
            raise AuditError(
                "tampered",
                f"{len(got)} leaves served for {len(mine)} accepted entries",
                height=header.height,
            )
        if self.collect_docs:
            for leaf in mine:
                entry = decode_entry(leaf)
                if isinstance(entry, Anchor):
                    self.doc_ids.append(entry.doc_id)

    def locate_bad_leaf(self, served: Block) -> None:
        """The body does not hash: find the leaf the source altered, if one.

        (1) Leaves whose served inclusion proof does not lead to the block's
        log root are suspects: the source's stored subtree hashes were made
        over the original leaves. A store that keeps only the upper levels
        recomputes the lowest ones from its (altered) leaves, so the altered
        leaf's neighbours fail too. (2) Among the suspects, the altered one
        is the leaf that no longer says what the state map (also made from
        the original leaves) holds: an anchor of a document the source does
        not know, or a change its document's history does not list.
        """
        header = served.header
        count = header.tree_size - header.first_leaf
        if not 0 < count <= MAX_LEAF_PROBES:
            return
        try:
            got = self.leaves.take(
                header.first_leaf, header.tree_size, limit=header.tree_size
            )
            suspects = []
            for offset, leaf in enumerate(got):
                index = header.first_leaf + offset
                proof = self.source.inclusion_proof(index, header.tree_size)
                root = root_from_inclusion(
                    leaf_hash(leaf), index, header.tree_size, proof
                )
                if root != header.log_root:
                    suspects.append((index, leaf))
            if not suspects:
                return
            culprits = [i for i, leaf in suspects if not self._agrees(i, leaf)]
        except LedgerError as exc:
            logger.debug("locating the bad leaf failed: %s", exc)
            return
        if len(culprits) == 1 or len(suspects) == 1:
            index = culprits[0] if len(culprits) == 1 else suspects[0][0]
            raise AuditError(
                "tampered",
                "leaf altered: it is not the one the block's log root and "
                "state were made over",
                height=header.height,
                leaf=index,
            )
        raise AuditError(
            "tampered",
            f"one of leaves {[i for i, _ in suspects]} was altered",
            height=header.height,
            leaf=suspects[0][0],
        )

    def _agrees(self, index: int, leaf: bytes) -> bool:
        """Whether the served state still says what this leaf says."""
        try:
            entry = decode_entry(leaf)
        except EncodingError:
            return False
        if isinstance(entry, Anchor):
            doc = self.source.document(entry.doc_id)
            return (
                doc is not None
                and history_leaves(doc)[:1] == [index]
                and doc.get("issuer") == entry.issuer
                and doc.get("doc_type") == entry.doc_type
                and doc.get("issued_at") == entry.issued_at
            )
        if isinstance(entry, Revoke | Supersede):
            target = entry.doc_id if isinstance(entry, Revoke) else entry.old_doc_id
            doc = self.source.document(target)
            return doc is not None and index in history_leaves(doc)
        # Records and governance leave no per-leaf trace we can read back.
        return True

    def check_cosignatures(self, served: Block) -> None:
        h = served.header.height
        for sig in served.cosignatures:
            # A cosignature is collected after its block is applied, so it
            # is carried by a later block, never by its own or an earlier one.
            if not 1 <= sig.height < h:
                raise AuditError(
                    "tampered",
                    f"carries a cosignature for height {sig.height}",
                    height=h,
                )
            trust = self.trust_at(sig.height)
            try:
                agency = trust.agency(sig.agency)
            except KeyError:
                # Unknown signers are skipped, as for any signed note.
                self.report.warnings.append(
                    f"block {h}: cosignature by unknown agency {sig.agency!r}"
                )
                continue
            message = self.store.checkpoint(sig.height).body().encode()
            try:
                verify_ed25519(agency.node_key, message, sig.signature)
            except VerificationError:
                raise AuditError(
                    "tampered",
                    f"carries a cosignature by {sig.agency} for height "
                    f"{sig.height} that does not verify (forged checkpoint "
                    "signature)",
                    height=h,
                ) from None
            self.signed.setdefault(sig.height, {})[sig.agency] = sig.signature
            self.report.cosignatures += 1

    def finals(self) -> list[int]:
        """Heights whose checkpoint a quorum cosigned in the carried record."""
        return sorted(
            h
            for h, agencies in self.signed.items()
            if len(agencies) >= self.trust_at(h).quorum
        )


def history_leaves(doc: Mapping[str, Any]) -> list[int]:
    history = doc.get("history")
    if not isinstance(history, list):
        return []
    return [
        h["leaf_index"] for h in history if isinstance(h, dict) and "leaf_index" in h
    ]


def _show(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)
