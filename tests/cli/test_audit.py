"""The audit core against local stores: an honest chain passes, and each kind
of tampering is caught and named (block height, leaf index)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import plyvel
import pytest

from cli.audit import AuditError, KeptCheckpoint, audit
from cli.sources import StoreSource
from ledger.block import Block, Cosignature
from ledger.checkpoint import sign_checkpoint
from ledger.codec import Value
from ledger.entries import Anchor
from ledger.note import format_note, parse_note
from ledger.store import LedgerStore
from ledger.store_keys import leaf_key
from tests.cli.chain import Document, LocalChain


def _history(chain: LocalChain) -> None:
    """Blocks 1..7: anchors in batches, a revoke, a supersede, cosignatures."""
    docs = chain.anchor("police", 10)  # block 1, leaves 0..9
    chain.anchor("justice", 5, doc_type="birth_registration")  # block 2
    chain.cosign(1)
    chain.cosign(2)
    chain.revoke(docs[0])  # block 3, carries cosignatures of 1 and 2
    chain.supersede(docs[1])  # blocks 4 and 5
    chain.cosign()
    chain.anchor("health", 3, doc_type="health_record")  # block 6
    chain.finalize()  # cosign 6, carried by block 7


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[LocalChain]:
    """An empty chain, for a test to write its own history."""
    local = LocalChain.create(tmp_path / "fresh")
    yield local
    local.close()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[LocalChain]:
    local = LocalChain.create(tmp_path / "store")
    _history(local)
    yield local
    local.close()


def test_honest_chain_passes(chain: LocalChain) -> None:
    report = audit(StoreSource(chain.store), chain.trust, seed=1)
    assert report.blocks == chain.store.height == 7
    assert report.entries == chain.store.tree_size == 10 + 5 + 1 + 1 + 1 + 3
    assert report.submissions == 6
    assert report.rejected == 0
    assert report.final_checkpoints == 4  # heights 1, 2 (carried by 3), 5 and 6
    assert report.final_height == chain.store.latest_final()[0].height  # type: ignore[index]
    assert report.documents == 10 + 5 + 1 + 3
    assert report.inclusion_proofs == 32
    assert report.final_note is not None


def test_rejected_submissions_replay_as_rejected(chain: LocalChain) -> None:
    # Anchoring a doc id twice is refused by the rules; the auditor must
    # derive the same refusal from the same bytes.
    (doc,) = chain.anchor("police")
    again = Anchor(
        issuer="police", doc_id=doc.doc_id, doc_type="criminal_record", issued_at=1
    )
    chain.block([chain.signed("police", [again])])
    report = audit(StoreSource(chain.store), chain.trust, documents=0, proofs=0)
    assert report.rejected == 1


def _reopen(chain: LocalChain) -> LedgerStore:
    return LedgerStore.open(chain.path, chain.trust, full_check=False)


def test_flipped_byte_in_a_leaf_is_named(chain: LocalChain) -> None:
    chain.close()
    db = plyvel.DB(str(chain.path))
    raw = bytearray(db.get(leaf_key(6)))
    raw[-5] ^= 0x01  # inside the doc id of the anchor at leaf 6 (block 1)
    db.put(leaf_key(6), bytes(raw))
    db.close()
    chain.store = _reopen(chain)
    with pytest.raises(AuditError) as caught:
        audit(StoreSource(chain.store), chain.trust)
    assert caught.value.reason == "tampered"
    assert caught.value.height == 1
    assert caught.value.leaf == 6


class Wrapped:
    """A source that serves what ``inner`` does, except where told."""

    def __init__(self, inner: StoreSource) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class MissingBlock(Wrapped):
    def __init__(self, inner: StoreSource, height: int) -> None:
        super().__init__(inner)
        self.missing = height

    def blocks(self, start: int, limit: int) -> list[Block]:
        return [
            b
            for b in self.inner.blocks(start, limit)
            if b.header.height != self.missing
        ]


def test_missing_block_is_named(chain: LocalChain) -> None:
    with pytest.raises(AuditError) as caught:
        audit(MissingBlock(StoreSource(chain.store), 3), chain.trust)
    assert caught.value.reason == "tampered"
    assert caught.value.height == 3
    assert "missing" in str(caught.value)


def test_missing_last_block_is_named(chain: LocalChain) -> None:
    with pytest.raises(AuditError) as caught:
        audit(MissingBlock(StoreSource(chain.store), 7), chain.trust)
    assert caught.value.height == 7


def test_forged_cosignature_carried_in_a_block(chain: LocalChain) -> None:
    chain.carried.append(
        Cosignature(height=6, agency="justice", signature=b"\x07" * 64)
    )
    chain.block([])  # block 8 carries a forged signature for height 6
    with pytest.raises(AuditError) as caught:
        audit(StoreSource(chain.store), chain.trust)
    assert caught.value.reason == "tampered"
    assert caught.value.height == 8
    assert "justice" in str(caught.value)


class ServedNote(Wrapped):
    def __init__(self, inner: StoreSource, note: str) -> None:
        super().__init__(inner)
        self.note = note

    def final_checkpoint(self) -> str | None:
        return self.note


def _forge_first_signature(note: str) -> str:
    parsed = parse_note(note)
    first = parsed.signatures[0]
    forged = dataclasses.replace(
        first, signature=bytes([first.signature[0] ^ 1]) + first.signature[1:]
    )
    return format_note(parsed.text, [forged, *parsed.signatures[1:]])


def test_forged_signature_on_the_served_checkpoint(chain: LocalChain) -> None:
    note = StoreSource(chain.store).final_checkpoint()
    assert note is not None
    source = ServedNote(StoreSource(chain.store), _forge_first_signature(note))
    with pytest.raises(AuditError) as caught:
        audit(source, chain.trust)
    assert caught.value.reason == "tampered"
    assert "fails" in str(caught.value)
    final = chain.store.latest_final()
    assert final is not None
    assert caught.value.height == final[0].height  # the block it names


def test_checkpoint_of_one_agency_presented_as_final(chain: LocalChain) -> None:
    cp = chain.store.checkpoint(chain.store.height)
    lone = format_note(
        cp.body(), [sign_checkpoint(cp, "police", chain.keys["police"].node)]
    )
    with pytest.raises(AuditError) as caught:
        audit(ServedNote(StoreSource(chain.store), lone), chain.trust)
    assert caught.value.reason == "tampered"
    assert caught.value.height == chain.store.height
    assert "quorum" in str(caught.value)


def test_served_checkpoint_of_another_history(
    tmp_path: Path, chain: LocalChain
) -> None:
    other = LocalChain.create(tmp_path / "other")
    try:
        _history(other)  # same genesis, other documents
        note = StoreSource(other.store).final_checkpoint()
        assert note is not None
        with pytest.raises(AuditError) as caught:
            audit(ServedNote(StoreSource(chain.store), note), chain.trust)
        assert "differs from the re-derived" in str(caught.value)
    finally:
        other.close()


def test_rewritten_history_is_caught_by_the_kept_checkpoint(
    tmp_path: Path, chain: LocalChain
) -> None:
    first = audit(StoreSource(chain.store), chain.trust)
    assert first.final_note is not None
    keep = tmp_path / "kept.json"
    KeptCheckpoint(chain_id=first.chain_id, note=first.final_note).save(keep)
    kept = KeptCheckpoint.load(keep)
    assert kept is not None and kept.note == first.final_note

    # An honest continuation: still consistent.
    chain.anchor("police", 2)
    chain.finalize()
    again = audit(StoreSource(chain.store), chain.trust, keep=kept)
    assert again.kept_height == kept.checkpoint.height

    # A history rewritten from genesis (same trust list, other documents,
    # more blocks): self-consistent, final, but not the history we saw.
    forged = LocalChain.create(tmp_path / "forged")
    try:
        _history(forged)
        forged.anchor("police", 2)
        forged.finalize()
        audit(StoreSource(forged.store), forged.trust)  # passes on its own
        with pytest.raises(AuditError) as caught:
            audit(StoreSource(forged.store), forged.trust, keep=kept)
        assert caught.value.reason == "tampered"
        assert caught.value.height == kept.checkpoint.height
        assert "rewritten" in str(caught.value)
    finally:
        forged.close()


def test_truncated_history_below_the_kept_checkpoint(
    tmp_path: Path, chain: LocalChain
) -> None:
    chain.anchor("police", 2)
    chain.finalize()
    report = audit(StoreSource(chain.store), chain.trust)
    assert report.final_note is not None
    kept = KeptCheckpoint(chain_id=report.chain_id, note=report.final_note)
    short = LocalChain.create(tmp_path / "short")
    try:
        short.anchor("police")
        short.finalize()
        with pytest.raises(AuditError, match="truncated"):
            audit(StoreSource(short.store), short.trust, keep=kept)
    finally:
        short.close()


def test_kept_checkpoint_of_another_chain(tmp_path: Path, chain: LocalChain) -> None:
    other = LocalChain.create(tmp_path / "other", seed=2)
    try:
        other.anchor("police")
        other.finalize()
        report = audit(StoreSource(other.store), other.trust)
        assert report.final_note is not None
        kept = KeptCheckpoint(chain_id=report.chain_id, note=report.final_note)
        with pytest.raises(AuditError, match="another chain"):
            audit(StoreSource(chain.store), chain.trust, keep=kept)
    finally:
        other.close()


class LyingDocuments(Wrapped):
    def document(self, doc_id: bytes) -> Mapping[str, Any] | None:
        doc = self.inner.document(doc_id)
        if doc is not None and doc["status"] == "revoked":
            return {**doc, "status": "valid", "revoked_at": None, "reason": None}
        return doc


def test_served_status_that_hides_a_revocation(chain: LocalChain) -> None:
    with pytest.raises(AuditError) as caught:
        audit(LyingDocuments(StoreSource(chain.store)), chain.trust)
    assert "status" in str(caught.value)
    assert caught.value.leaf == 15  # the revoke leaf


class BadProofs(Wrapped):
    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        proof = self.inner.inclusion_proof(index, size)
        return [bytes(32), *proof[1:]] if proof else proof


def test_served_inclusion_proofs_are_compared(chain: LocalChain) -> None:
    with pytest.raises(AuditError, match="inclusion proof"):
        audit(BadProofs(StoreSource(chain.store)), chain.trust)


class BadConsistency(Wrapped):
    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        proof = self.inner.consistency_proof(first, second)
        return [*proof[:-1], bytes(32)] if proof else proof


def test_final_checkpoints_must_be_consistent(chain: LocalChain) -> None:
    with pytest.raises(AuditError, match="consistent"):
        audit(BadConsistency(StoreSource(chain.store)), chain.trust, proofs=0)


def test_wrong_genesis_breaks_the_first_link(tmp_path: Path, chain: LocalChain) -> None:
    other = LocalChain.create(tmp_path / "o", seed=3)
    other.close()
    with pytest.raises(AuditError) as caught:
        audit(StoreSource(chain.store), other.trust)
    assert caught.value.height == 1


def test_empty_chain(tmp_path: Path) -> None:
    empty = LocalChain.create(tmp_path / "empty")
    try:
        report = audit(StoreSource(empty.store), empty.trust)
        assert (report.blocks, report.entries, report.final_note) == (0, 0, None)
    finally:
        empty.close()


def test_kept_file_that_is_not_ours(tmp_path: Path) -> None:
    from ledger.errors import ConfigError

    path = tmp_path / "kept.json"
    path.write_text('{"chain_id": "00", "note": "x"}')
    with pytest.raises(ConfigError):
        KeptCheckpoint.load(path)
    assert KeptCheckpoint.load(tmp_path / "absent.json") is None


def test_progress_is_reported(chain: LocalChain) -> None:
    seen: list[tuple[int, int]] = []
    audit(
        StoreSource(chain.store),
        chain.trust,
        progress=lambda b, e: seen.append((b, e)),
        documents=0,
    )
    assert seen[-1] == (7, chain.store.tree_size)
    assert [b for b, _ in seen] == list(range(1, 8))


def test_document_checks_report_progress_and_the_replay_its_own_rate(
    chain: LocalChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the replay, one request per document: long on a big chain, so
    # it has its own progress, and the replay rate leaves it out.
    import cli.audit_final

    monkeypatch.setattr(cli.audit_final, "DOCUMENTS_TICK", 5)
    seen: list[tuple[int, int]] = []
    report = audit(
        StoreSource(chain.store),
        chain.trust,
        documents_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(0, 19), (5, 19), (10, 19), (15, 19), (19, 19)]
    assert 0 < report.replay_seconds <= report.seconds
    assert report.replay_entries == report.entries  # nothing came meanwhile
    assert report.entries_per_second == report.entries / report.replay_seconds


DAY_MS = 24 * 3600 * 1000


class ServedAs(Wrapped):
    """Serves ``lie(doc)`` for the document ``target``."""

    def __init__(self, inner: StoreSource, target: bytes, lie: Any) -> None:
        super().__init__(inner)
        self.target, self.lie = target, lie

    def document(self, doc_id: bytes) -> Any:
        doc = self.inner.document(doc_id)
        return self.lie(doc) if doc_id == self.target and doc is not None else doc


@pytest.mark.parametrize(
    ("which", "lie"),
    [
        ("expired", lambda d: {**d, "status": "valid"}),
        ("plain", lambda d: {**d, "status": "expired"}),
        ("plain", lambda d: {**d, "status": "not_yet_valid"}),
        ("revoked", lambda d: {"status": "revoked"}),
        ("revoked", lambda d: {k: v for k, v in d.items() if k != "reason"}),
        ("revoked", lambda d: {**d, "history": None}),
        ("revoked", lambda d: {**d, "history": d["history"][:1]}),
        (
            "plain",
            lambda d: {**d, "leaf": True} if d["leaf"] == 1 else {**d, "leaf": 0},
        ),
        ("plain", lambda d: [d]),
    ],
    ids=[
        "expired-as-valid",
        "valid-as-expired",
        "valid-as-not-yet-valid",
        "revoked-bare",
        "revoked-without-reason",
        "history-null",
        "history-short",
        "leaf-wrong",
        "not-an-object",
    ],
)
def test_served_documents_must_say_everything_the_replay_does(
    fresh: LocalChain, which: str, lie: Any
) -> None:
    chain = fresh
    now = chain.time_ms
    (expired,) = chain.anchor("police", valid_until=now - DAY_MS)
    (plain,) = chain.anchor("police")
    (revoked,) = chain.anchor("police")
    chain.revoke(revoked)
    chain.finalize()
    target = {"expired": expired, "plain": plain, "revoked": revoked}[which]
    honest = StoreSource(chain.store)
    assert audit(honest, chain.trust).documents == 3
    with pytest.raises(AuditError) as caught:
        audit(ServedAs(honest, target.doc_id, lie), chain.trust)
    assert caught.value.reason == "tampered"
    assert target.doc_id.hex() in str(caught.value)


def _governance(chain: LocalChain, action: str, params: dict[str, Value]) -> Any:
    """``action`` approved by police's and justice's admin keys (a quorum)."""
    from ledger.entries import Governance, sign_approval
    from tests.cli.chain import ORIGIN

    version = chain.store.trust.version + 1
    approvals = tuple(
        sign_approval(
            ORIGIN,
            action=action,
            params=params,
            version=version,
            agency=a,
            key=chain.keys[a].admin,
        )
        for a in ("police", "justice")
    )
    return Governance(
        issuer="police",
        action=action,
        params=params,
        version=version,
        approvals=approvals,
    )


def _cosigned(cp: Any, signers: list[tuple[str, Any]]) -> list[Cosignature]:
    return [
        Cosignature(
            height=cp.height, agency=a, signature=sign_checkpoint(cp, a, k).signature
        )
        for a, k in signers
    ]


class NoFinal(Wrapped):
    def final_checkpoint(self) -> str | None:
        return None


def test_the_reported_note_is_made_of_the_signatures_that_made_it_final(
    fresh: LocalChain,
) -> None:
    # health cosigns height 1, is removed by block 2, and its signature is
    # carried only by block 3. Height 1 is final under the trust list of
    # height 1 (police and health), so the note reported must verify there.
    from ledger.checkpoint import verify_checkpoint
    from tests.cli.chain import ORIGIN

    chain = fresh
    chain.anchor("police")  # block 1
    cp1 = chain.store.checkpoint(1)
    sigs = _cosigned(cp1, [(a, chain.keys[a].node) for a in ("police", "health")])
    removal = _governance(chain, "remove_agency", {"id": "health"})
    assert [o.code for o in chain.submit("police", [removal]).outcomes] == ["ok"]
    chain.carried = sigs
    chain.anchor("police")  # block 3 carries height 1's signatures
    report = audit(NoFinal(StoreSource(chain.store)), chain.trust)
    assert report.final_height == 1 and report.final_note is not None
    cp, _ = verify_checkpoint(
        report.final_note,
        chain.trust.note_verifiers(),
        chain.trust.quorum,
        origin=ORIGIN,
    )
    assert cp == cp1


def test_a_cosignature_by_an_agency_of_a_later_trust_list_is_skipped(
    fresh: LocalChain,
) -> None:
    # mpi joins in block 2 and signs checkpoint 1, which it had no say in:
    # the audit skips that signature (with a warning) and does not fail.
    from ledger.keys import SigningKey
    from ledger.trust import AgencyInfo

    chain = fresh
    chain.anchor("police")  # block 1
    cp1 = chain.store.checkpoint(1)
    mpi = SigningKey.generate()
    info = AgencyInfo(
        id="mpi",
        names={"vi": "Bộ Kế hoạch", "en": "Planning"},
        node_key=mpi.public_key,
        issuer_keys=(SigningKey.generate().public_key,),
        admin_keys=(SigningKey.generate().public_key,),
    )
    joining = _governance(chain, "add_agency", {"agency": info.to_value()})
    assert [o.code for o in chain.submit("police", [joining]).outcomes] == ["ok"]
    signers = [(a, chain.keys[a].node) for a in ("police", "justice")]
    chain.carried = _cosigned(cp1, [*signers, ("mpi", mpi)])
    chain.anchor("police")  # block 3
    report = audit(NoFinal(StoreSource(chain.store)), chain.trust)
    assert report.final_height == 1 and report.final_note is not None
    assert any("'mpi'" in w for w in report.warnings)


class GrowingChain(Wrapped):
    """A live chain: the first document read is revoked just before it is
    served, in a block the audit's replay has not seen."""

    def __init__(self, inner: StoreSource, chain: LocalChain) -> None:
        super().__init__(inner)
        self.chain = chain
        self.revoked: bytes | None = None

    def document(self, doc_id: bytes) -> Mapping[str, Any] | None:
        if self.revoked is None:
            self.revoked = doc_id
            self.chain.revoke(Document(doc_id, b"", b"", "police"))
        return self.inner.document(doc_id)


