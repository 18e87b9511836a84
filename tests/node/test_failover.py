"""The leader SIGKILLed under a steady stream of writes (issue #4).

No acknowledged anchor may be lost: each one is looked up on every surviving
node and on the restarted one. Writes must succeed again under a new leader,
and all nodes must end with the same blocks and the same final checkpoint.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx

from tests.node.harness import MSGPACK, Cluster, running_cluster

AGENCIES = ("police", "justice", "health")


class Writer(threading.Thread):
    """Sends small anchor batches to any live node until told to stop."""

    def __init__(self, cluster: Cluster, agency: str, alive: list[str]) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.agency = agency
        self.alive = alive
        self.stop = threading.Event()
        self.acked: list[tuple[float, bytes]] = []  # (when, doc id)
        self.failures = 0
        # An assertion in a thread would end it silently; answers other than
        # "no leader yet" or "timed out" are kept and checked by the test.
        self.unexpected: list[str] = []

    def run(self) -> None:
        rng = random.Random(self.agency)
        with httpx.Client(timeout=15) as http:
            while not self.stop.is_set():
                raw, doc_ids = self.cluster.anchors(self.agency, 3)
                target = rng.choice(list(self.alive))
                try:
                    resp = http.post(
                        f"{self.cluster.url(target)}/v1/submissions",
                        content=raw,
                        headers=MSGPACK,
                    )
                except httpx.HTTPError:
                    self.failures += 1
                    continue
                if resp.status_code == 200:
                    when = time.monotonic()
                    self.acked += [(when, d) for d in doc_ids]
                else:
                    if resp.status_code not in (503, 504):
                        self.unexpected.append(f"{resp.status_code} {resp.text[:300]}")
                    self.failures += 1
                    time.sleep(0.02)


def test_leader_killed_under_load_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path / "c", AGENCIES) as cluster:
        leader = cluster.wait_leader()
        alive = [a for a in AGENCIES if a != leader]
        targets = list(AGENCIES)
        writers = [Writer(cluster, a, targets) for a in ("police", "justice")]
        for w in writers:
            w.start()

        # (1): a steady stream, then the leader dies mid-flight.
        cluster.wait_until("writes", lambda: all(len(w.acked) > 30 for w in writers))
        killed_at = time.monotonic()
        cluster.kill(leader)
        targets.remove(leader)

        # (2): writes succeed again under a new leader.
        new_leader = cluster.wait_leader(alive)
        assert new_leader != leader
        cluster.wait_until(
            "writes after the failover",
            lambda: all(any(t > killed_at for t, _ in w.acked) for w in writers),
        )
        time.sleep(0.5)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(timeout=30)
            assert not w.is_alive()
            assert not w.unexpected, w.unexpected[:5]
        acked = [d for w in writers for _, d in w.acked]
        resumed = min(t for w in writers for t, _ in w.acked if t > killed_at)
        print(f"acked={len(acked)} failover_s={resumed - killed_at:.2f}")

        # (3): every acknowledged anchor is on every surviving node...
        height = cluster.wait_converged(alive)
        for agency in alive:
            missing = [d.hex() for d in acked if not cluster.has_document(agency, d)]
            assert not missing, f"{agency} lost {len(missing)} acknowledged anchors"

        # (4): ...and on the old leader once it is back.
        cluster.start(leader)
        cluster.wait_healthy(leader)
        cluster.wait_height(leader, height)
        assert cluster.wait_converged(AGENCIES) >= height
        assert all(cluster.has_document(leader, d) for d in acked)
        hashes = {tuple(cluster.block_hashes(a)) for a in AGENCIES}
        assert len(hashes) == 1
        assert len({cluster.final(a) for a in AGENCIES}) == 1
