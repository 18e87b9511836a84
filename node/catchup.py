"""Catching up by snapshot: re-apply the blocks a peer serves.

When Raft hands a lagging or wiped follower a snapshot, the snapshot's data
names a height and a block hash (``snapshot_data``), which came through Raft
from the leader. The follower takes nothing on a peer's word:

1. it fetches the headers of the missing blocks, hashes each one itself and
   checks the hash chain from its own tip to the snapshot's block hash, so
   it knows the hash of every block it is missing before storing any
   (a peer serving well-formed but made-up blocks, with submissions left
   out or another batch time, is refused here);
2. it fetches the blocks, refuses any whose header does not hash to the
   checked chain, and re-applies each one with the ledger rules: the block
   it derives must hash to the same value, or the rules are not
   deterministic and the node stops with CorruptStoreError.

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
from ledger.block import BlockHeader, block_hash, decode_block, verify_body
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
from ledger.errors import (
    ConsensusError,
    CorruptStoreError,
    LedgerError,
    VerificationError,
)
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
                await _from_peer(store, url, snap.index, height, want)
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


async def _from_peer(
    store: LedgerStore, url: str, index: int, height: int, want: bytes
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        chain = await _checked_chain(client, url, store, height, want)
        while store.height < height:
            start = store.height + 1
            blocks = await _page(client, url, start, height, raw=True)
            for item in blocks:
                _apply_served(store, url, item["raw"], index, height, chain)


async def _page(
    client: httpx.AsyncClient, url: str, start: int, height: int, *, raw: bool
) -> list[dict[str, object]]:
    limit = min(PAGE, height - start + 1)
    params: dict[str, str | int] = {"start": start, "limit": limit}
    if raw:
        params["raw"] = "true"
    resp = await client.get("/v1/blocks", params=params)
    resp.raise_for_status()
    blocks = resp.json().get("blocks", [])
    if not isinstance(blocks, list) or not blocks:
        raise ConsensusError(f"{url} has no block at height {start} yet")
    return blocks


async def _checked_chain(
    client: httpx.AsyncClient,
    url: str,
    store: LedgerStore,
    height: int,
    want: bytes,
) -> dict[int, bytes]:
    """The hash of every block ``store.height+1 .. height``, from headers we
    hashed ourselves and whose links run from our tip to ``want``."""
    chain: dict[int, bytes] = {}
    prev, h = store.last_hash, store.height
    while h < height:
        for item in await _page(client, url, h + 1, height, raw=False):
            header = _header(item)
            if header.height != h + 1 or header.prev_hash != prev:
                raise ConsensusError(
                    f"{url} served block {header.height} off the chain after {h}"
                )
            h, prev = header.height, block_hash(header)
            chain[h] = prev
            if h == height:
                break
    if prev != want:
        raise ConsensusError(
            f"{url}: block {height} hashes to {prev.hex()}, the snapshot names "
            f"{want.hex()}"
        )
    return chain


def _header(item: dict[str, object]) -> BlockHeader:
    def num(name: str) -> int:
        value = item[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"header field {name} is not an integer")
        return value

    def digest(name: str) -> bytes:
        value = item[name]
        if not isinstance(value, str):
            raise ValueError(f"header field {name} is not hex")
        return bytes.fromhex(value)

    return BlockHeader(
        height=num("height"),
        prev_hash=digest("prev_hash"),
        time_ms=num("time"),
        first_leaf=num("first_leaf"),
        tree_size=num("tree_size"),
        log_root=digest("log_root"),
        state_root=digest("state_root"),
        body_hash=digest("body_hash"),
        trust_version=num("trust_version"),
    )


def _apply_served(
    store: LedgerStore,
    url: str,
    raw: object,
    index: int,
    height: int,
    chain: dict[int, bytes],
) -> None:
    if not isinstance(raw, str):
        raise ValueError("a served block has no raw bytes")
    block = decode_block(base64.b64decode(raw, validate=True))
    h = block.header.height
    if h != store.height + 1 or h > height:
        raise ConsensusError(f"{url} served block {h} after {store.height}")
    if block_hash(block.header) != chain[h]:
        raise ConsensusError(f"{url} served a block {h} off the checked chain")
    try:
        # The header hash covers the body only through body_hash.
        verify_body(block)
    except VerificationError as exc:
        raise ConsensusError(f"{url} served block {h} with another body") from exc
    batch = BatchInput(
        time_ms=block.header.time_ms,
        submissions=block.submissions,
        cosignatures=block.cosignatures,
    )
    mine = store.apply(batch, raft_index=index - (height - h))
    if block_hash(mine.header) != chain[h]:
        raise CorruptStoreError(f"block {h} from {url} does not re-derive", height=h)
