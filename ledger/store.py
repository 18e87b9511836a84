"""The ledger store: one LevelDB database holding the whole chain.

Theory of operation. ``apply`` runs ``rules.apply_batch`` on a view of the
tip and writes everything the block changes (block record, leaves, log
nodes, state-map writes and their undo record, history, nonces, trust list,
carried cosignatures, the tip with the Raft index) in ONE synced write
batch (``ledger.store_write``), so a crash leaves the whole block or none of
it. The key layout is in ``ledger.store_keys``.

Invariants:
- ``M`` (the tip) describes the last stored block; blocks ``1..height``
  are stored with their leaves ``[0, tree_size)``.
- In memory: the tip, the log's compact range (``MerkleLog``, O(log n)),
  the trust list, the latest final checkpoint and one overlay of the state
  map as of that checkpoint (the writes of the blocks since, usually one).
  Restart replays nothing: the log opens with ``popcount(size)`` node reads
  and the state map from its root.
- Writers (``apply``, cosignatures, snapshots) hold ``_lock``. The tip is
  replaced whole (never mutated) under ``_publish`` together with the write
  that makes it true; a reader that needs the tip and the state to agree
  takes a LevelDB snapshot whose tip record is the published tip's (or
  takes both under ``_publish``). Other reads touch append-only data and
  need no lock.

Integrity (``ledger.store_check``): ``open`` always checks the tip: hash
links of the last blocks, tree size against the leaves, the tip block's
leaves and log nodes against its log root, its body hash. With
``full_check=True``, or by default while the store holds at most
``FULL_CHECK_MAX_LEAVES`` leaves, it walks every block too, so one altered
byte in any leaf, log node, block or status is refused with
``CorruptStoreError`` naming the block. For bigger stores the node calls
``verify_integrity(full=True)`` in the background (it reads a snapshot;
``node.integrity``) and stops if it fails.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import plyvel

from ledger.block import Block, BlockHeader, Cosignature, block_hash
from ledger.checkpoint import Checkpoint
from ledger.errors import (
    CorruptStoreError,
    StorageError,
)
from ledger.kept import Kept
from ledger.merkle import MerkleLog
from ledger.rules import BatchInput, apply_batch
from ledger.statemap import EMPTY_ROOT, VALUE_PREFIX, StateMap, StateProof
from ledger.status import StatusRecord
from ledger.store_check import check_chain, check_full, check_tip
from ledger.store_db import (
    SNAPSHOT_CHUNK_BYTES,
    export_chunks,
    finish_import,
    init_if_empty,
    load_meta,
    load_trust,
    open_db,
    sibling,
    swap_in,
    write_snapshot,
)
from ledger.store_final import Finality
from ledger.store_keys import (
    HISTORY,
    META,
    STORED_MIN_LEVEL,
    BlockRecord,
    LevelKV,
    Meta,
    StoredNodes,
    assemble_block,
    decode_block_record,
    prefix_end,
    read_leaves,
    read_u64,
    trust_key,
    undo_key,
)
from ledger.store_read import (
    BatchProof,
    CachedNodes,
    LeafLocation,
    LeafProof,
    NoFinalCheckpointError,
    NotFoundError,
    PastKV,
    StoreView,
    leaf_proof,
    locate,
    past_overlay,
    read_status,
)
from ledger.store_write import (
    check_cosignature,
    merge_cosignatures,
    read_cosignatures,
    stage_block,
)
from ledger.trust import TrustList

__all__ = [
    "FULL_CHECK_MAX_LEAVES",
    "BatchProof",
    "LeafLocation",
    "LedgerStore",
    "NoFinalCheckpointError",
    "NotFoundError",
]

logger = logging.getLogger(__name__)

# open() walks every block by default up to this many leaves (~3 s).
FULL_CHECK_MAX_LEAVES: Final = 50_000
MAX_LEAVES_PER_READ: Final = 1000
MAX_BLOCKS_PER_READ: Final = 100
# Tries at a consistent tip and snapshot without the publish lock.
LOCK_FREE_TRIES: Final = 2
# Log nodes are kept once read, at most this many (about 200 bytes each in
# memory), from the lowest level at which they all fit (CachedNodes.fit:
# level 6 at 3*10^5 leaves, 17 at 10^9), never below the stored ones.
KEPT_NODES: Final = 32_768
KEPT_HEADERS: Final = 256


@dataclass(frozen=True, slots=True)
class _Tip:
    meta: Meta
    log: MerkleLog  # never appended to after publication
    trust: TrustList


@dataclass(frozen=True, slots=True)
class StatusAndHistory:
    """A key's status and history, both as of block ``height``."""

    status: StatusRecord | None
    rows: list[tuple[int, int]]  # (leaf index, height), in order
    height: int


