"""How big and how long each benchmark runs: the quick and the full profile.

The quick profile (``make bench``) must finish in under five minutes on two
cores, so it measures the size-dependent figures at 10^6 entries; the full
profile (``make bench-full``) at 10^7. Every phase is bounded both by a count
and by a time, so a slow build never runs away: a phase that hits its time
bound reports the size it reached in its figures' notes. The store build's
bound also shrinks to keep the whole quick run near ``total_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    name: str
    # bench/ceiling.py: wall seconds per primitive.
    ceiling_seconds: float
    # bench/core.py
    log_leaves: int  # leaves appended for store_appends_per_s
    proof_size: int  # tree size of inclusion_proof_ms
    proof_samples: int
    state_proof_keys: int  # keys in the map the state proof is sized in
    state_proof_samples: int  # present keys' proofs sized there
    state_update_keys: int  # keys written for state_updates_per_s
    raft_entries: int  # entries through the pure Raft core
    raft_seconds: float
    ledger_entries: int  # anchors in the store restart/memory/audit use
    ledger_seconds: float  # time bound on building that store
    # The whole run's target; the store build, the one phase whose length
    # is elastic, stops early enough to leave ``reserve_seconds`` for the
    # phases after it. None: no target.
    total_seconds: float | None
    reserve_seconds: float
    audit_seconds: float
    # bench/cluster.py and bench/etcd.py share the load shape, so etcd is
    # driven exactly like the ledger.
    single_concurrency: int
    single_seconds: float
    single_max: int
    batch_size: int
    batch_concurrency: int
    batched_seconds: float
    batched_max_batches: int
    latency_samples: int
    latency_seconds: float
    verify_max: int | None  # single-submission docs read back per node
    lookup_concurrency: int
    lookup_seconds: float
    failover_rounds: int
    # bench/transport.py: Raft over LevelDB and the peer transport.
    transport_entries: int
    transport_seconds: float


QUICK = Profile(
    name="quick",
    ceiling_seconds=1.0,
    log_leaves=1_000_000,
    proof_size=1_000_000,
    proof_samples=2_000,
    state_proof_keys=10**8,
    state_proof_samples=1_000,
    state_update_keys=100_000,
    raft_entries=200_000,
    raft_seconds=5.0,
    ledger_entries=1_000_000,
    ledger_seconds=150.0,
    total_seconds=270.0,
    reserve_seconds=125.0,
    audit_seconds=20.0,
    single_concurrency=64,
    single_seconds=8.0,
    single_max=40_000,
    batch_size=1_000,
    batch_concurrency=4,
    batched_seconds=8.0,
    batched_max_batches=400,
    latency_samples=200,
    latency_seconds=5.0,
    verify_max=5_000,
    lookup_concurrency=32,
    lookup_seconds=5.0,
    failover_rounds=1,
    transport_entries=200_000,
    transport_seconds=4.0,
)

FULL = Profile(
    name="full",
    ceiling_seconds=3.0,
    log_leaves=10_000_000,
    proof_size=1_000_000,
    proof_samples=10_000,
    state_proof_keys=10**8,
    state_proof_samples=10_000,
    state_update_keys=2_000_000,
    raft_entries=2_000_000,
    raft_seconds=60.0,
    ledger_entries=10_000_000,
    ledger_seconds=4 * 3600.0,
    total_seconds=None,
    reserve_seconds=0.0,
    audit_seconds=600.0,
    single_concurrency=64,
    single_seconds=30.0,
    single_max=500_000,
    batch_size=1_000,
    batch_concurrency=4,
    batched_seconds=30.0,
    batched_max_batches=5_000,
    latency_samples=1_000,
    latency_seconds=20.0,
    verify_max=None,
    lookup_concurrency=32,
    lookup_seconds=20.0,
    failover_rounds=3,
    transport_entries=2_000_000,
    transport_seconds=30.0,
)
