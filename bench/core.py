"""In-process figures: the log, the state map and the Raft core.

Each phase drives one module directly, with nothing between it and the
disk, so a slow cluster figure can be traced to the layer that costs it.
The store-level figures (a whole ``LedgerStore`` of 10^6 anchors: disk per
document, bundles, restart, memory, audit) are in ``bench.ledgerstore`` and
``bench.restart``, which this suite runs last.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path
from typing import Final

import plyvel

from bench import ceiling, ledgerstore, raftcore, restart
from bench.figures import Figure, Results, percentile, ratio, say, timed
from bench.fit import LogFit
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
PROOF_KEYS: Final = 500  # state proofs sampled per size
PROOF_VERIFIED: Final = 50  # inclusion proofs also checked against the root
STATE_TARGET: Final = 10**8


class EmptyKV:
    """A ``KVReader`` holding nothing: the state map then builds in memory
    from its own pending writes, which is all a proof size needs."""

    def get(self, key: bytes) -> bytes | None:
        return None


def run(profile: Profile, tmp: Path, ceilings: Results) -> list[Figure]:
    out: list[Figure] = []
    say(f"core: Merkle log, {profile.log_leaves:,} leaves")
    out += _log_phase(profile, tmp, ceilings)
    say(f"core: state map, {profile.state_update_keys:,} keys")
    out += _state_update_phase(profile, tmp, ceilings)
    say("core: Raft core")
    out += _raft_phase(profile)
    out += _store_phase(profile, tmp)
    return out


def _store_phase(profile: Profile, tmp: Path) -> list[Figure]:
    """The whole store, then a node restarted on it (see bench.restart)."""
    say(f"core: ledger store of up to {profile.ledger_entries:,} anchors")
    try:
        built = ledgerstore.build(profile, tmp)
    except Exception as exc:  # reported as figures, the run goes on
        why = f"building the store failed: {type(exc).__name__}: {exc}"
        say(f"core: {why}")
        # The state proof does not need the store: size it in memory.
        return [*_state_proof_phase(profile), *ledgerstore.not_built(why)]
    say(f"core: sizing the store ({built.tree_size:,} anchors)")
    out = ledgerstore.figures(built)
    say("core: a node restarted on the store; audit")
    try:
        out += restart.run(profile, built, tmp)
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
                proof_figures = _inclusion(profile, kv, log.size)
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


def _inclusion(profile: Profile, kv: LevelKV, size: int) -> list[Figure]:
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
    return [
        Figure(
            name="inclusion_proof_ms",
            value=mean_ms,
            unit="ms",
            goal=1.0,
            higher_is_better=False,
            note=(
                f"mean of {len(times):,} proofs at {size:,} leaves from LevelDB "
                f"(p99 {1000 * percentile(times, 0.99):.3f} ms), random leaves"
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
    """Proof sizes at a few sizes, fitted to a + b·log2(n), extrapolated."""
    smap = StateMap(EmptyKV(), EMPTY_ROOT)
    value = _status_value()
    rng = random.Random(3)
    have = 0
    points: list[tuple[int, float]] = []
    for size in sorted(profile.state_sizes):
        sample: list[bytes] = []
        while have < size:
            count = min(200_000, size - have)
            keys = [os.urandom(32) for _ in range(count)]
            smap.update(dict.fromkeys(keys, value))
            have += count
            sample = keys  # the newest keys are as deep as any
        picked = rng.sample(sample, min(PROOF_KEYS, len(sample)))
        sizes = [len(smap.prove(k).to_bytes()) for k in picked]
        points.append((size, sum(sizes) / len(sizes)))
    fit = LogFit.of(points)
    measured = ", ".join(f"{n:,}: {b:.0f}" for n, b in points)
    return [
        Figure(
            name="state_proof_bytes_at_1e8",
            value=fit.at(STATE_TARGET),
            unit="bytes",
            goal=1_200,
            higher_is_better=False,
            note=(
                "EXTRAPOLATED, not measured: mean canonical proof size "
                f"(StateProof.to_bytes) of present keys measured at {measured} "
                f"keys, fitted as {fit.describe()} and evaluated at "
                f"log2(1e8) = {math.log2(STATE_TARGET):.1f}"
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
