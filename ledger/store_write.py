"""Staging one block's writes: everything ``rules.Applied`` changes, as puts
and deletes into one LevelDB write batch (``LedgerStore.apply`` writes it).

Nothing here writes on its own; the batch is written whole or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

import plyvel

from ledger.block import OK, Cosignature
from ledger.codec import pack
from ledger.errors import (
    CorruptStoreError,
    EncodingError,
    StorageError,
    VerificationError,
)
from ledger.keys import verify_ed25519
from ledger.rules import TIMESTAMP_WINDOW_MS, Applied
from ledger.statemap import VALUE_PREFIX
from ledger.store_keys import (
    META,
    NONCE_TIME,
    STORED_MIN_LEVEL,
    BlockRecord,
    Meta,
    RawKV,
    SubRecord,
    block_key,
    chunk_roots,
    cosig_key,
    decode_cosigs,
    encode_cosigs,
    encode_undo,
    history_key,
    leaf_key,
    node_key,
    nonce_key,
    nonce_of_time_key,
    nonce_time_key,
    sub_key,
    trust_key,
    u64,
    undo_key,
)
from ledger.submission import decode_submission
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

# A nonce is kept until the block time passes its timestamp by this much:
# twice the window, so a leader clock that lags by up to one window still
# cannot make a pruned nonce usable again.
NONCE_RETENTION_MS: Final = 2 * TIMESTAMP_WINDOW_MS
MAX_NONCE_PRUNE_PER_BLOCK: Final = 10_000
# Undo records kept without a newer final checkpoint; older ones are dropped.
MAX_UNDO_BLOCKS: Final = 4096


def stage_block(
    wb: plyvel.WriteBatch,
    kv: RawKV,
    applied: Applied,
    meta: Meta,
    *,
    trust_before: TrustList,
    messages: dict[int, bytes],
) -> set[int]:
    """Stage everything block ``meta.height`` changes into ``wb``.

    ``messages`` maps a height to its checkpoint body, for the cosignatures
    the batch carried. Returns the heights whose cosignatures changed.
    """
    header = applied.block.header
    for i, leaf in enumerate(applied.leaves):
        wb.put(leaf_key(header.first_leaf + i), leaf)
    for level, index, digest in applied.log_nodes:
        if level >= STORED_MIN_LEVEL:
            wb.put(node_key(level, index), digest)
    _stage_record(wb, applied)
    _stage_state(wb, kv, applied)
    _stage_nonces(wb, kv, applied)
    if applied.trust.version != trust_before.version:
        wb.put(trust_key(applied.trust.version), pack(applied.trust.to_value()))
    changed = _stage_carried(wb, kv, applied, messages)
    wb.put(META, meta.encode())
    return changed


def _stage_record(wb: plyvel.WriteBatch, applied: Applied) -> None:
    """The block record, with each accepted submission as a ``SubRecord``."""
    block = applied.block
    header = block.header
    hashes = [h for level, _, h in applied.log_nodes if level == 0]
    cursor = header.first_leaf
    items: list[int | bytes] = []
    pairs = zip(block.submissions, block.outcomes, strict=True)
    for i, (raw, outcome) in enumerate(pairs):
        if outcome.code != OK:
            items.append(raw)
            continue
        sub = decode_submission(raw)
        start = cursor - header.first_leaf
        end = start + len(sub.entries)
        if list(sub.entries) != applied.leaves[start:end]:
            raise StorageError("accepted entries are not the block's leaves")
        record = SubRecord(
            height=header.height,
            index=i,
            first_leaf=cursor,
            count=len(sub.entries),
            agency=sub.agency,
            key_id=sub.key_id,
            nonce=sub.nonce,
            timestamp_ms=sub.timestamp_ms,
            signature=sub.signature,
            chunks=chunk_roots(hashes[start:end]),
        )
        wb.put(sub_key(cursor), record.encode())
        items.append(cursor)
        cursor += len(sub.entries)
    if cursor != header.tree_size:
        raise StorageError("the block's leaves are not its accepted entries")
    stored = BlockRecord(
        header=header,
        submissions=tuple(items),
        outcomes=block.outcomes,
        cosignatures=block.cosignatures,
    )
    wb.put(block_key(header.height), stored.encode())


def _stage_state(wb: plyvel.WriteBatch, kv: RawKV, applied: Applied) -> None:
    """State-map writes, their undo record, and the history index."""
    header = applied.block.header
    height = header.height
    # A document anchored (or a record created) in this block had no value
    # before it: no read needed to know its undo.
    fresh = {
        VALUE_PREFIX + key
        for key, rec in applied.state.items()
        if (rec.anchor_leaf is not None and rec.anchor_leaf >= header.first_leaf)
        or rec.version == 1
    }
    undo: list[tuple[bytes, bytes | None]] = []
    before = applied.state_before
    for key, value in applied.state_writes.items():
        if key in before:
            undo.append((key, before[key]))
        else:
            undo.append((key, None if key in fresh else kv.get(key)))
        if value is None:
            wb.delete(key)
        else:
            wb.put(key, value)
    wb.put(undo_key(height), encode_undo(undo))
    if height > MAX_UNDO_BLOCKS:
        wb.delete(undo_key(height - MAX_UNDO_BLOCKS))
    for key, leaf in applied.history:
        rec = applied.state.get(key)
        if rec is not None and rec.anchor_leaf == leaf:
            continue  # the anchor: found through the status record
        wb.put(history_key(key, leaf), u64(height))


def _stage_nonces(wb: plyvel.WriteBatch, kv: RawKV, applied: Applied) -> None:
    for agency, nonce, timestamp_ms in applied.nonces:
        wb.put(nonce_key(agency, nonce), u64(timestamp_ms))
        wb.put(nonce_time_key(timestamp_ms, agency, nonce), b"")
    # Pruned from the block time alone: every node drops the same nonces at
    # the same height, so nonce_seen (and every outcome code) stays the same
    # function of the chain everywhere.
    cutoff = applied.block.header.time_ms - NONCE_RETENTION_MS
    if cutoff <= 0:
        return
    stale = kv.scan(NONCE_TIME, NONCE_TIME + u64(cutoff))
    for count, (key, _) in enumerate(stale):
        if count >= MAX_NONCE_PRUNE_PER_BLOCK:
            break
        wb.delete(key)
        wb.delete(nonce_of_time_key(key))


def _stage_carried(
    wb: plyvel.WriteBatch, kv: RawKV, applied: Applied, messages: dict[int, bytes]
) -> set[int]:
    """Carried cosignatures that verify join their height's record."""
    by_height: dict[int, list[Cosignature]] = {}
    for sig in applied.block.cosignatures:
        try:
            message = messages.get(sig.height)
            if message is None:
                raise VerificationError("tampered", "no such block")
            check_cosignature(applied.trust, message, sig)
        except VerificationError as exc:
            logger.warning(
                "carried cosignature dropped height=%d agency=%s: %s",
                sig.height,
                sig.agency,
                exc,
            )
            continue
        by_height.setdefault(sig.height, []).append(sig)
    return {h for h, group in by_height.items() if merge_cosignatures(wb, kv, h, group)}


