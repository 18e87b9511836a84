"""A node whose data folder was lost does not vote a stale node into
leadership (node.marker, consensus.raft.Raft.passive), on real processes.

Anchors are acknowledged while one follower is down, so they are committed
on the leader and the other follower only. Then both crash and that
follower's data folder is deleted. Voting with its empty log, it would
elect the stale follower and every acknowledged anchor would be gone (and
the old leader, back, would fork). Guarded, the two wait; once the old
leader is back it leads, and every acknowledged anchor is on every node.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.node.harness import running_cluster

AGENCIES = ("police", "justice", "health")
# Many election timeouts of the harness's fast Raft (25 ms ticks, 12 ticks).
NO_LEADER_S = 4.0


def test_a_node_that_lost_its_data_waits_instead_of_electing_a_stale_log(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path / "cluster", AGENCIES) as c:
        leader = c.wait_leader()
        wiped, stale = (a for a in AGENCIES if a != leader)
        c.kill(stale)
        doc_ids: list[bytes] = []
        for _ in range(3):
            raw, ids = c.anchors("police", 2)
            answer = c.post_submission(leader, raw)
            assert answer.status_code == 200, answer.text
            doc_ids += ids
        c.wait_until("the follower applied", lambda: c.has_document(wiped, ids[-1]))
        assert (c.dir / wiped / ".data-created").is_file()
        c.kill(leader)
        c.kill(wiped)
        c.wipe(wiped)
        c.start(wiped)
        c.start(stale)
        c.wait_healthy(wiped)
        c.wait_healthy(stale)
        time.sleep(NO_LEADER_S)
        roles = {a: c.cluster_info(a)["role"] for a in (wiped, stale)}
        assert "leader" not in roles.values(), roles
        assert "data folder lost" in c.log(wiped)
        raw, _ = c.anchors("police", 1)
        assert c.post_submission(stale, raw).status_code == 503
        c.start(leader)
        c.wait_healthy(leader)
        assert c.wait_leader() == leader  # the only log a quorum accepts
        height = c.wait_converged(AGENCIES)
        assert height >= 3
        for agency in AGENCIES:
            for doc_id in doc_ids:
                assert c.has_document(agency, doc_id), (agency, doc_id.hex())
        assert "caught up after a lost data folder" in c.log(wiped)
