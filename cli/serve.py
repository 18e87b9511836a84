"""``ledger node run``: one process serving the node and its web application.

This is where the pieces meet: the node (Raft, store, peers) and the API
run on one asyncio loop; uvicorn handles SIGTERM and SIGINT, after which the
node shuts down cleanly (its stores closed, its peers told nothing more).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import ClassVar, Final

import msgpack
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.app import create_app
from api.metrics import Metrics, create_metrics
from api.qr import check_fits
from cli.coalesced import CoalescedTransport
from ledger.block import OK, Block
from ledger.entries import peek_kind
from ledger.errors import ConfigError
from node.config import NodeConfig, load_config
from node.server import Node
from node.throttle import EveryMinute

logger = logging.getLogger(__name__)

# Limits on what clients can hold of a node: without them a slowloris (a few
# thousand connections, each sending a header line now and then) used up the
# node's file descriptors, and asyncio logged every accept that then failed.
# Constants rather than node.toml settings: they protect the process and need
# no tuning per agency.
#
# Connections open at once: one more is answered 503 and closed as soon as
# it is accepted (BoundedHttpProtocol); those already open are served as
# usual (uvicorn's own limit_concurrency would answer them 503 too, healthy
# keep-alive connections included). It bounds the descriptors clients can
# hold; the node needs more than this for its store and peers (`ulimit -n`).
MAX_CONNECTIONS: Final = 1_000
# Connections the kernel holds, handshake done, until the node accepts them
# (it caps this at net.core.somaxconn).
BACKLOG: Final = 1_024
# Seconds a new connection has to send its first byte: an idle connection
# holds a place under the cap, so not long (a browser reconnects at once).
FIRST_BYTE_TIMEOUT_S: Final = 5.0
# Seconds a client has, from the first byte of a request, to send the
# request's headers in full. Generous for a phone on a poor link
# (headers are a few hundred bytes).
HEADER_TIMEOUT_S: Final = 15.0
# Seconds a request's body may go without a byte of it arriving (an idle
# limit, as nginx's client_body_timeout: a 16 MiB submission over a slow link
# takes long, but it keeps arriving). Only body bytes count: the framing of
# a chunked body (a size line sent a digit at a time) does not.
BODY_IDLE_TIMEOUT_S: Final = 30.0
# Seconds a whole body may take, however it trickles: a client that sends a
# byte now and then would otherwise hold its share of the node's body budget
# (api.limits.BodyBudget) for ever. 16 MiB in this time is about 90 KiB/s.
BODY_DEADLINE_S: Final = 180.0
# Seconds an answer may wait for a client that does not read it (the
# transport's buffer full): then the connection is dropped. Otherwise a
# client that never reads holds its place under the cap for ever.
WRITE_STALL_TIMEOUT_S: Final = 30.0


def run_node(config_path: Path) -> None:
    """Serve until SIGTERM or SIGINT. Raises ConfigError/StorageError at start."""
    config = load_config(config_path)
    # NB: the standard loop, not uvloop: the peer transport upgrades
    # connections with start_tls, whose handshakes stalled under uvloop.
    asyncio.run(serve(config))


async def serve(config: NodeConfig) -> None:
    _warn_if_exposed(config.node_key)
    try:
        check_fits(config.public_url)
    except ValueError as exc:
        # Otherwise every QR code with a salt would be a 500.
        raise ConfigError(f"{config.path}: [api] public_url: {exc}") from None
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
    server = uvicorn.Server(uvicorn_config(app, config.api_host, config.api_port))
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


def uvicorn_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """How a node serves its web application (with the limits above)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=BoundedHttpProtocol,
        # The app has no WebSocket route; without a WebSocket protocol an
        # upgrade request is an ordinary request, under the same timeouts.
        ws="none",
        backlog=BACKLOG,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with a cap on connections and
    timeouts on reading a request, which uvicorn lacks.

    uvicorn times out only an idle keep-alive connection (5 s after an
    answer), and the first byte of a request cancels that: a connection
    that never sends a byte, or sends half its headers, or stops halfway
    through its body, stays open for ever. Nor does ``limit_concurrency``
    cap connections: it answers 503 to a request whose headers are in (on
    every connection, healthy ones too, once the limit is reached), so a
    connection that never completes them is never refused. Hence a
    subclass, the least of uvicorn to touch: a timer per connection on the
    protocol's own callbacks, and a check when a connection is made. uvicorn
    has no setting for either, and a proxy in front (nginx) is not something
    every agency runs.

    A timed-out connection is closed without an answer (as nginx does); an
    app still waiting for the body then receives ``http.disconnect``.
    """

    max_connections: ClassVar[int] = MAX_CONNECTIONS
    first_byte_timeout: ClassVar[float] = FIRST_BYTE_TIMEOUT_S
    header_timeout: ClassVar[float] = HEADER_TIMEOUT_S
    body_idle_timeout: ClassVar[float] = BODY_IDLE_TIMEOUT_S
    body_deadline: ClassVar[float] = BODY_DEADLINE_S
    write_stall_timeout: ClassVar[float] = WRITE_STALL_TIMEOUT_S
    # Refused connections, for one warning a minute, not one a connection,
    # in a flood (shared by every connection of the server).
    refusals: ClassVar[EveryMinute] = EveryMinute()

    _read_timer: asyncio.TimerHandle | None = None
    _reading_body = False
    _body_due = 0.0  # loop time by which the body must be in
    _write_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        # uvicorn counts the connection before the check (in
        # server_state.connections), and uncounts it in connection_lost.
        super().connection_made(CoalescedTransport(transport, self.loop))
        if len(self.connections) > self.max_connections:
            self._refuse()
            return
        # A connection that never sends its first request is timed out too.
        self._arm(self.first_byte_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._write_timer_off()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(
                self.write_stall_timeout, self._write_stalled
            )

    def resume_writing(self) -> None:
        self._write_timer_off()
        super().resume_writing()

    def _write_timer_off(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        self._write_timer = None
        logger.debug(
            "dropping a client that reads nothing client=%s", _peer(self.client)
        )
        # Abort, not close: close would wait to flush what it does not read.
        self.transport.abort()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn warns twice per upgrade request (and advises installing a
        # WebSocket library): the app has no WebSocket route, and anyone can
        # send such requests, so one debug line.
        logger.debug("upgrade request answered as plain HTTP")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The headers' deadline runs from the request's first byte.
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._reading_body = True
        self._body_due = self.loop.time() + self.body_deadline
        self._arm_body()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if body and not self.transport.is_closing():
            self._arm_body()  # idle from the latest byte of the body

    def _arm_body(self) -> None:
        left = self._body_due - self.loop.time()
        self._arm(max(0.0, min(self.body_idle_timeout, left)))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_body = False
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        busy = cycle is not None and (
            # Headers of a request pipelined behind one still being answered,
            # or the body of one queued behind it: the node is busy.
            (not self._reading_body and not cycle.response_complete)
            or (self._reading_body and bool(self.pipeline))
        )
        if (
            busy
            or self.flow.read_paused
            or (cycle is not None and cycle.waiting_for_100_continue)
        ):
            # The node is not reading (the app has yet to take the body
            # buffered so far, or a pipelined request waits) or has yet to
            # ask for the body: the wait is ours, not the client's (the
            # body's deadline moves with it).
            if self._reading_body:
                self._body_due = self.loop.time() + self.body_deadline
            self._arm(self.body_idle_timeout)
            return
        phase = "body" if self._reading_body else "headers"
        logger.debug(
            "closing slow connection phase=%s client=%s", phase, _peer(self.client)
        )
        # Abort if an answer is still unsent: close would wait for a client
        # that may never read it.
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def _refuse(self) -> None:
        refused = self.refusals.count()
        if refused is not None:
            logger.warning(
                "connections refused at the limit limit=%s refused=%d "
                "(counted since the previous warning, at most one a minute)",
                self.max_connections,
                refused,
            )
        # What uvicorn answers a request over limit_concurrency, sent before
        # the request has arrived so that the client sees why rather than a
        # bare reset.
        self.transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
            b"connection: close\r\nretry-after: 1\r\n\r\n"
        )
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return "unknown" if client is None else f"{client[0]}:{client[1]}"


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
    """Count a block's submissions by outcome and accepted entries by kind.

    Runs on the event loop for every block, so it counts first and updates
    each labelled series once per block (a label lookup costs more than the
    increment), and reads the entries with plain msgpack: the block's
    submissions were decoded and checked when it was applied, and a full
    ``decode_submission`` here cost every node about 10 us a submission.
    """
    outcomes: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    for data, outcome in zip(block.submissions, block.outcomes, strict=True):
        outcomes[outcome.code] += 1
        if outcome.code == OK:
            for entry in msgpack.unpackb(data)["entries"]:
                kinds[peek_kind(entry) or "unknown"] += 1
    for code, count in outcomes.items():
        metrics.submissions.labels(code).inc(count)
    for kind, count in kinds.items():
        metrics.entries.labels(kind).inc(count)


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
