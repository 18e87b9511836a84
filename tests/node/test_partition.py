"""A 5-node cluster whose leader is cut off in a minority (issue #4).

The three other nodes are frozen with SIGSTOP, so the leader keeps only one
follower: two of five, no quorum. It must acknowledge nothing, and neither
minority node may serve a checkpoint as final beyond what a quorum signed.
After SIGCONT the cluster recovers and converges.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.node.harness import Cluster, running_cluster

AGENCIES = ("police", "justice", "health", "land", "civil")


def _short_timeouts(cluster: Cluster) -> None:
    for agency in AGENCIES:
        cluster.edit_config(
            agency,
            lambda cfg: cfg.setdefault("limits", {}).update(submit_timeout_ms=2000),
        )


def test_leader_in_minority_acknowledges_nothing(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", AGENCIES, configure=_short_timeouts) as c:
        leader = c.wait_leader()
        raw, _ = c.anchors("police", 2)
        assert c.post_submission(leader, raw, wait="final").status_code == 200
        c.wait_converged(AGENCIES)
        before = c.final(leader)
        assert before is not None
        height = int(c.cluster_info(leader)["height"])

        # (1): cut the leader off with one follower.
        keep, *frozen = [a for a in AGENCIES if a != leader]
        for agency in frozen:
            c.pause(agency)
        minority = [leader, keep]

        # (2): nothing is acknowledged, through either node: a proposal the
        # leader took times out (504: it may still commit once healed), or,
        # once the leader has stepped down, there is none to take it (503).
        raw, doc_ids = c.anchors("justice", 1)
        for agency in minority:
            resp = c.post_submission(agency, raw, timeout=20)
            assert resp.status_code in (503, 504), resp.text
            assert resp.headers["content-type"].startswith("application/problem")
            slug = resp.json()["type"].rsplit("/", 1)[1]
            assert slug == {503: "unavailable", 504: "timeout"}[resp.status_code]

        # (3): the old leader steps down (check-quorum) and no checkpoint
        # beyond what a quorum signed is served as final.
        c.wait_until(
            "the leader to step down",
            lambda: c.cluster_info(leader)["role"] != "leader",
            timeout=10,
        )
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for agency in minority:
                assert c.final(agency) == before
                assert int(c.cluster_info(agency)["height"]) == height
                assert not c.has_document(agency, doc_ids[0])
            time.sleep(0.1)

        # (4): healed, the cluster elects a leader, takes writes, converges.
        for agency in frozen:
            c.resume(agency)
        new_leader = c.wait_leader(AGENCIES)
        raw, more = c.anchors("health", 1)
        resp = c.post_submission(new_leader, raw, wait="final")
        assert resp.status_code == 200, resp.text
        c.wait_converged(AGENCIES)
        assert all(c.has_document(a, more[0]) for a in AGENCIES)
        assert len({tuple(c.block_hashes(a)) for a in AGENCIES}) == 1
        # The write refused during the partition either committed everywhere
        # later (it had reached the old leader's log) or nowhere.
        assert len({c.has_document(a, doc_ids[0]) for a in AGENCIES}) == 1
