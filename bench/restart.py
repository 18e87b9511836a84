"""A real node on the big store: restart time, memory, and an audit from it.

The store ``bench.ledgerstore`` built is what a node's ledger looks like;
its Raft log is then set to what the node leaves after a snapshot and
compaction at the last applied index (hard state committed there, a
snapshot naming the chain's height and tip hash, no entries). So the node
process started here is a node restarting over 10^6 (full: 10^7) entries,
and must serve without replaying anything.

1. restart_seconds: from spawning ``ledger node run`` to the first 200 of
   ``GET /healthz``.
2. node_memory_mb: the node's resident set after it has served the audit
   below and a round of document and bundle reads.
3. audit_entries_per_s: the auditor ``ledger audit`` runs (``cli.audit``),
   in this process, replaying the chain from the node over HTTP with full
   verification; bounded in time, so a quick run audits a prefix.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Final

import httpx

from bench import ceiling
from bench.figures import Figure, Results, missing, ratio
from bench.ledgerstore import REPO, BuiltStore
from bench.procs import Children, resident_mb, wait_http
from bench.profile import Profile
from cli.audit import audit
from cli.client import LedgerClient
from cli.sources import ClientSource
from consensus.durable import LevelDBStorage
from consensus.messages import ConfState, HardState, Snapshot
from node.catchup import snapshot_data
from node.config import load_config

READS: Final = 200  # document + bundle reads before the memory reading
AUDIT_DOCUMENTS: Final = 200  # served statuses the audit compares


class _TimeUpError(Exception):
    """Raised from the audit's progress hook when its time is up."""


def not_run(why: str) -> list[Figure]:
    return [
        missing("restart_seconds", "s", why, goal=5.0, higher_is_better=False),
        missing("node_memory_mb", "MB", why, goal=250, higher_is_better=False),
        missing("audit_entries_per_s", "entries/s", why, goal=100_000),
    ]


def run(
    profile: Profile, built: BuiltStore, tmp: Path, ceilings: Results
) -> list[Figure]:
    _compacted_raft_log(built)
    config = built.cluster / built.agency / "node.toml"
    cfg = load_config(config)
    url = f"http://{cfg.api_host}:{cfg.api_port}"
    size = f"{built.tree_size:,} entries"
    with Children() as children:
        started = time.perf_counter()
        children.start(
            "node",
            [
                sys.executable,
                "-m",
                "cli.main",
                "node",
                "run",
                "--config",
                str(config),
                "--log-level",
                "warning",
            ],
            log=tmp / "restart-node.log",
            cwd=REPO,
        )
        try:
            serving = wait_http(
                f"{url}/healthz",
                timeout_s=300,
                alive=lambda: children.running("node"),
            )
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{children.tail('node')}") from exc
        restart = Figure(
            name="restart_seconds",
            value=serving - started,
            unit="s",
            goal=5.0,
            higher_is_better=False,
            note=f"spawn of `ledger node run` to the first /healthz 200, {size}",
        )
        wait_http(f"{url}/v1/checkpoint", timeout_s=60)
        audited = _audit(profile, built, url, ceilings)
        _reads(url, built)
        held = resident_mb(children.pid("node"))
    memory = Figure(
        name="node_memory_mb",
        value=held.anon,
        unit="MB",
        goal=250,
        higher_is_better=False,
        note=(
            f"the node's own resident memory (RssAnon: heap, LevelDB's cache "
            f"and buffers) after restart, the audit and {READS} document and "
            f"bundle reads, {size}, with the background integrity walk; with "
            f"the store's memory-mapped table files, which the kernel drops "
            f"when memory is wanted, {held.total:.0f} MB resident "
            f"(peak {held.peak:.0f} MB)"
        ),
    )
    return [restart, memory, audited]


def _compacted_raft_log(built: BuiltStore) -> None:
    """The Raft log a node keeps after snapshotting at its applied index."""
    voters = ConfState(voters=(built.agency,))
    path = built.cluster / built.agency / "data" / "raft"
    with LevelDBStorage(path, voters) as storage:
        index = built.raft_index
        storage.save_ready(
            HardState(term=1, vote=built.agency, commit=index),
            (),
            Snapshot(
                index=index,
                term=1,
                conf_state=voters,
                data=snapshot_data(built.height, built.last_hash),
            ),
        )


def _audit(profile: Profile, built: BuiltStore, url: str, ceilings: Results) -> Figure:
    progress = [0, 0.0]  # entries, when
    started = time.perf_counter()

    def tick(blocks: int, entries: int) -> None:
        now = time.perf_counter()
        progress[0], progress[1] = entries, now - started
        if now - started > profile.audit_seconds:
            raise _TimeUpError

    complete = True
    with LedgerClient(url, timeout=120) as client:
        try:
            report = audit(
                ClientSource(client),
                built.genesis,
                documents=AUDIT_DOCUMENTS,
                progress=tick,
            )
            entries, seconds = report.entries, report.seconds
        except _TimeUpError:
            complete = False
            entries, seconds = int(progress[0]), float(progress[1])
    if not entries:
        return missing(
            "audit_entries_per_s",
            "entries/s",
            "the audit replayed no entry in its time bound",
            goal=100_000,
        )
    how = (
        f"whole chain of {built.tree_size:,} entries"
        if complete
        else (
            f"first {entries:,} of {built.tree_size:,} entries (time bound "
            f"{profile.audit_seconds:.0f} s; the replay slows as its state grows)"
        )
    )
    rate = entries / seconds
    return Figure(
        name="audit_entries_per_s",
        value=rate,
        unit="entries/s",
        goal=100_000,
        # Replaying an entry means at least hashing it into the log.
        ceiling_ratio=ratio(rate, ceilings.value(ceiling.SHA256)),
        note=(
            f"cli.audit (what `ledger audit` runs) from the node over HTTP, "
            f"full verification, {how}; ceiling: one leaf hash per entry "
            "(sha256_small_per_s)"
        ),
    )


def _reads(url: str, built: BuiltStore) -> None:
    """Status and bundle reads, so memory is measured on a node that has
    served some, not an idle one."""
    with httpx.Client(timeout=30) as client:
        for doc_id in built.doc_ids[: READS // 2]:
            for suffix in ("", "/bundle"):
                response = client.get(f"{url}/v1/documents/{doc_id.hex()}{suffix}")
                if response.status_code != 200:
                    raise RuntimeError(
                        f"document {doc_id.hex()} on the restarted node: "
                        f"{response.status_code} {response.text[:200]}"
                    )
