"""The proof bundle of one document: what verifies it offline.

Shape (JSON; hashes and ids lowercase hex, blobs base64, the note as is)::

    {"version": 1, "origin": str, "doc_id": hex,
     "checkpoint": the signed note of the latest FINAL checkpoint,
     "anchor": LEAF or null, "changes": [LEAF, ...],
     "state": {"key": hex, "value": base64 status record or null,
               "proof": StateProof.to_json()}}

    LEAF = {"leaf": base64 leaf bytes, "index": int,
            "inclusion": [hex, ...] against the checkpoint's tree size,
            "submission": {"agency", "key_id": hex, "nonce": hex,
                           "timestamp": int, "signature": base64,
                           "batch_size": int, "batch_index": int,
                           "batch_path": [hex, ...]}}

``changes`` are the leaves, in log order, that changed this document's
status (a revoke naming it, a supersede replacing it) up to the checkpoint.
Every proof is against the final checkpoint: the state proof is of the
state map as of that checkpoint's height, never of a newer tip.

The binary form (``ledger.bundle_binary``: ``encode_bundle`` of this dict,
``decode_bundle`` back) holds the same content in canonical msgpack, with
raw bytes for the hashes and blobs: about 60 % of the size, the note's
text unchanged. Both forms verify with ``verify_bundle``.
"""

from __future__ import annotations

from typing import Final

from ledger.checkpoint import Checkpoint
from ledger.entries import Revoke, Supersede, decode_entry
from ledger.errors import CorruptStoreError, EncodingError
from ledger.keys import encode_base64
from ledger.store import LedgerStore, NoFinalCheckpointError, NotFoundError
from ledger.store_read import read_status

BUNDLE_VERSION: Final = 1

JSONValue = object


def build_bundle(store: LedgerStore, doc_id: bytes) -> dict[str, JSONValue]:
    """The proof bundle of ``doc_id`` against the latest final checkpoint.

    An unknown document gets a bundle without anchor whose state proof
    shows its absence. Raises NoFinalCheckpointError (no final checkpoint
    yet: try later) and NotFoundError if ``doc_id`` is a registry record.
    """
    if len(doc_id) != 32:
        raise ValueError("a doc id is 32 bytes")
    for attempt in range(2):
        final = store.latest_final()
        if final is None:
            raise NoFinalCheckpointError("no checkpoint is final yet")
        try:
            return _build(store, doc_id, *final)
        except NoFinalCheckpointError:
            # A newer final checkpoint pruned the undo records of this one
            # between the two reads: the next attempt uses the newer one.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _build(
    store: LedgerStore, doc_id: bytes, cp: Checkpoint, note: str
) -> dict[str, JSONValue]:
    value, proof = store.prove_state(doc_id, height=cp.height)
    status = read_status(value)
    anchor: dict[str, JSONValue] | None = None
    changes: list[JSONValue] = []
    if status is not None:
        if not status.is_document or status.anchor_leaf is None:
            raise NotFoundError(f"{doc_id.hex()} is a registry record")
        anchor = _leaf_part(store, status.anchor_leaf, cp.size)
        changes = [
            _leaf_part(store, index, cp.size)
            for index in _change_leaves(store, doc_id, status.anchor_leaf, cp.size)
        ]
    return {
        "version": BUNDLE_VERSION,
        "origin": cp.origin,
        "doc_id": doc_id.hex(),
        "checkpoint": note,
        "anchor": anchor,
        "changes": changes,
        "state": {
            "key": doc_id.hex(),
            "value": None if value is None else encode_base64(value),
            "proof": proof.to_json(),
        },
    }


def _change_leaves(
    store: LedgerStore, doc_id: bytes, anchor: int, size: int
) -> list[int]:
    """Leaves after the anchor and below ``size`` that changed the status."""
    out: list[int] = []
    for index, _ in store.changes(doc_id):
        if not anchor < index < size:
            continue
        try:
            entry = decode_entry(store.leaf(index))
        except EncodingError as exc:
            raise CorruptStoreError(f"stored leaf {index}: {exc}") from exc
        if (isinstance(entry, Revoke) and entry.doc_id == doc_id) or (
            isinstance(entry, Supersede) and entry.old_doc_id == doc_id
        ):
            out.append(index)
    return out


def _leaf_part(store: LedgerStore, index: int, size: int) -> dict[str, JSONValue]:
    proof = store.leaf_proof(index, size)
    batch = proof.batch
    rec = batch.location.record
    return {
        "leaf": encode_base64(proof.leaf),
        "index": index,
        "inclusion": [h.hex() for h in proof.inclusion],
        "submission": {
            "agency": rec.agency,
            "key_id": rec.key_id.hex(),
            "nonce": rec.nonce.hex(),
            "timestamp": rec.timestamp_ms,
            "signature": encode_base64(rec.signature),
            "batch_size": batch.batch_size,
            "batch_index": batch.location.position,
            "batch_path": [h.hex() for h in batch.path],
        },
    }
