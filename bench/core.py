"""In-process figures: the log, the state map, Raft, and state proof sizes.

Each phase drives one module directly, with nothing between it and the
disk, so a slow cluster figure can be traced to the layer that costs it.
Raft runs twice: the pure core (``bench.raftcore``), then three cores with
their LevelDB logs over the real peer transport (``bench.transport``).
State proofs are sized at 10^8 keys on equivalent trees
(``bench.statesize``).
The store-level figures (a whole ``LedgerStore`` of 10^6 anchors: disk per
document, bundles, restart, memory, audit) are in ``bench.ledgerstore`` and
``bench.restart``, which this suite runs last.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import plyvel

from bench import ceiling, ledgerstore, raftcore, restart, statesize, transport
from bench.figures import Figure, Results, percentile, ratio, say, timed
from bench.leaves import LeafMaker
from bench.profile import Profile
from ledger.entries import Anchor
from ledger.merkle import MerkleLog, leaf_hash, verify_inclusion
from ledger.statemap import EMPTY_ROOT, StateMap
from ledger.status import StatusRecord
from ledger.store_keys import (
    STORED_MIN_LEVEL,
    LevelKV,
    StoredNodes,
    leaf_key,
    node_key,
)

APPEND_BATCH: Final = 10_000
STATE_BATCH: Final = 10_000
PROOF_VERIFIED: Final = 50  # inclusion proofs also checked against the root
PROOF_COUNTED: Final = 200  # inclusion proofs whose reads are counted


def run(profile: Profile, tmp: Path, ceilings: Results) -> list[Figure]:
    out: list[Figure] = []
    say(f"core: Merkle log, {profile.log_leaves:,} leaves")
    out += _log_phase(profile, tmp, ceilings)
    say(f"core: state map, {profile.state_update_keys:,} keys")
    out += _state_update_phase(profile, tmp, ceilings)
    say("core: Raft core")
    out += _raft_phase(profile)
    say("core: Raft over LevelDB and the peer transport")
    out.append(_transport_phase(profile, tmp, ceilings))
    say(f"core: state proofs at {profile.state_proof_keys:,} keys")
    out += _state_proof_phase(profile)
    out += _store_phase(profile, tmp, ceilings)
    return out


def _store_phase(profile: Profile, tmp: Path, ceilings: Results) -> list[Figure]:
    """The whole store, then a node restarted on it (see bench.restart)."""
    say(f"core: ledger store of up to {profile.ledger_entries:,} anchors")
    try:
        built = ledgerstore.build(profile, tmp)
    except Exception as exc:  # reported as figures, the run goes on
        why = f"building the store failed: {type(exc).__name__}: {exc}"
        say(f"core: {why}")
        return ledgerstore.not_built(why)
    say(f"core: sizing the store ({built.tree_size:,} anchors)")
    out = ledgerstore.figures(built, ceilings)
    say("core: a node restarted on the store; audit")
    try:
        out += restart.run(profile, built, tmp, ceilings)
    except Exception as exc:  # reported as figures, the run goes on
        why = f"the node on the built store failed: {type(exc).__name__}: {exc}"
        say(f"core: {why}")
        out += restart.not_run(why)
    return out


# --- the Merkle log in LevelDB -----------------------------------------------


def _log_phase(profile: Profile, tmp: Path, ceilings: Results) -> list[Figure]:
    """Append leaves as ``LedgerStore.apply`` does (leaf bytes and log nodes
    from level 2 up, one synced write batch per block), then prove."""
    path = Path(tempfile.mkdtemp(prefix="log-", dir=tmp))
    db = plyvel.DB(str(path), create_if_missing=True)
    try:
        kv = LevelKV(db)
        log = MerkleLog(StoredNodes(kv), 0)
        maker = LeafMaker()
        seconds = 0.0
        proof_figures: list[Figure] = []
        while log.size < profile.log_leaves:
            count = min(APPEND_BATCH, profile.log_leaves - log.size)
            leaves = maker.leaves(count)
            first = log.size
            with timed() as t:
                nodes = log.append([leaf_hash(x) for x in leaves])
                wb = db.write_batch(sync=True)
                for i, leaf in enumerate(leaves):
                    wb.put(leaf_key(first + i), leaf)
                for level, index, digest in nodes:
                    if level >= STORED_MIN_LEVEL:
                        wb.put(node_key(level, index), digest)
                wb.write()
            seconds += t.elapsed
            if log.size == profile.proof_size:
                proof_figures = _inclusion(profile, kv, log.size, ceilings)
        rate = log.size / seconds
    finally:
        db.close()
    appends = Figure(
        name="store_appends_per_s",
        value=rate,
        unit="leaves/s",
        goal=200_000,
        ceiling_ratio=ratio(rate, ceilings.value(ceiling.LEVELDB)),
        note=(
            f"{log.size:,} anchor leaves in synced batches of {APPEND_BATCH:,}: "
            "leaf hash, MerkleLog.append, leaf and node puts (the log part of "
            "LedgerStore.apply); ceiling: LevelDB batched puts"
        ),
    )
    return [appends, *proof_figures]


class CountingKV:
    """A ``RawKV`` that counts the reads through it: point gets, range scans
    (one seek each) and the values the scans yield."""

    def __init__(self, kv: LevelKV) -> None:
        self._kv = kv
        self.gets = 0
        self.scans = 0
        self.scanned = 0

    def get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return self._kv.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self.scans += 1
        for item in self._kv.scan(start, stop, reverse=reverse):
            self.scanned += 1
            yield item


def _inclusion(
    profile: Profile, kv: LevelKV, size: int, ceilings: Results
) -> list[Figure]:
    # A fresh log over the stored nodes, as a restarted store opens it.
    log = MerkleLog(StoredNodes(kv), size)
    root = log.root()
    rng = random.Random(8)
    indexes = [rng.randrange(size) for _ in range(profile.proof_samples)]
    times: list[float] = []
    for n, index in enumerate(indexes):
        with timed() as t:
            proof = log.inclusion_proof(index, size)
        times.append(t.elapsed)
        if n < PROOF_VERIFIED:
            leaf = kv.get(leaf_key(index))
            assert leaf is not None
            verify_inclusion(leaf_hash(leaf), index, size, proof, root)
    mean_ms = 1000 * sum(times) / len(times)
    # What the proofs read, counted on a second log (so the timed one pays
    # no counting): each get or scan is at least one LevelDB read, and each
    # leaf a scan yields is hashed (levels below STORED_MIN_LEVEL are not
    # stored). Their cost at the machine's rates bounds a proof's time.
    counting = CountingKV(kv)
    counted = MerkleLog(StoredNodes(counting), size)
    for index in indexes[:PROOF_COUNTED]:
        counted.inclusion_proof(index, size)
    reads = (counting.gets + counting.scans) / PROOF_COUNTED
    hashes = counting.scanned / PROOF_COUNTED
    gets = ceilings.value(ceiling.LEVELDB_GETS)
    sha = ceilings.value(ceiling.SHA256)
    floor_ms = 1000 * (reads / gets + hashes / sha) if gets and sha else None
    return [
        Figure(
            name="inclusion_proof_ms",
            value=mean_ms,
            unit="ms",
            goal=1.0,
            higher_is_better=False,
            ceiling_ratio=ratio(floor_ms, mean_ms),
            note=(
                f"mean of {len(times):,} proofs at {size:,} leaves from LevelDB "
                f"(p99 {1000 * percentile(times, 0.99):.3f} ms), random leaves; "
                f"ceiling: the {reads:.1f} LevelDB reads and {hashes:.1f} leaf "
                f"hashes a proof needs (mean of {PROOF_COUNTED}) at "
                "leveldb_random_gets_per_s and sha256_small_per_s"
                + ("" if floor_ms is None else f", {floor_ms:.3f} ms")
            ),
        )
    ]


# --- the state map -------------------------------------------------------------


def _status_value() -> bytes:
    anchor = Anchor(
        issuer="agency-01",
        doc_id=bytes(32),
        doc_type="criminal_record",
        issued_at=1_767_225_600_000,
    )
    return StatusRecord.anchored(anchor, leaf=123_456_789).encode()


def _state_update_phase(profile: Profile, tmp: Path, ceilings: Results) -> list[Figure]:
    """New keys in batches, each batch's writes committed in one write batch,
    as a block does. The rate is over the second half of the keys, so it is
    the rate of a map that already holds as many."""
    path = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))
    db = plyvel.DB(str(path), create_if_missing=True)
    value = _status_value()
    total = profile.state_update_keys
    try:
        smap = StateMap(LevelKV(db), EMPTY_ROOT)
        done = 0
        seconds = 0.0
        while done < total:
            count = min(STATE_BATCH, total - done)
            items: dict[bytes, bytes | None] = {
                os.urandom(32): value for _ in range(count)
            }
            with timed() as t:
                _, writes = smap.update(items)
                wb = db.write_batch(sync=True)
                for key, raw in writes.items():
                    if raw is None:
                        wb.delete(key)
                    else:
                        wb.put(key, raw)
                wb.write()
                smap.mark_committed()
            done += count
            if done > total // 2:
                seconds += t.elapsed
        rate = (total - total // 2) / seconds
    finally:
        db.close()
    return [
        Figure(
            name="state_updates_per_s",
            value=rate,
            unit="keys/s",
            goal=30_000,
            ceiling_ratio=ratio(rate, ceilings.value(ceiling.LEVELDB)),
            note=(
                f"new keys in batches of {STATE_BATCH:,} into a LevelDB state map "
                f"growing from {total // 2:,} to {total:,} keys"
            ),
        )
    ]


def _state_proof_phase(profile: Profile) -> list[Figure]:
    """Present keys' proofs in a map of ``state_proof_keys`` random keys,
    each measured on an equivalent tree (``bench.statesize``)."""
    n = profile.state_proof_keys
    proofs = statesize.sample(n, profile.state_proof_samples, _status_value(), 3)
    sizes = [p.bytes for p in proofs]
    depths = [p.depth for p in proofs]
    siblings = [p.siblings for p in proofs]
    return [
        Figure(
            name="state_proof_bytes_at_1e8",
            value=sum(sizes) / len(sizes),
            unit="bytes",
            goal=1_200,
            higher_is_better=False,
            note=(
                f"measured, not extrapolated: mean StateProof.to_bytes of "
                f"{len(sizes):,} present keys in a map of {n:,} random keys "
                f"(max {max(sizes):,} bytes; depth mean "
                f"{sum(depths) / len(depths):.1f}, max {max(depths)}; "
                f"{sum(siblings) / len(siblings):.1f} non-empty siblings), each "
                "proved and verified in a real StateMap holding the key and one "
                "key per non-empty sibling subtree on its path, drawn level by "
                "level as Binomial(m, 1/2)"
            ),
        )
    ]


# --- the Raft core -------------------------------------------------------------


def _raft_phase(profile: Profile) -> list[Figure]:
    rate = raftcore.measure(profile.raft_entries, profile.raft_seconds)
    return [
        Figure(
            name="raft_core_entries_per_s",
            value=rate.per_s,
            unit="entries/s",
            goal=100_000,
            note=(
                f"{rate.entries:,} entries of {len(raftcore.PAYLOAD)} bytes through "
                f"3 in-memory Raft cores, {raftcore.BATCH} proposals per round, "
                "RaftConfig defaults as the node uses them"
            ),
        )
    ]


def _transport_phase(profile: Profile, tmp: Path, ceilings: Results) -> Figure:
    path = Path(tempfile.mkdtemp(prefix="raft-transport-", dir=tmp))
    try:
        return transport.run(profile, path, ceilings)
    except Exception as exc:  # reported as a figure, the run goes on
        why = f"{type(exc).__name__}: {exc}"
        say(f"core: Raft over the transport failed: {why}")
        return transport.not_run(why)
