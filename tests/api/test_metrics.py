"""Node metrics: fresh registries, the names operators query, parseable text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import RAFT_ROLES, create_metrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_render_exposes_every_metric() -> None:
    m = create_metrics()
    m.submissions.labels("ok").inc(3)
    m.submissions.labels("replay").inc()
    m.entries.labels("anchor").inc(10_000)
    m.commit_latency.observe(0.012)
    m.raft_term.set(4)
    m.raft_role.state("leader")
    m.raft_commit_index.set(120)
    m.raft_applied_index.set(118)
    m.apply_lag.set(2)
    m.checkpoint_age.set(1.5)
    m.tree_size.set(10_000)
    m.height.set(7)
    m.observe_http("GET", "/v1/documents/{doc_id}", 200, 0.003)

    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=")
    got = samples(body)
    assert got[("ledger_submissions_total", (("outcome", "ok"),))] == 3
    assert got[("ledger_submissions_total", (("outcome", "replay"),))] == 1
    assert got[("ledger_entries_total", (("kind", "anchor"),))] == 10_000
    assert got[("ledger_commit_latency_seconds_count", ())] == 1
    assert got[("ledger_commit_latency_seconds_bucket", (("le", "0.02"),))] == 1
    assert got[("ledger_commit_latency_seconds_bucket", (("le", "0.01"),))] == 0
    assert got[("raft_term", ())] == 4
    for role in RAFT_ROLES:
        assert got[("raft_role", (("raft_role", role),))] == (role == "leader")
    assert got[("raft_commit_index", ())] == 120
    assert got[("raft_applied_index", ())] == 118
    assert got[("ledger_apply_lag", ())] == 2
    assert got[("ledger_checkpoint_age_seconds", ())] == 1.5
    assert got[("ledger_tree_size", ())] == 10_000
    assert got[("ledger_height", ())] == 7
    http_labels = (
        ("method", "GET"),
        ("route", "/v1/documents/{doc_id}"),
        ("status", "200"),
    )
    assert got[("http_requests_total", http_labels)] == 1
    latency_labels = (("method", "GET"), ("route", "/v1/documents/{doc_id}"))
    assert got[("http_request_duration_seconds_count", latency_labels)] == 1


def test_each_node_gets_its_own_registry() -> None:
    a, b = create_metrics(), create_metrics()
    a.height.set(5)
    assert samples(b.render()[0])[("ledger_height", ())] == 0


def test_registering_twice_in_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    create_metrics(registry)
    with pytest.raises(ValueError):
        create_metrics(registry)
