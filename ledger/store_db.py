"""The database files: opening LevelDB, the genesis of a new store, and
whole-database snapshots (Raft InstallSnapshot) with the directory swap.

A snapshot is a stream of chunks, each the canonical encoding of
``[[key, value], ...]`` in key order. Installing one builds a new database
beside the live one (``<path>.incoming``), checks it, then swaps the
directories by rename. Crash safety rests on the order of the renames (see
``finish_import``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import plyvel

from ledger.codec import Value, pack, unpack
from ledger.errors import (
    ConfigError,
    CorruptStoreError,
    EncodingError,
    StorageError,
)
from ledger.statemap import EMPTY_ROOT
from ledger.store_keys import GENESIS, META, LevelKV, Meta, RawKV, trust_key
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

SNAPSHOT_CHUNK_BYTES: Final = 512 * 1024
_ALL_KEYS: Final = (b"", b"\xff" * 8)  # every key starts with an ASCII letter


def open_db(path: Path, *, create: bool) -> plyvel.DB:
    """Open LevelDB at ``path``; typed errors instead of plyvel's."""
    try:
        return plyvel.DB(
            str(path),
            create_if_missing=create,
            bloom_filter_bits=10,
            lru_cache_size=32 << 20,
            write_buffer_size=16 << 20,
            block_size=16 << 10,
        )
    except plyvel.CorruptionError as exc:
        raise CorruptStoreError(f"LevelDB at {path}: {exc}") from exc
    except plyvel.Error as exc:
        if "LOCK" in str(exc):
            raise StorageError(
                f"{path} is in use by another process: is this node already running?"
            ) from exc
        raise StorageError(f"cannot open LevelDB at {path}: {exc}") from exc


def init_if_empty(db: plyvel.DB, genesis: TrustList) -> None:
    """Write the genesis and an empty tip into a new, empty database."""
    if next(LevelKV(db).scan(b"", b"\xff"), None) is not None:
        return
    chain_id = genesis.chain_id()
    meta = Meta(
        height=0,
        tree_size=0,
        last_hash=chain_id,
        state_root=EMPTY_ROOT,
        applied_index=0,
        trust_version=genesis.version,
    )
    wb = db.write_batch(sync=True)
    wb.put(GENESIS, chain_id)
    wb.put(trust_key(genesis.version), pack(genesis.to_value()))
    wb.put(META, meta.encode())
    wb.write()


def load_meta(kv: RawKV, chain_id: bytes, path: Path) -> Meta:
    """The tip record, after checking the store is of chain ``chain_id``
    (ConfigError if not; CorruptStoreError if the record is bad)."""
    stored = kv.get(GENESIS)
    if stored != chain_id:
        raise ConfigError(
            f"store at {path} belongs to chain "
            f"{stored.hex() if stored else None}, not {chain_id.hex()}"
        )
    raw = kv.get(META)
    try:
        if raw is None:
            raise EncodingError("missing")
        return Meta.decode(raw)
    except EncodingError as exc:
        raise CorruptStoreError(f"tip record: {exc}") from exc


def load_trust(kv: RawKV, version: int, height: int | None = None) -> TrustList:
    """The stored trust list of ``version`` (CorruptStoreError if bad)."""
    raw = kv.get(trust_key(version))
    try:
        if raw is None:
            raise EncodingError("missing")
        return TrustList.from_value(unpack(raw))
    except (EncodingError, ConfigError) as exc:
        raise CorruptStoreError(
            f"trust list version {version}: {exc}", height=height
        ) from exc


def export_chunks(kv: RawKV, chunk_bytes: int) -> Iterator[bytes]:
    """Every pair of ``kv`` (read it from a snapshot), in chunks."""
    chunk: list[Value] = []
    size = 0
    for key, value in kv.scan(*_ALL_KEYS):
        chunk.append([key, value])
        size += len(key) + len(value) + 8
        if size >= chunk_bytes:
            yield pack(chunk)
            chunk, size = [], 0
    if chunk:
        yield pack(chunk)


def sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f"{path.name}.{suffix}")


def write_snapshot(target: Path, chunks: Iterable[bytes]) -> None:
    """Fill a new database at ``target`` from ``chunks``; durable on return."""
    db = open_db(target, create=True)
    try:
        for chunk in chunks:
            wb = db.write_batch(sync=False)
            for key, value in _pairs(chunk):
                wb.put(key, value)
            wb.write()
        # One synced write syncs the log holding every write before it.
        db.put(b"\xff-sync", b"", sync=True)
        db.delete(b"\xff-sync", sync=True)
    finally:
        db.close()


def _pairs(chunk: bytes) -> list[tuple[bytes, bytes]]:
    try:
        value = unpack(chunk)
    except EncodingError as exc:
        raise CorruptStoreError(f"snapshot chunk: {exc}") from exc
    if not isinstance(value, list):
        raise CorruptStoreError("snapshot chunk: expected a list")
    out: list[tuple[bytes, bytes]] = []
    for pair in value:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], bytes)
            and isinstance(pair[1], bytes)
        ):
            raise CorruptStoreError("snapshot chunk: expected [key, value] bytes")
        out.append((pair[0], pair[1]))
    return out


def swap_in(path: Path, incoming: Path) -> None:
    """Make the checked database at ``incoming`` the one at ``path``."""
    # NB: the order of the renames is what finish_import relies on.
    old = sibling(path, "old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(path, old)
    os.rename(incoming, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def finish_import(path: Path) -> None:
    """Complete or discard a swap that a crash interrupted.

    ``incoming`` is renamed only after it was fully written and checked, so
    with ``path`` gone it is the store to keep; with ``path`` present the
    swap never started and ``incoming`` is discarded.
    """
    incoming, old = sibling(path, "incoming"), sibling(path, "old")
    if not path.exists() and (incoming.exists() or old.exists()):
        os.rename(incoming if incoming.exists() else old, path)
        fsync_dir(path.parent)
        logger.info("snapshot swap finished after a crash path=%s", path)
    shutil.rmtree(incoming, ignore_errors=True)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
