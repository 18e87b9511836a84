"""``ledger node run``: one process serving the node and its web application.

This is where the pieces meet: the node (Raft, store, peers) and the API
run on one asyncio loop; uvicorn handles SIGTERM and SIGINT, after which the
node shuts down cleanly (its stores closed, its peers told nothing more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

import uvicorn

from api.app import create_app
from api.metrics import Metrics, create_metrics
from ledger.block import Block
from node.config import NodeConfig, load_config
from node.server import Node

logger = logging.getLogger(__name__)


def run_node(config_path: Path) -> None:
    """Serve until SIGTERM or SIGINT. Raises ConfigError/StorageError at start."""
    config = load_config(config_path)
    # NB: the standard loop, not uvloop: the peer transport upgrades
    # connections with start_tls, whose handshakes stalled under uvloop.
    asyncio.run(serve(config))


async def serve(config: NodeConfig) -> None:
    _warn_if_exposed(config.node_key)
    node = Node(config)
    metrics = create_metrics()
    node.on_block.append(lambda block, seconds: _count_block(metrics, block))
    app = create_app(
        node,
        public_url=config.public_url,
        metrics=metrics,
        max_body_bytes=config.max_body_bytes,
        rate_per_agency=config.rate_per_agency,
        max_age_ms=config.checkpoint_max_age_ms,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.api_host,
            port=config.api_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    failed: list[BaseException] = []

    def fatal(exc: BaseException) -> None:
        failed.append(exc)
        server.should_exit = True

    def stop_serving(sig: int, frame: object) -> None:
        logger.info("shutting down signal=%d", sig)
        server.should_exit = True

    node.on_fatal.append(fatal)
    # NB: uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut
    # down, which would kill the process before the node is stopped; with
    # this handler in place the re-raised signal only asks again for what is
    # under way. (Before uvicorn runs, it makes uvicorn exit at once.)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_serving)
    await node.start()
    gauges = asyncio.create_task(_update_gauges(node, metrics))
    try:
        await server.serve()
    finally:
        gauges.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gauges
        await node.stop()
    if failed:
        raise failed[0]


def _warn_if_exposed(key_file: Path) -> None:
    """A node key others can read can sign checkpoints in the agency's name."""
    try:
        mode = key_file.stat().st_mode & 0o777
    except OSError:
        return  # the node reports a missing key itself
    if mode & 0o077:
        logger.warning(
            "key file readable by others path=%s mode=%o (chmod 600 it)", key_file, mode
        )


def _count_block(metrics: Metrics, block: Block) -> None:
    from ledger.entries import peek_kind
    from ledger.submission import decode_submission

    for data, outcome in zip(block.submissions, block.outcomes, strict=True):
        metrics.submissions.labels(outcome.code).inc()
        if outcome.code != "ok":
            continue
        for entry in decode_submission(data).entries:
            metrics.entries.labels(peek_kind(entry) or "unknown").inc()


async def _update_gauges(node: Node, metrics: Metrics) -> None:
    while True:
        info = node.cluster_info()
        metrics.raft_term.set(node.soft.term)
        metrics.raft_role.state(str(info["role"]))
        commit = node.raft.hard_state().commit
        applied = node.store.applied_index
        metrics.raft_commit_index.set(commit)
        metrics.raft_applied_index.set(applied)
        metrics.apply_lag.set(max(0, commit - applied))
        metrics.tree_size.set(node.store.tree_size)
        metrics.height.set(node.store.height)
        final = node.store.latest_final()
        if final is not None:
            metrics.checkpoint_age.set(max(0.0, time.time() - final[0].time_ms / 1000))
        await asyncio.sleep(1.0)
