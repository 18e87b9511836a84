"""An idle ledger keeps its checkpoints fresh (Node._maybe_refresh): with no
submissions, the leader makes an empty block every ``[batch] refresh_ms``,
every node cosigns it, and the latest final checkpoint stays younger than
the age verifiers accept, on real node processes. The audit replays those
empty blocks like any other.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ledger.verify import verify_bundle
from tests.node.harness import ROOT, Cluster, now_ms, running_cluster

AGENCIES = ("police", "justice", "health")
REFRESH_MS = 1_500
MAX_AGE_MS = 6_000


def _configure(cluster: Cluster) -> None:
    def change(cfg: dict[str, Any]) -> None:
        cfg.setdefault("batch", {})["refresh_ms"] = REFRESH_MS
        cfg.setdefault("limits", {})["checkpoint_max_age_ms"] = MAX_AGE_MS

    for agency in AGENCIES:
        cluster.edit_config(agency, change)


def test_an_idle_ledger_makes_empty_blocks_and_its_documents_stay_valid(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path / "cluster", AGENCIES, configure=_configure) as c:
        leader = c.wait_leader()
        raw, (doc_id,) = c.anchors("police", 1)
        answer = c.post_submission(leader, raw)
        assert answer.status_code == 200, answer.text
        anchored_at = answer.json()["height"]
        # Idle for longer than a verifier accepts a checkpoint's age.
        time.sleep(MAX_AGE_MS / 1000 + 1)
        for agency in AGENCIES:
            info = c.cluster_info(agency)
            assert info["tree_size"] == 1  # no leaves: only empty blocks
            assert info["height"] >= anchored_at + 3, info
        c.wait_converged(AGENCIES)
        final = c.checkpoint("justice")
        assert final is not None
        age = now_ms() - int(final["time"])
        assert age < MAX_AGE_MS, f"final checkpoint {age} ms old"
        bundle = c.get("justice", f"/v1/documents/{doc_id.hex()}/bundle").json()
        verdict = verify_bundle(bundle, c.trust, now_ms=now_ms(), max_age_ms=MAX_AGE_MS)
        assert verdict.status == "valid", verdict
        page = c.get("health", f"/v/{doc_id.hex()}", lang="en")
        assert 'data-status="valid"' in page.text
        genesis = str(c.dir / "genesis.json")
        audit = ["audit", "--node", c.url("health"), "--trust", genesis]
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *audit],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "proposed an empty block to keep checkpoints fresh" in c.log(leader)
