"""The benchmark's results file, the README table made from it, and the
load generator's end-of-run check (issue #8).

No benchmark runs here: the results are the ``bench/results/latest.json``
that ``make bench`` wrote last, and the check of acknowledged writes is fed
served pages in memory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import statistics
from pathlib import Path
from typing import Any, Final

import pytest

import bench.submit
from bench import readme
from bench.figures import Figure
from bench.http1 import Reply
from bench.leaves import LeafMaker
from bench.load import LostWriteError, Request
from bench.statesize import DictKV, binomial_half, proof_for_path, sample
from bench.submit import Issuer, Ledger, check_leaves
from ledger.keys import SigningKey
from ledger.statemap import EMPTY_ROOT, StateMap

ROOT: Final = Path(__file__).resolve().parent.parent
LATEST: Final = ROOT / "bench" / "results" / "latest.json"
# Every figure an issue asks `make bench` to print (issues #2 to #8).
REQUIRED: Final = (
    # the ceiling (#8)
    "ed25519_sign_per_s",
    "ed25519_verify_per_s",
    "sha256_small_per_s",
    "leveldb_batched_puts_per_s",
    "fsync_per_s",
    # the ledger core (#2)
    "store_appends_per_s",
    "inclusion_proof_ms",
    "stored_bytes_per_leaf",
    # consensus (#3)
    "raft_core_entries_per_s",
    "raft_transport_entries_per_s",
    # the cluster (#4)
    "batched_anchors_per_s",
    "single_submissions_per_s",
    "commit_latency_p50_ms",
    "commit_latency_p99_ms",
    "failover_seconds",
    # the API (#5)
    "lookups_per_s",
    "lookup_p99_ms",
    # the audit (#6)
    "audit_entries_per_s",
    # the state map (#7)
    "state_updates_per_s",
    "state_proof_bytes_at_1e8",
    # the store as a whole (#8)
    "restart_seconds",
    "node_memory_mb",
    "disk_bytes_per_document",
    "bundle_bytes",
)
FIGURE_KEYS: Final = {"name", "value", "unit", "goal", "higher_is_better"}


@pytest.fixture(scope="module")
def latest() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(LATEST.read_text(encoding="utf-8"))
    return results


def _figures(latest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in latest["figures"]}


def test_results_have_the_documented_shape(latest: dict[str, Any]) -> None:
    assert set(latest) == {"machine", "versions", "figures"}
    assert isinstance(latest["machine"], dict) and latest["machine"]
    assert isinstance(latest["versions"], dict) and latest["versions"]
    names = [f["name"] for f in latest["figures"]]
    assert len(names) == len(set(names))
    for fig in latest["figures"]:
        assert set(fig) >= FIGURE_KEYS, fig
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", fig["name"]), fig["name"]
        assert fig["value"] is None or isinstance(fig["value"], int | float)
        assert fig["goal"] is None or isinstance(fig["goal"], int | float)
        assert isinstance(fig["higher_is_better"], bool)
        # A figure that could not be measured says why.
        assert fig["value"] is not None or fig.get("note"), fig


def test_every_figure_an_issue_asks_for_is_there(latest: dict[str, Any]) -> None:
    figures = _figures(latest)
    assert not [n for n in REQUIRED if n not in figures]
    # The peer, side by side (when etcd ran): ours as a ratio of etcd's.
    if figures.get("etcd_single_puts_per_s", {}).get("value") is not None:
        for name in ("single_submissions_per_s", "batched_anchors_per_s"):
            assert isinstance(figures[name].get("etcd_ratio"), float), name


def test_goals_are_the_ones_the_issues_set(latest: dict[str, Any]) -> None:
    goals = {n: f["goal"] for n, f in _figures(latest).items()}
    assert goals["store_appends_per_s"] == 200_000
    assert goals["inclusion_proof_ms"] == 1
    assert goals["raft_core_entries_per_s"] == 100_000
    assert goals["batched_anchors_per_s"] == 50_000
    assert goals["single_submissions_per_s"] == 5_000
    assert goals["commit_latency_p99_ms"] == 50
    assert goals["failover_seconds"] == 1.5
    assert goals["lookups_per_s"] == 5_000
    assert goals["lookup_p99_ms"] == 20
    assert goals["audit_entries_per_s"] == 100_000
    assert goals["state_updates_per_s"] == 30_000
    assert goals["state_proof_bytes_at_1e8"] == 1_200
    lower = ("inclusion_proof_ms", "commit_latency_p99_ms", "lookup_p99_ms")
    figures = _figures(latest)
    for name in (*lower, "failover_seconds", "state_proof_bytes_at_1e8"):
        assert figures[name]["higher_is_better"] is False, name


def test_the_readme_table_is_the_one_made_from_latest_json(
    latest: dict[str, Any],
) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # One table, and each section once: a second, stale copy would be read.
    assert text.count(readme.START) == text.count(readme.END) == 1
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(headings) == len(set(headings)), headings
    shown = text.split(readme.START, 1)[1].split(readme.END, 1)[0].strip()
    assert shown == readme.table(latest)
    for name in _figures(latest):
        assert f"`{name}`" in shown


def test_figure_names_must_be_snake_case() -> None:
    with pytest.raises(ValueError):
        Figure(name="Leaves-per-s", value=1.0, unit="leaves/s")
    with pytest.raises(ValueError):
        Figure(name="x", value=float("nan"), unit="s")


# --- the load generator's check of acknowledged writes -------------------------


def _ledger_with_acks(count: int) -> tuple[Ledger, list[bytes]]:
    """A ledger record of ``count`` anchors acknowledged at leaves 0.."""
    issuer = Issuer("agency-01", SigningKey.generate(), LeafMaker("agency-01"))
    ledger = Ledger(origin="bench/origin", issuers=[issuer])
    req = ledger.submission("http://node", count)
    receipts = [
        {"doc_id": tag, "leaf_index": i, "block_height": 1}
        for i, tag in enumerate(req.tags)
    ]
    reply = Reply(
        200, json.dumps({"status": "accepted", "receipts": receipts}).encode()
    )
    assert ledger.accept(req, reply) is None
    leaves = [ledger.sent[tag] for tag in req.tags]
    return ledger, leaves


def _serve(monkeypatch: pytest.MonkeyPatch, pages: dict[str, list[bytes]]) -> None:
    async def get_json(url: str) -> object:
        node, _, query = url.partition("/v1/leaves?")
        params = dict(p.split("=") for p in query.split("&"))
        start, end = int(params["start"]), int(params["end"])
        leaves = pages[node][start:end]
        return {"leaves": [base64.b64encode(x).decode() for x in leaves]}

    monkeypatch.setattr(bench.submit, "get_json", get_json)


def test_acknowledged_anchors_found_on_every_node_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger, leaves = _ledger_with_acks(5)
    _serve(monkeypatch, {"http://a": leaves, "http://b": leaves})
    asyncio.run(check_leaves(["http://a", "http://b"], ledger))


@pytest.mark.parametrize("fault", ["missing", "altered"])
def test_an_acknowledged_anchor_lost_on_one_node_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    ledger, leaves = _ledger_with_acks(5)
    if fault == "missing":
        short = leaves[:4]
    else:
        flipped = leaves[2][:-1] + bytes([leaves[2][-1] ^ 0x01])
        short = [*leaves[:2], flipped, *leaves[3:]]
    _serve(monkeypatch, {"http://a": leaves, "http://b": short})
    with pytest.raises(LostWriteError, match="http://b"):
        asyncio.run(check_leaves(["http://a", "http://b"], ledger))


def test_a_receipt_for_another_document_is_not_an_acknowledgement() -> None:
    issuer = Issuer("agency-01", SigningKey.generate(), LeafMaker("agency-01"))
    ledger = Ledger(origin="bench/origin", issuers=[issuer])
    req: Request = ledger.submission("http://node", 2)
    receipts = [
        {"doc_id": req.tags[1], "leaf_index": 0},
        {"doc_id": req.tags[0], "leaf_index": 1},
    ]
    reply = Reply(
        200, json.dumps({"status": "accepted", "receipts": receipts}).encode()
    )
    assert ledger.accept(req, reply) is not None
    assert ledger.acked == {}
    partial = Reply(
        200, json.dumps({"status": "accepted", "receipts": receipts[:1]}).encode()
    )
    assert ledger.accept(req, partial) is not None


# --- state proofs at 10^8 keys, on an equivalent tree (bench.statesize) -------

VALUE: Final = b"status record of some document"


def _real_map(n: int, seed: int) -> tuple[StateMap, list[bytes]]:
    rng = random.Random(seed)
    keys = [rng.randbytes(32) for _ in range(n)]
    kv = DictKV()
    root, writes = StateMap(kv, EMPTY_ROOT).update(dict.fromkeys(keys, VALUE))
    kv.data.update({k: v for k, v in writes.items() if v is not None})
    return StateMap(kv, root), keys


def test_an_equivalent_tree_gives_a_real_proof_its_exact_size() -> None:
    smap, keys = _real_map(2_000, seed=21)
    for key in keys[:300]:
        real = smap.prove(key)
        depths = [d + 1 for d, h in enumerate(real.path()) if h != EMPTY_ROOT]
        sized = proof_for_path(depths, VALUE)
        assert sized.bytes == len(real.to_bytes())
        assert (sized.depth, sized.siblings) == (real.depth, len(real.siblings))


def test_drawn_paths_size_proofs_as_a_real_map_of_as_many_keys() -> None:
    smap, keys = _real_map(2_000, seed=22)
    real = [len(smap.prove(k).to_bytes()) for k in keys]
    drawn = [p.bytes for p in sample(2_000, 2_000, VALUE, seed=23)]
    assert statistics.mean(drawn) == pytest.approx(statistics.mean(real), rel=0.02)
    assert statistics.pstdev(drawn) == pytest.approx(statistics.pstdev(real), rel=0.2)
    assert max(drawn) - min(drawn) > 0  # a distribution, not one size


@pytest.mark.parametrize("m", [0, 1, 7, 4_096, 4_097, 10**6, 10**8])
def test_binomial_draws_have_the_mean_and_variance_of_binomial_m_half(
    m: int,
) -> None:
    rng = random.Random(m)
    draws = [binomial_half(rng, m) for _ in range(4_000)]
    assert all(0 <= x <= m for x in draws)
    if m == 0:
        return
    # Four standard errors of the mean, and 15% on the variance.
    assert abs(statistics.mean(draws) - m / 2) < 4 * (m / 4 / len(draws)) ** 0.5
    assert statistics.pvariance(draws) == pytest.approx(m / 4, rel=0.15)
