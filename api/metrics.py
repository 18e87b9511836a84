"""Prometheus metrics of one node, in a registry of their own.

Each node (and each test) gets a fresh ``CollectorRegistry`` from
``create_metrics()`` rather than the process-wide default one, so several
nodes can run in one process (the cluster tests do) without their series
colliding or a second registration raising.

The node and the web app update the objects held by ``Metrics``; ``/metrics``
answers ``Metrics.render()``. Label values are drawn from small fixed sets
(outcome codes, entry kinds, route templates): never a raw path, doc id or
agency-supplied string, which would grow the series without bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import Enum as EnumMetric

logger = logging.getLogger(__name__)

RAFT_ROLES: Final = ("follower", "pre_candidate", "candidate", "leader", "learner")
# Commit latency goal is p99 < 50 ms (DESIGN.md), so the buckets are dense
# around it and reach a few seconds for failovers.
COMMIT_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# Lookups aim at p99 < 20 ms; submissions of 10,000 entries take longer.
HTTP_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """The metric objects of one node and the registry that holds them."""

    registry: CollectorRegistry
    # labels: outcome = "ok" or a rule reason code (a fixed set).
    submissions: Counter
    # labels: kind = anchor | revoke | supersede | record | governance.
    entries: Counter
    # From a submission's arrival to its batch being applied locally.
    commit_latency: Histogram
    raft_term: Gauge
    # One of RAFT_ROLES; exported as raft_role{raft_role="..."} 0/1 series.
    raft_role: EnumMetric
    # Invariant the node keeps: raft_applied_index <= raft_commit_index.
    raft_commit_index: Gauge
    raft_applied_index: Gauge
    # raft_commit_index - raft_applied_index, in entries.
    apply_lag: Gauge
    # Seconds since the latest final (quorum-signed) checkpoint's time.
    checkpoint_age: Gauge
    tree_size: Gauge
    height: Gauge
    # labels: method, route (the route template, e.g. /v1/documents/{doc_id}),
    # status (the numeric code as text).
    http_requests: Counter
    # labels: method, route.
    http_latency: Histogram
    # The labelled children observe_http updates, by (method, route, status):
    # looking them up in prometheus-client each time costs more than the
    # update. As many as the series themselves.
    _http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = field(
        default_factory=dict, repr=False
    )

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_http(
        self, method: str, route: str, status: int, seconds: float
    ) -> None:
        """Count one answered request and its duration."""
        children = self._http_children.get((method, route, status))
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
            self._http_children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Register a node's metrics in ``registry`` (a new one if None).

    Registering twice in the same registry raises ``ValueError``
    (prometheus-client refuses duplicate series names).
    """
    reg = CollectorRegistry(auto_describe=True) if registry is None else registry
    metrics = Metrics(
        registry=reg,
        submissions=Counter(
            "ledger_submissions",
            "Submissions by outcome (ok or the rule reason code).",
            ["outcome"],
            registry=reg,
        ),
        entries=Counter(
            "ledger_entries",
            "Entries appended to the log, by kind.",
            ["kind"],
            registry=reg,
        ),
        commit_latency=Histogram(
            "ledger_commit_latency_seconds",
            "Time from a submission's arrival until its batch is applied.",
            buckets=COMMIT_BUCKETS,
            registry=reg,
        ),
        raft_term=Gauge("raft_term", "Current Raft term.", registry=reg),
        raft_role=EnumMetric(
            "raft_role",
            "Raft role of this node.",
            states=list(RAFT_ROLES),
            registry=reg,
        ),
        raft_commit_index=Gauge(
            "raft_commit_index", "Highest Raft index known committed.", registry=reg
        ),
        raft_applied_index=Gauge(
            "raft_applied_index",
            "Highest Raft index applied to the ledger.",
            registry=reg,
        ),
        apply_lag=Gauge(
            "ledger_apply_lag",
            "Committed Raft entries not yet applied (commit - applied).",
            registry=reg,
        ),
        checkpoint_age=Gauge(
            "ledger_checkpoint_age_seconds",
            "Seconds since the time of the latest final checkpoint.",
            registry=reg,
        ),
        tree_size=Gauge("ledger_tree_size", "Leaves in the Merkle log.", registry=reg),
        height=Gauge("ledger_height", "Height of the latest block.", registry=reg),
        http_requests=Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=reg,
        ),
        http_latency=Histogram(
            "http_request_duration_seconds",
            "HTTP request duration, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=reg,
        ),
    )
    logger.debug("metrics registered")
    return metrics
