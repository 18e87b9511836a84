"""Where an audit reads the history from: a node over HTTP, or a local store.

``AuditSource`` is the seam: ``cli.audit.audit`` trusts nothing a source
returns and re-derives everything from the blocks. ``ClientSource`` reads a
node through ``LedgerClient``; ``StoreSource`` reads a ``LedgerStore``
directly (a node's data folder, a backup, or a test's store).
"""

from __future__ import annotations

import logging
import time
from base64 import b64decode
from collections.abc import Mapping
from typing import Any, Protocol

from cli.client import ClientError, LedgerClient, trust_from_api
from cli.wire import parsed_answer
from ledger.block import Block, block_hash, decode_block
from ledger.errors import EncodingError, VerificationError
from ledger.store import LedgerStore, NotFoundError
from ledger.trust import TrustList

logger = logging.getLogger(__name__)


class AuditSource(Protocol):
    """Read access to one copy of the chain. Nothing returned is trusted."""

    def genesis(self) -> TrustList | None:
        """The genesis trust list if the source can name it, else None."""
        ...

    def height(self) -> int:
        """The height of the last block the source holds."""
        ...

    def blocks(self, start: int, limit: int) -> list[Block]:
        """Blocks ``start, start + 1, ...``: at most ``limit``, maybe fewer."""
        ...

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaf bytes of ``[start, end)``; ``end - start <= 1000``."""
        ...

    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    def final_checkpoint(self) -> str | None:
        """The signed note of the latest final checkpoint, None if none yet."""
        ...

    def document(self, doc_id: bytes) -> Mapping[str, Any] | None:
        """What the source says of a document (API JSON form); None: unknown."""
        ...


class ClientSource:
    """An ``AuditSource`` over a node's public HTTP API."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    def genesis(self) -> TrustList | None:
        """The served trust list, when it is still the genesis (version 1).

        The chain id the node claims must be the hash of what it served.
        """
        obj = self.client.trust()
        trust = trust_from_api(obj)
        if trust.version != 1:
            return None
        claimed = obj.get("chain_id")
        if claimed is not None and claimed != trust.chain_id().hex():
            raise VerificationError(
                "tampered", "the node's chain id is not the hash of its trust list"
            )
        return trust

    def height(self) -> int:
        info = self.client.cluster()
        height = parsed_answer("cluster", info, lambda obj: obj["height"])
        if type(height) is not int or height < 0:
            raise ClientError(
                200, "about:blank", "unexpected answer", f"cluster: height {height!r}"
            )
        return height

    def blocks(self, start: int, limit: int) -> list[Block]:
        out = []
        for obj in self.client.blocks(start, limit, raw=True):
            try:
                block = decode_block(b64decode(obj["raw"], validate=True))
            except (KeyError, ValueError, EncodingError) as exc:
                raise VerificationError(
                    "malformed", f"block {obj.get('height')}: not a block: {exc}"
                ) from exc
            if obj.get("hash") not in (None, block_hash(block.header).hex()):
                raise VerificationError(
                    "tampered",
                    f"block {block.header.height}: served hash is not "
                    "the hash of its header",
                )
            out.append(block)
        return out

    def leaves(self, start: int, end: int) -> list[bytes]:
        return self.client.leaves(start, end)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.client.inclusion_proof(index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.client.consistency_proof(first, second)

    def final_checkpoint(self) -> str | None:
        try:
            note = self.client.checkpoint().get("note")
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise
        return note if isinstance(note, str) else None

    def document(self, doc_id: bytes) -> Mapping[str, Any] | None:
        try:
            return self.client.document(doc_id)
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise


class StoreSource:
    """An ``AuditSource`` over a local ``LedgerStore``."""

    def __init__(self, store: LedgerStore, *, genesis: TrustList | None = None) -> None:
        self.store = store
        self._genesis = genesis

    def genesis(self) -> TrustList | None:
        if self._genesis is not None:
            return self._genesis
        try:
            # Version 1 is the genesis by convention (cluster init writes it).
            trust = self.store.trust_list(1)
        except NotFoundError:
            return None
        return trust if trust.chain_id() == self.store.chain_id else None

    def height(self) -> int:
        return self.store.height

    def blocks(self, start: int, limit: int) -> list[Block]:
        if start > self.store.height:
            return []
        return self.store.blocks(start, min(limit, 100))

    def leaves(self, start: int, end: int) -> list[bytes]:
        return self.store.leaves(start, end)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.store.inclusion_proof(index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.store.consistency_proof(first, second)

    def final_checkpoint(self) -> str | None:
        final = self.store.latest_final()
        return None if final is None else final[1]

    def document(self, doc_id: bytes) -> Mapping[str, Any] | None:
        return store_document(self.store, doc_id)


def store_document(store: LedgerStore, doc_id: bytes) -> dict[str, Any] | None:
    """A document as the API shows it now (``api.routes_documents``)."""
    found = store.status_and_history(doc_id)
    rec = found.status
    if rec is None or not rec.is_document:
        return None
    return {
        "doc_id": doc_id.hex(),
        "status": rec.shown_status(time.time_ns() // 1_000_000),
        "issuer": rec.issuer,
        "doc_type": rec.doc_type,
        "issued_at": rec.issued_at,
        "valid_from": rec.valid_from,
        "valid_until": rec.valid_until,
        "revoked_at": rec.revoked_at,
        "reason": rec.reason,
        "superseded_by": None if rec.superseded_by is None else rec.superseded_by.hex(),
        "leaf": rec.leaf,
        "history": [{"leaf_index": leaf, "block": h} for leaf, h in found.rows],
        "as_of_block": found.height,
    }
