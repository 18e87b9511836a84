"""Catching up by snapshot: re-apply the blocks a peer serves.

When Raft hands a lagging or wiped follower a snapshot, the snapshot's data
names a height and a block hash (``snapshot_data``). The follower fetches
the missing blocks from its peers' public API and applies each one itself
with the ledger rules, so nothing it stores is taken on a peer's word: every
re-derived block must hash to the block the peer served, and the last one to
the hash in the snapshot, which came through Raft from the leader.

TODO(#4): a peer that serves well-formed but made-up blocks (real
submissions left out, another batch time) is only caught at the target,
when the chain reached does not hash to the snapshot: the node then refuses
to go on with CorruptStoreError, but has stored the made-up blocks and
needs its data wiped. Fetching the headers first and checking their hash
chain back from the snapshot would catch it before anything is stored.

Raft indexes. The store records with each block the Raft index that made it;
re-applied blocks get the indexes just below the snapshot's, one each, the
last one exactly the snapshot's. The blocks ``height+1 .. target`` were made
by distinct entries in ``(applied_index, snapshot.index]``, so these
indexes keep growing and never exceed the truth; the snapshot index is what
the node records once the target is reached.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Sequence

import httpx

from consensus.messages import Snapshot
from ledger.block import block_hash, decode_block
from ledger.codec import (
    Field,
    Value,
    build_record,
    check_record,
    get_bytes,
    get_int,
    pack,
    unpack,
)
from ledger.errors import ConsensusError, CorruptStoreError, LedgerError
from ledger.rules import BatchInput
from ledger.store import LedgerStore

logger = logging.getLogger(__name__)

PAGE = 100
SNAPSHOT_FIELDS = (Field("height", int), Field("hash", bytes, size=32))
RETRY_S = 0.5


def snapshot_data(height: int, last_hash: bytes) -> bytes:
    """What a Raft snapshot holds: the chain's height and tip hash there."""
    rec: dict[str, Value] = {"height": height, "hash": last_hash}
    return pack(build_record(SNAPSHOT_FIELDS, rec))


def snapshot_target(snap: Snapshot) -> tuple[int, bytes]:
    """(height, block hash) named by ``snap``; EncodingError if malformed."""
    rec = check_record(unpack(snap.data), SNAPSHOT_FIELDS, "snapshot")
    return get_int(rec, "height"), get_bytes(rec, "hash")


async def catch_up(
    store: LedgerStore, snap: Snapshot, urls: Sequence[str], *, timeout_s: float
) -> None:
    """Bring ``store`` to the snapshot's height, then record its Raft index.

    Tries each peer in turn, again and again until ``timeout_s`` has passed
    (a peer may itself be behind). Raises ConsensusError if the target was
    not reached, CorruptStoreError if a block does not re-derive or the
    chain reached differs from the snapshot.
    """
    if snap.index <= store.applied_index:
        return
    height, want = snapshot_target(snap)
    logger.info(
        "catching up from=%d to=%d index=%d peers=%s",
        store.height,
        height,
        snap.index,
        ",".join(urls),
    )
    deadline = time.monotonic() + timeout_s
    errors: list[str] = []
    while store.height < height and time.monotonic() < deadline:
        for url in urls:
            try:
                await _from_peer(store, url, snap.index, height)
            except (httpx.HTTPError, ValueError, KeyError, ConsensusError) as exc:
                errors.append(f"{url}: {exc}")
                logger.warning("catch-up from peer failed url=%s: %s", url, exc)
            except CorruptStoreError:
                raise
            except LedgerError as exc:
                errors.append(f"{url}: {exc}")
                logger.warning("catch-up from peer failed url=%s: %s", url, exc)
            if store.height >= height:
                break
        else:
            await asyncio.sleep(RETRY_S)
    if store.height != height:
        raise ConsensusError(
            f"catch-up to height {height} stopped at {store.height}: {errors[-3:]}"
        )
    got = block_hash(store.block(height).header) if height else store.last_hash
    if got != want:
        raise CorruptStoreError(
            f"caught-up chain differs from the snapshot: block {got.hex()}, "
            f"snapshot {want.hex()}",
            height=height,
        )
    store.mark_applied(snap.index)
    logger.info("caught up height=%d index=%d", height, snap.index)


async def _from_peer(store: LedgerStore, url: str, index: int, height: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        while store.height < height:
            start = store.height + 1
            limit = min(PAGE, height - store.height)
            resp = await client.get(
                "/v1/blocks", params={"start": start, "limit": limit, "raw": "true"}
            )
            resp.raise_for_status()
            blocks = resp.json().get("blocks", [])
            if not blocks:
                raise ConsensusError(f"{url} has no block at height {start} yet")
            for item in blocks:
                _apply_served(store, url, item["raw"], index, height)


def _apply_served(
    store: LedgerStore, url: str, raw: str, index: int, height: int
) -> None:
    block = decode_block(base64.b64decode(raw, validate=True))
    h = block.header.height
    if h != store.height + 1 or h > height:
        raise ConsensusError(f"{url} served block {h} after {store.height}")
    batch = BatchInput(
        time_ms=block.header.time_ms,
        submissions=block.submissions,
        cosignatures=block.cosignatures,
    )
    mine = store.apply(batch, raft_index=index - (height - h))
    if block_hash(mine.header) != block_hash(block.header):
        raise CorruptStoreError(f"block {h} from {url} does not re-derive", height=h)
