"""A local chain for the command-line tests: a real LedgerStore, no node.

``LocalChain`` plays the leader: it signs submissions with the agencies'
issuer keys, applies them as blocks, cosigns checkpoints with the node keys
and carries the cosignatures in the next block, as a cluster would.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.block import Block, Cosignature
from ledger.checkpoint import sign_checkpoint
from ledger.entries import Anchor, Entry, Revoke, Supersede, derive_doc_id, encode_entry
from ledger.keys import SigningKey
from ledger.rules import BatchInput
from ledger.store import LedgerStore
from ledger.submission import encode_submission, sign_submission
from ledger.trust import AgencyInfo, TrustList

AGENCIES = ("police", "justice", "health")
ORIGIN = "agency-ledger.example/test"


@dataclass(frozen=True, slots=True)
class Keys:
    node: SigningKey
    issuer: SigningKey
    admin: SigningKey


def make_keys(seed: int) -> dict[str, Keys]:
    """Deterministic keys: the same ``seed`` gives the same chain id."""
    out = {}
    for i, agency in enumerate(AGENCIES):
        base = seed * 16 + i * 3
        out[agency] = Keys(
            node=SigningKey.from_seed(hashlib.sha256(b"n%d" % base).digest()),
            issuer=SigningKey.from_seed(hashlib.sha256(b"i%d" % base).digest()),
            admin=SigningKey.from_seed(hashlib.sha256(b"a%d" % base).digest()),
        )
    return out


def make_trust(
    keys: dict[str, Keys], *, created_ms: int = 1_700_000_000_000
) -> TrustList:
    names = {
        "police": ("Công an Thành phố", "City Police Department"),
        "justice": ("Sở Tư pháp", "Department of Justice"),
        "health": ("Sở Y tế", "Department of Health"),
    }
    return TrustList(
        origin=ORIGIN,
        version=1,
        created_ms=created_ms,
        agencies=tuple(
            AgencyInfo(
                id=a,
                names={"vi": names[a][0], "en": names[a][1]},
                node_key=keys[a].node.public_key,
                issuer_keys=(keys[a].issuer.public_key,),
                admin_keys=(keys[a].admin.public_key,),
                doc_types=("criminal_record", "birth_registration", "health_record"),
            )
            for a in AGENCIES
        ),
    )


@dataclass(slots=True)
class Document:
    doc_id: bytes
    salt: bytes
    content: bytes
    issuer: str


@dataclass(slots=True)
class LocalChain:
    path: Path
    keys: dict[str, Keys]
    trust: TrustList
    store: LedgerStore
    time_ms: int
    raft_index: int = 0
    carried: list[Cosignature] = field(default_factory=list)

    @classmethod
    def create(
        cls, path: Path, *, seed: int = 1, time_ms: int | None = None
    ) -> LocalChain:
        keys = make_keys(seed)
        trust = make_trust(keys)
        store = LedgerStore.open(path, trust)
        now = time.time_ns() // 1_000_000 if time_ms is None else time_ms
        return cls(path=path, keys=keys, trust=trust, store=store, time_ms=now)

    def close(self) -> None:
        self.store.close()

    def block(self, submissions: Sequence[bytes]) -> Block:
        """Apply one block carrying ``submissions`` and pending cosignatures."""
        self.time_ms += 1_000
        self.raft_index += 1
        batch = BatchInput(
            time_ms=self.time_ms,
            submissions=tuple(submissions),
            cosignatures=tuple(self.carried),
        )
        self.carried = []
        return self.store.apply(batch, raft_index=self.raft_index)

    def signed(self, agency: str, entries: Sequence[Entry]) -> bytes:
        sub = sign_submission(
            ORIGIN,
            agency,
            [encode_entry(e) for e in entries],
            self.keys[agency].issuer,
            timestamp_ms=self.time_ms,
        )
        return encode_submission(sub)

    def submit(self, agency: str, entries: Sequence[Entry]) -> Block:
        return self.block([self.signed(agency, entries)])

    def cosign(
        self, height: int | None = None, agencies: Sequence[str] = AGENCIES
    ) -> None:
        """Node signatures over checkpoint ``height`` (default: the tip),
        stored and queued to be carried by the next block."""
        h = self.store.height if height is None else height
        cp = self.store.checkpoint(h)
        sigs = [
            Cosignature(
                height=h,
                agency=a,
                signature=sign_checkpoint(cp, a, self.keys[a].node).signature,
            )
            for a in agencies
        ]
        self.store.add_cosignatures(h, sigs)
        self.carried.extend(sigs)

    def anchor(
        self,
        agency: str,
        count: int = 1,
        *,
        doc_type: str = "criminal_record",
        valid_from: int | None = None,
        valid_until: int | None = None,
    ) -> list[Document]:
        docs = []
        entries: list[Entry] = []
        for _ in range(count):
            content = os.urandom(64)
            salt = os.urandom(16)
            doc_id = derive_doc_id(salt, hashlib.sha256(content).digest())
            docs.append(Document(doc_id, salt, content, agency))
            entries.append(
                Anchor(
                    issuer=agency,
                    doc_id=doc_id,
                    doc_type=doc_type,
                    issued_at=self.time_ms,
                    valid_from=valid_from,
                    valid_until=valid_until,
                )
            )
        self.submit(agency, entries)
        return docs

    def revoke(self, doc: Document, reason: str = "holder_request") -> None:
        self.submit(
            doc.issuer,
            [
                Revoke(
                    issuer=doc.issuer, doc_id=doc.doc_id, reason=reason, at=self.time_ms
                )
            ],
        )

    def supersede(self, old: Document) -> Document:
        (new,) = self.anchor(old.issuer)
        self.submit(
            old.issuer,
            [
                Supersede(
                    issuer=old.issuer,
                    old_doc_id=old.doc_id,
                    new_doc_id=new.doc_id,
                    at=self.time_ms,
                )
            ],
        )
        return new

    def finalize(self) -> None:
        """Cosign the tip and carry the signatures in one more block."""
        self.cosign()
        self.block([])
