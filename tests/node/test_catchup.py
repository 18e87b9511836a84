"""Followers that fall behind come back (issue #4).

A restarted follower catches up from the leader's log; a follower whose data
directory was deleted rejoins by snapshot once the leader has compacted the
entries it would need (a small ``snapshot_interval``, or a small
``snapshot_bytes``, makes that happen after a few blocks), re-deriving every
block from the blocks its peers serve.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.node.harness import Cluster, running_cluster

AGENCIES = ("police", "justice", "health")


# Either trigger alone: a few entries, or a few entries' worth of bytes (a
# batch of one two-anchor submission is about 430 bytes of entry data).
TRIGGERS = {"entries": {"snapshot_interval": 6}, "bytes": {"snapshot_bytes": 1500}}
SNAPSHOT_INTERVAL = 6  # the writes below assume snapshots this often or more


def _small_snapshots(trigger: str) -> Callable[[Cluster], None]:
    def configure(cluster: Cluster) -> None:
        for agency in AGENCIES:
            cluster.edit_config(
                agency, lambda cfg: cfg["raft"].update(TRIGGERS[trigger])
            )

    return configure


def _write(cluster: Cluster, blocks: int) -> list[bytes]:
    doc_ids: list[bytes] = []
    for i in range(blocks):
        raw, ids = cluster.anchors(AGENCIES[i % 3], 2)
        resp = cluster.post_submission(cluster.wait_leader(), raw)
        assert resp.status_code == 200, resp.text
        doc_ids += ids
    return doc_ids


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_followers_catch_up_and_rejoin(tmp_path: Path, trigger: str) -> None:
    configure = _small_snapshots(trigger)
    with running_cluster(tmp_path / "c", AGENCIES, configure=configure) as c:
        leader = c.wait_leader()
        first, second = [a for a in AGENCIES if a != leader]

        # (1): a follower killed and restarted catches up from the log.
        c.kill(first, signal.SIGKILL)
        missed = _write(c, 2)
        c.start(first)
        c.wait_healthy(first)
        c.wait_converged(AGENCIES)
        assert all(c.has_document(first, d) for d in missed)
        assert "catching up" not in c.log(first)

        # (2): a follower whose data is deleted, after the leader compacted
        # its log past everything, rejoins by snapshot.
        c.kill(second, signal.SIGKILL)
        c.wipe(second)
        missed += _write(c, 3 * SNAPSHOT_INTERVAL)
        assert "raft snapshot" in c.log(c.wait_leader())
        c.start(second)
        c.wait_healthy(second)
        height = c.wait_converged(AGENCIES)
        assert "caught up height=" in c.log(second)
        assert all(c.has_document(second, d) for d in missed)
        hashes = {tuple(c.block_hashes(a)) for a in AGENCIES}
        assert len(hashes) == 1 and len(hashes.pop()) == height

        # (3): and takes part in what follows.
        more = _write(c, 2)
        c.wait_converged(AGENCIES)
        assert all(c.has_document(second, d) for d in more)