def test_an_honest_chain_that_grows_during_the_audit_passes(
    fresh: LocalChain,
) -> None:
    chain = fresh
    chain.anchor("police", 3)
    chain.finalize()
    height = chain.store.height
    source = GrowingChain(StoreSource(chain.store), chain)
    report = audit(source, chain.trust)
    assert source.revoked is not None
    assert chain.store.status(source.revoked).status == "revoked"  # type: ignore[union-attr]
    # The block that came meanwhile was replayed before the comparison.
    assert report.blocks == chain.store.height == height + 1
    assert report.documents == 3


class BusyChain(Wrapped):
    """A chain written faster than the audit reads: two new documents,
    in a block the audit has not replayed, for every document it reads."""

    def __init__(self, inner: StoreSource, chain: LocalChain) -> None:
        super().__init__(inner)
        self.chain = chain
        self.reads = 0

    def document(self, doc_id: bytes) -> Mapping[str, Any] | None:
        self.reads += 1
        assert self.reads < 100, "the audit chases the chain"
        self.chain.anchor("police", 2)
        return self.inner.document(doc_id)


def test_the_audit_ends_on_a_chain_that_keeps_growing(fresh: LocalChain) -> None:
    # The documents checked are those of the chain when the check began;
    # blocks that come meanwhile are replayed and checked, their documents
    # are left for the next audit.
    chain = fresh
    chain.anchor("police", 3)
    chain.finalize()
    source = BusyChain(StoreSource(chain.store), chain)
    report = audit(source, chain.trust)
    assert report.documents == 3 and source.reads == 3
    assert report.blocks > 1
    # The rate is the first replay's: blocks replayed later are left out.
    assert report.replay_entries == 3 < report.entries