class LedgerStore:
    """The chain in LevelDB; also a ``merkle.NodeReader`` and a
    ``statemap.KVReader`` over itself. Build it with ``LedgerStore.open``."""

    def __init__(
        self, path: Path, db: plyvel.DB, genesis: TrustList, *, durable: bool = True
    ) -> None:
        self._path = path
        self._db = db
        self._durable = durable  # sync every block's write
        self._kv = LevelKV(db)
        self._nodes = _kept_nodes(self._kv)
        self._genesis = genesis
        self._chain_id = genesis.chain_id()
        self._lock = threading.RLock()  # writers
        self._publish = threading.Lock()  # the tip, and the write making it true
        self._finality = Finality()
        # (trust version, latest final): what readers get without the lock.
        self._final: tuple[int, tuple[Checkpoint, str] | None] | None = None
        self._undo_floor = 0  # no undo record below this height
        # (height, tip height, overlay, state root at height): _state_at's.
        self._past: tuple[int, int, dict[bytes, bytes | None], bytes] | None = None
        self._smap: StateMap | None = None  # the writer's, at the tip
        # Recent headers by height: a block never changes once written, and
        # cosigning reads the same few (each read decodes the whole record).
        self._headers: Kept[int, BlockHeader] = Kept(KEPT_HEADERS)
        self._tip = self._load_tip()

    # --- opening and checking ---------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        genesis: TrustList,
        *,
        full_check: bool | None = None,
        durable: bool = True,
    ) -> LedgerStore:
        """Create or open the store at ``path`` for the chain of ``genesis``.

        Always checks the tip; walks everything if ``full_check`` is True,
        or if it is None and the store holds at most
        ``FULL_CHECK_MAX_LEAVES`` leaves. Raises ``CorruptStoreError``
        (naming the block) if the store disagrees with itself,
        ``ConfigError`` if it belongs to another chain, ``StorageError`` if
        LevelDB cannot open it (another process holds it, say).

        ``durable=False`` leaves each block's write to the operating
        system, not synced: for a scratch copy that nothing is acknowledged
        from (an auditor's replay), never for a node's ledger.
        """
        target = Path(path)
        finish_import(target)
        db = open_db(target, create=True)
        try:
            init_if_empty(db, genesis)
            store = cls(target, db, genesis, durable=durable)
            full = full_check
            if full is None:
                full = store.tree_size <= FULL_CHECK_MAX_LEAVES
            store.verify_integrity(full=full)
        except BaseException:
            db.close()
            raise
        logger.info(
            "store opened path=%s height=%d tree_size=%d applied_index=%d full=%s",
            target,
            store.height,
            store.tree_size,
            store.applied_index,
            full,
        )
        return store

    def _load_tip(self) -> _Tip:
        meta = load_meta(self._kv, self._chain_id, self._path)
        trust = load_trust(self._kv, meta.trust_version, meta.height)
        self._nodes.fit(meta.tree_size)
        try:
            log = MerkleLog(self._nodes, meta.tree_size)
        except StorageError as exc:
            raise CorruptStoreError(
                f"log nodes at the tip: {exc}", height=meta.height
            ) from exc
        return _Tip(meta, log, trust)

    def verify_integrity(
        self, *, full: bool, pace: Callable[[int], None] | None = None
    ) -> None:
        """Check the store against itself (see ``ledger.store_check``).

        ``full=False`` is the tip check ``open`` always runs; ``full=True``
        walks every block, over a snapshot, so it may run in a background
        thread while blocks are applied (``pace``: see ``check_full``).
        Raises ``CorruptStoreError``.
        """
        with self._consistent() as (tip, kv):
            try:
                # The full walk first: it names the block an altered leaf is in,
                # where the tip check can only name the first block it affects.
                if full:
                    check_full(kv, chain_id=self._chain_id, meta=tip.meta, pace=pace)
                check_tip(kv, chain_id=self._chain_id, meta=tip.meta)
            except CorruptStoreError as exc:
                logger.error(
                    "store corrupt path=%s height=%s: %s", self._path, exc.height, exc
                )
                raise

    def verify_chain(self) -> None:
        """Follow the hash link of every block header (one read per block)."""
        with self._consistent() as (tip, kv):
            check_chain(kv, chain_id=self._chain_id, meta=tip.meta)

    @contextmanager
    def _consistent(self) -> Iterator[tuple[_Tip, LevelKV]]:
        """The tip and a LevelDB snapshot that holds exactly that tip."""
        tip, snap = self._tip_snapshot()
        try:
            yield tip, LevelKV(snap)
        finally:
            snap.close()

    def _tip_snapshot(self) -> tuple[_Tip, plyvel.DB]:
        # A writer holds _publish through its synced write, and a reader on
        # the event loop should not wait for a disk flush: first without
        # the lock. The tip record is written in the same batch as its
        # block, so a snapshot holding the published tip's record holds
        # exactly that tip; one that does not caught a write between the
        # two reads, and the next try (or the lock) settles it.
        for _ in range(LOCK_FREE_TRIES):
            tip = self._tip
            try:
                snap = self._db.snapshot()
                same = snap.get(META) == tip.meta.encode()
            except RuntimeError:
                # The database is closed: a snapshot install is swapping it
                # (under _publish), so wait for it there.
                break
            if same:
                return tip, snap
            snap.close()
        with self._publish:
            return self._tip, self._db.snapshot()

    def close(self) -> None:
        with self._lock:
            if not self._db.closed:
                self._db.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the tip ---------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def chain_id(self) -> bytes:
        return self._chain_id

    @property
    def genesis(self) -> TrustList:
        """The trust list the chain started from (``chain_id`` hashes it)."""
        return self._genesis

    @property
    def height(self) -> int:
        return self._tip.meta.height

    @property
    def tree_size(self) -> int:
        return self._tip.meta.tree_size

    @property
    def last_hash(self) -> bytes:
        return self._tip.meta.last_hash

    @property
    def state_root(self) -> bytes:
        return self._tip.meta.state_root

    @property
    def applied_index(self) -> int:
        """The Raft index of the last entry applied (stored with each block)."""
        return self._tip.meta.applied_index

    @property
    def trust(self) -> TrustList:
        """The trust list in force after the last block."""
        return self._tip.trust

    def trust_list(self, version: int) -> TrustList:
        """The trust list of ``version`` (every version ever in force)."""
        if self._kv.get(trust_key(version)) is None:
            raise NotFoundError(f"no trust list version {version}")
        return load_trust(self._kv, version)

    def view(self) -> StoreView:
        """A ``rules.StateView`` of the current tip."""
        tip = self._tip
        return StoreView(self._kv, tip.meta, tip.trust)

    def node(self, level: int, index: int) -> bytes:
        """``merkle.NodeReader``; levels below 3 are hashed from the leaves."""
        return self._nodes.node(level, index)

    def get(self, key: bytes) -> bytes | None:
        """``statemap.KVReader``: the raw value stored under ``key``."""
        return self._kv.get(key)

    # --- apply -------------------------------------------------------------

    def apply(self, batch: BatchInput, *, raft_index: int) -> Block:
        """Apply one committed batch; write the whole block in one synced batch.

        Precondition: ``raft_index > applied_index`` (StorageError: the
        entry was applied already, e.g. replayed by Raft after a restart).
        Rule violations are outcomes inside the block, never exceptions.
        """
        with self._lock:
            tip = self._tip
            if raft_index <= tip.meta.applied_index:
                raise StorageError(
                    f"raft index {raft_index} already applied "
                    f"(applied_index={tip.meta.applied_index})"
                )
            log = MerkleLog(self._nodes, tip.meta.tree_size)
            smap = self._smap
            if smap is None or smap.root != tip.meta.state_root:
                smap = StateMap(self._kv, tip.meta.state_root)
            # Until the write succeeds, the state map holds uncommitted nodes.
            self._smap = None
            view = StoreView(self._kv, tip.meta, tip.trust)
            applied = apply_batch(view, batch, log=log, smap=smap)
            header = applied.block.header
            meta = Meta(
                height=header.height,
                tree_size=header.tree_size,
                last_hash=block_hash(header),
                state_root=header.state_root,
                applied_index=raft_index,
                trust_version=applied.trust.version,
            )
            wb = self._db.write_batch(sync=self._durable)
            carried = {
                c.height for c in batch.cosignatures if 0 < c.height <= tip.meta.height
            }
            messages = {h: self.checkpoint(h).body().encode() for h in carried}
            changed = stage_block(
                wb, self._kv, applied, meta, trust_before=tip.trust, messages=messages
            )
            with self._publish:
                _write(wb, header.height)
                self._tip = _Tip(meta, log, applied.trust)
            self._nodes.fit(meta.tree_size)
            self._headers.put(header.height, header)
            smap.mark_committed()
            self._smap = smap  # its node cache serves the next block
            if changed or applied.trust.version != tip.trust.version:
                self._finality.touched(changed)
                self._final = None
                self.latest_final()
        logger.debug(
            "block applied height=%d leaves=%d submissions=%d raft_index=%d",
            header.height,
            header.tree_size - header.first_leaf,
            len(applied.block.submissions),
            raft_index,
        )
        return applied.block

    def mark_applied(self, raft_index: int) -> None:
        """Record a Raft entry that makes no block (a no-op, a config change)."""
        with self._lock:
            tip = self._tip
            if raft_index <= tip.meta.applied_index:
                return
            meta = dataclasses.replace(tip.meta, applied_index=raft_index)
            wb = self._db.write_batch(sync=self._durable)
            wb.put(META, meta.encode())
            with self._publish:
                _write(wb, tip.meta.height)
                self._tip = _Tip(meta, tip.log, tip.trust)

    # --- blocks, leaves and the log ---------------------------------------------

    def header(self, height: int) -> BlockHeader:
        kept = self._headers.get(height)
        if kept is not None and height <= self.height:
            return kept
        header = self._record(height).header
        self._headers.put(header.height, header)
        return header

    def block(self, height: int) -> Block:
        """Block ``height`` as applied, its submissions byte for byte."""
        return assemble_block(self._kv, self._record(height))

    def blocks(self, start: int, limit: int) -> list[Block]:
        """Blocks from ``start`` on, at most ``limit`` (1..100), up to the tip."""
        if start < 1 or not 1 <= limit <= MAX_BLOCKS_PER_READ:
            raise ValueError(f"start >= 1 and 1 <= limit <= {MAX_BLOCKS_PER_READ}")
        end = min(start + limit, self.height + 1)
        return [self.block(h) for h in range(start, end)]

    def _record(self, height: int) -> BlockRecord:
        if not 1 <= height <= self.height:
            raise NotFoundError(f"no block {height} (height {self.height})")
        return decode_block_record(self._kv, height)

    def leaf(self, index: int) -> bytes:
        """Leaf ``index``; ``0 <= index < tree_size`` (NotFoundError)."""
        if not 0 <= index < self.tree_size:
            raise NotFoundError(f"no leaf {index} (tree size {self.tree_size})")
        return read_leaves(self._kv, index, index + 1)[0]

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaves ``[start, end)``: ``0 <= start < end <= start + 1000``
        (ValueError) and ``end <= tree_size`` (NotFoundError)."""
        if not 0 <= start < end or end - start > MAX_LEAVES_PER_READ:
            raise ValueError(f"need 0 <= start < end <= start + {MAX_LEAVES_PER_READ}")
        if end > self.tree_size:
            raise NotFoundError(f"leaves up to {end} of a tree of {self.tree_size}")
        return read_leaves(self._kv, start, end)

    def log_root(self, size: int) -> bytes:
        """The log root at ``0 <= size <= tree_size``."""
        log = self._tip.log
        if not 0 <= size <= log.size:
            raise NotFoundError(f"no tree of size {size} (tree size {log.size})")
        return log.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Proof of leaf ``index`` in the tree of ``size``: ``0 <= index <
        size`` (ValueError), ``size <= tree_size`` (NotFoundError)."""
        log = self._tip.log
        if size > log.size:
            raise NotFoundError(f"no tree of size {size} (tree size {log.size})")
        return log.inclusion_proof(index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """Proof that tree ``first`` is a prefix of ``second``: ``0 < first
        <= second`` (ValueError), ``second <= tree_size`` (NotFoundError)."""
        log = self._tip.log
        if second > log.size:
            raise NotFoundError(f"no tree of size {second} (tree size {log.size})")
        return log.consistency_proof(first, second)

    def locate(self, index: int) -> LeafLocation:
        """Block, submission and batch position of leaf ``index`` (one seek)."""
        if not 0 <= index < self.tree_size:
            raise NotFoundError(f"no leaf {index} (tree size {self.tree_size})")
        return locate(self._kv, index)

    def leaf_proof(self, index: int, size: int) -> LeafProof:
        """Leaf ``index`` with its inclusion proof in the tree of ``size``
        and its batch proof, reading the leaves they share once: ``0 <=
        index < size`` (ValueError), ``size <= tree_size`` (NotFoundError)."""
        log = self._tip.log
        if size > log.size:
            raise NotFoundError(f"no tree of size {size} (tree size {log.size})")
        return leaf_proof(self._kv, log, index, size)

    # --- state --------------------------------------------------------------

    def status(self, key: bytes) -> StatusRecord | None:
        """The current status under ``key`` (a doc id or a record key)."""
        return read_status(self._kv.get(VALUE_PREFIX + key))

    def state_proof(self, key: bytes, *, height: int | None = None) -> StateProof:
        """Proof of ``key``'s status (or absence) at the tip or at ``height``."""
        return self.prove_state(key, height=height)[1]

    def status_at(self, key: bytes, height: int) -> StatusRecord | None:
        """The status under ``key`` as of block ``height``."""
        return read_status(self.prove_state(key, height=height)[0])

    def prove_state(
        self, key: bytes, *, height: int | None = None
    ) -> tuple[bytes | None, StateProof]:
        """``key``'s state-map value (None: absent) and its proof as of
        ``height`` (default: the tip), from one consistent read.

        A past height needs the undo record of every later block:
        NoFinalCheckpointError once they are pruned (they are kept back to
        the latest final checkpoint).
        """
        with self._consistent() as (tip, kv):
            smap = self._state_at(tip, kv, height)
            return smap.get(key), smap.prove(key)

    def _state_at(self, tip: _Tip, kv: LevelKV, height: int | None) -> StateMap:
        top = tip.meta.height
        if height is None or height == top:
            return StateMap(kv, tip.meta.state_root)
        if not 0 <= height < top:
            raise NotFoundError(f"no block {height} (height {top})")
        cached = self._past
        if cached is None or cached[:2] != (height, top):
            root = self.header(height).state_root if height else EMPTY_ROOT
            cached = (height, top, past_overlay(kv, height, top), root)
            self._past = cached
        return StateMap(PastKV(kv, cached[2]), cached[3])

    def state_at_is_cheap(self, height: int) -> bool:
        """Whether the state as of ``height`` is at hand: the tip's, or the
        one kept from the last read at that height. If not, the first read
        decodes the undo records of every later block (megabytes each for
        large blocks), so a caller on an event loop hands it to a thread."""
        top = self._tip.meta.height
        cached = self._past
        return height == top or (cached is not None and cached[:2] == (height, top))

    def history(self, key: bytes) -> list[tuple[int, int]]:
        """(leaf index, height) of every leaf that changed ``key``, in order.

        For a document: its anchor, then each revoke or supersede naming it
        (as the old document, or as the new one).
        """
        return self.status_and_history(key).rows

    def status_and_history(self, key: bytes) -> StatusAndHistory:
        """``status(key)`` and ``history(key)`` as of one block, the tip: from
        one snapshot, so a block applied meanwhile cannot put a change in
        the history that the status does not show yet."""
        with self._consistent() as (tip, kv):
            rec = read_status(kv.get(VALUE_PREFIX + key))
            changes = self._changes(kv, key)
        out: dict[int, int] = {}
        if rec is not None and rec.anchor_leaf is not None:
            # Leaf locations are append-only: no snapshot needed.
            out[rec.anchor_leaf] = self.locate(rec.anchor_leaf).height
        out.update(changes)
        return StatusAndHistory(rec, sorted(out.items()), tip.meta.height)

    def changes(self, key: bytes) -> list[tuple[int, int]]:
        """(leaf index, height) of the leaves that changed ``key`` after it
        was first written, in order: the history without the anchor, from
        one scan (anchors get no history entry)."""
        return self._changes(self._kv, key)

    @staticmethod
    def _changes(kv: LevelKV, key: bytes) -> list[tuple[int, int]]:
        prefix = HISTORY + key
        return [
            (read_u64(hkey, len(prefix)), read_u64(value))
            for hkey, value in kv.scan(prefix, prefix_end(prefix))
        ]

    # --- checkpoints and cosignatures -------------------------------------

    def checkpoint(self, height: int | None = None) -> Checkpoint:
        """The checkpoint of block ``height`` (default: the tip)."""
        header = self.header(self.height if height is None else height)
        return Checkpoint(
            origin=self._genesis.origin,
            size=header.tree_size,
            root=header.log_root,
            state_root=header.state_root,
            height=header.height,
            block_hash=block_hash(header),
            time_ms=header.time_ms,
        )

    def cosignatures(self, height: int) -> list[Cosignature]:
        """The stored checkpoint signatures of ``height``, one per agency."""
        return [
            Cosignature(height=height, agency=agency, signature=sig)
            for agency, sig in read_cosignatures(self._kv, height)
        ]

    def add_cosignatures(self, height: int, sigs: Iterable[Cosignature]) -> int:
        """Store checkpoint signatures of block ``height``, one per agency.

        Each must verify with its agency's node key in the current trust
        list (VerificationError ``unknown_issuer`` or ``tampered``; then
        nothing is stored). Returns how many agencies were new.
        """
        sigs = list(sigs)
        with self._lock:
            message = self.checkpoint(height).body().encode()
            for sig in sigs:
                if sig.height != height:
                    raise ValueError(f"cosignature of {sig.height}, not {height}")
                check_cosignature(self.trust, message, sig)
            wb = self._db.write_batch(sync=False)
            added = merge_cosignatures(wb, self._kv, height, sigs)
            _write(wb, height)
            if added:
                self._finality.touched([height])
                self._final = None
                self.latest_final()
            return added

    def latest_final(self) -> tuple[Checkpoint, str] | None:
        """The highest checkpoint signed by a quorum of the current trust
        list's node keys, and its note with every valid signature.

        Writers refresh it as cosignatures arrive, so readers get the
        published answer without waiting for an apply; only a new trust list
        version makes a reader search (after new cosignatures only their
        heights are looked at; a new trust list rescans all).
        """
        published = self._final
        if published is not None and published[0] == self._tip.trust.version:
            return published[1]
        with self._lock:
            trust = self.trust
            final, changed = self._finality.latest(self._kv, trust, self.checkpoint)
            if final is not None and changed:
                self._prune_undo(final[0].height)
            self._final = (trust.version, final)
            return final

    def _prune_undo(self, final_height: int) -> None:
        """Undo records at or below a final height are never read again."""
        # Scanning from the floor, not from the first key, skips the
        # tombstones earlier prunes left behind.
        wb = self._db.write_batch(sync=False)
        start, stop = undo_key(self._undo_floor), undo_key(final_height + 1)
        for ukey, _ in self._kv.scan(start, stop):
            wb.delete(ukey)
        self._undo_floor = max(self._undo_floor, final_height + 1)
        self._past = None
        _write(wb, final_height)

    # --- snapshots ------------------------------------------------------------

    def export_snapshot(
        self, *, chunk_bytes: int = SNAPSHOT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        """The whole database as chunks (canonical ``[[key, value], ...]``),
        read from one LevelDB snapshot, so applies may go on meanwhile."""
        with self._consistent() as (_, kv):
            yield from export_chunks(kv, chunk_bytes)

    def import_snapshot(self, chunks: Iterable[bytes]) -> None:
        """Replace the whole database with ``export_snapshot`` chunks.

        The new database is built and checked beside this one, then swapped
        in by renames; a crash at any point leaves the old store or the new
        one (``open`` finishes an interrupted swap). If the snapshot does
        not check (CorruptStoreError, or ConfigError for another chain) the
        old store stays. Readers must not use the store meanwhile.
        """
        with self._lock:
            incoming = sibling(self._path, "incoming")
            shutil.rmtree(incoming, ignore_errors=True)
            try:
                write_snapshot(incoming, chunks)
                LedgerStore.open(incoming, self._genesis, full_check=False).close()
            except BaseException:
                shutil.rmtree(incoming, ignore_errors=True)
                raise
            with self._publish:
                self._db.close()
                swap_in(self._path, incoming)
                self._db = open_db(self._path, create=False)
                self._kv = LevelKV(self._db)
                self._nodes = _kept_nodes(self._kv)
                self._finality.reset()
                self._past = self._smap = self._final = None
                self._headers = Kept(KEPT_HEADERS)
                self._undo_floor = 0
                self._tip = self._load_tip()
        logger.info("snapshot installed path=%s height=%d", self._path, self.height)


def _kept_nodes(kv: LevelKV) -> CachedNodes:
    return CachedNodes(StoredNodes(kv), min_level=STORED_MIN_LEVEL, limit=KEPT_NODES)


def _write(wb: plyvel.WriteBatch, height: int) -> None:
    try:
        wb.write()
    except plyvel.Error as exc:
        raise StorageError(f"cannot write at height={height}: {exc}") from exc
