"""Small builders for store, bundle and crash tests: a three-agency genesis
with deterministic keys, signed submissions, and cosigned checkpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.block import Cosignature
from ledger.checkpoint import sign_checkpoint
from ledger.entries import Anchor, Record, Revoke, Supersede, encode_entry
from ledger.keys import SigningKey
from ledger.rules import BatchInput
from ledger.store import LedgerStore
from ledger.submission import encode_submission, sign_submission
from ledger.trust import AgencyInfo, TrustList

ORIGIN = "test.agency-ledger.vn/log"
T0 = 1_750_000_000_000  # a fixed "now" in ms
AGENCY_IDS = ("moj", "moh", "mpi")
DOC_TYPES = ("criminal_record", "birth_registration", "health_record")


def _key(*parts: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256("/".join(parts).encode()).digest())


@dataclass(frozen=True)
class Agency:
    id: str
    node: SigningKey
    issuer: SigningKey
    admin: SigningKey


def make_agencies(ids: Sequence[str] = AGENCY_IDS) -> dict[str, Agency]:
    return {
        a: Agency(a, _key(a, "node"), _key(a, "issuer"), _key(a, "admin")) for a in ids
    }


def make_genesis(agencies: dict[str, Agency], origin: str = ORIGIN) -> TrustList:
    return TrustList(
        origin=origin,
        version=1,
        created_ms=T0,
        agencies=tuple(
            AgencyInfo(
                id=a.id,
                names={"vi": f"Bộ {a.id}", "en": f"Ministry {a.id}"},
                node_key=a.node.public_key,
                issuer_keys=(a.issuer.public_key,),
                admin_keys=(a.admin.public_key,),
                doc_types=DOC_TYPES,
            )
            for a in agencies.values()
        ),
    )


def doc_id(n: int | str) -> bytes:
    return hashlib.sha256(f"doc-{n}".encode()).digest()


def anchor(
    issuer: str,
    n: int | str,
    *,
    valid_from: int | None = None,
    valid_until: int | None = None,
) -> bytes:
    return encode_entry(
        Anchor(
            issuer=issuer,
            doc_id=doc_id(n),
            doc_type="criminal_record",
            issued_at=T0,
            valid_from=valid_from,
            valid_until=valid_until,
        )
    )


def revoke(issuer: str, n: int | str, at: int = T0 + 5000) -> bytes:
    return encode_entry(
        Revoke(issuer=issuer, doc_id=doc_id(n), reason="withdrawn", at=at)
    )


def supersede(issuer: str, old: int | str, new: int | str) -> bytes:
    return encode_entry(
        Supersede(issuer=issuer, old_doc_id=doc_id(old), new_doc_id=doc_id(new), at=T0)
    )


def record(issuer: str, rid: bytes, version: int) -> bytes:
    digest = hashlib.sha256(rid + bytes([version])).digest()
    return encode_entry(
        Record(
            issuer=issuer,
            registry="land",
            record_id=rid,
            version=version,
            digest=digest,
        )
    )


def submission(agency: Agency, entries: Sequence[bytes], time_ms: int) -> bytes:
    nonce = hashlib.sha256(b"".join(entries) + str(time_ms).encode()).digest()[:16]
    sub = sign_submission(
        ORIGIN, agency.id, entries, agency.issuer, nonce=nonce, timestamp_ms=time_ms
    )
    return encode_submission(sub)


def batch(
    subs: Sequence[bytes],
    time_ms: int,
    cosignatures: Sequence[Cosignature] = (),
) -> BatchInput:
    return BatchInput(
        time_ms=time_ms, submissions=tuple(subs), cosignatures=tuple(cosignatures)
    )


def cosign(
    store: LedgerStore, height: int, agencies: Sequence[Agency]
) -> list[Cosignature]:
    """Each agency's node-key signature over checkpoint ``height``."""
    cp = store.checkpoint(height)
    return [
        Cosignature(
            height=height,
            agency=a.id,
            signature=sign_checkpoint(cp, a.id, a.node).signature,
        )
        for a in agencies
    ]


def finalize(store: LedgerStore, agencies: dict[str, Agency]) -> None:
    """Make the tip checkpoint final: every agency cosigns it."""
    store.add_cosignatures(
        store.height, cosign(store, store.height, list(agencies.values()))
    )


class Chain:
    """A store plus the bookkeeping to apply blocks with a growing clock."""

    def __init__(self, store: LedgerStore, agencies: dict[str, Agency]) -> None:
        self.store = store
        self.agencies = agencies
        self.raft_index = store.applied_index

    def now(self) -> int:
        return T0 + 1000 * (self.store.height + 1)

    def apply(self, *subs: tuple[str, Sequence[bytes]], final: bool = True) -> None:
        """Apply one block of submissions ``(agency id, entries)``."""
        time_ms = self.now()
        raw = [submission(self.agencies[a], entries, time_ms) for a, entries in subs]
        self.raft_index += 1
        block = self.store.apply(batch(raw, time_ms), raft_index=self.raft_index)
        rejected = [o for o in block.outcomes if o.code != "ok"]
        assert not rejected, rejected
        if final:
            finalize(self.store, self.agencies)