def check_cosignature(trust: TrustList, message: bytes, sig: Cosignature) -> None:
    """``sig`` verifies with its agency's node key in ``trust``.

    VerificationError: ``unknown_issuer`` if the agency is not in the list,
    ``tampered`` if the signature fails.
    """
    try:
        agency = trust.agency(sig.agency)
    except KeyError:
        raise VerificationError(
            "unknown_issuer", f"cosignature by {sig.agency}, not in the trust list"
        ) from None
    verify_ed25519(agency.node_key, message, sig.signature)


def read_cosignatures(kv: RawKV, height: int) -> list[tuple[str, bytes]]:
    raw = kv.get(cosig_key(height))
    if raw is None:
        return []
    try:
        return decode_cosigs(raw)
    except EncodingError as exc:
        raise CorruptStoreError(
            f"cosignatures of {height}: {exc}", height=height
        ) from exc


def merge_cosignatures(
    wb: plyvel.WriteBatch, kv: RawKV, height: int, sigs: Iterable[Cosignature]
) -> int:
    """Stage ``sigs`` into height's record, first signature per agency
    kept; returns how many agencies are new."""
    have = dict(read_cosignatures(kv, height))
    before = len(have)
    for sig in sigs:
        have.setdefault(sig.agency, sig.signature)
    if len(have) != before:
        wb.put(cosig_key(height), encode_cosigs(list(have.items())))
    return len(have) - before
