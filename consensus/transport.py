"""Peer transport: length-prefixed frames between nodes over pinned TLS 1.3.

Theory of operation. Every node dials every peer it knows once and uses
that outbound connection only to send; it receives on the connections its
peers dial to it. So each pair of nodes shares two connections, one per
direction, and neither side ever has to decide which of two crossing dials
wins.

A connection is usable only after both identity checks (``consensus.tls``):

1. TLS 1.3 with a certificate on both sides.
2. The dialler pins the listener's key to the agency it dialled, then sends a
   hello frame naming its own agency id; the listener pins the dialler's key
   to that id and answers with a hello naming itself.

Frames (``consensus.wire``) are a 4-byte big-endian length and that many
opaque bytes (the node puts ``encode_message`` output in them). A peer
that fails a check, sends a bad hello or a malformed or oversize frame is
disconnected and logged; nothing a peer sends can raise out of this module.

Sending never blocks: each peer has a bounded queue, and when it is full
(the peer is down or slow) the oldest frames are dropped. Raft tolerates
lost messages and resends what matters, whereas stale heartbeats delivered
late only waste the link. A link that fails redials with exponential backoff
and jitter.

Keys may change at runtime (rotation, membership): every new connection is
pinned against ``peer_keys()`` as it is then; ``revalidate`` re-pins the
connections already open.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Final

from consensus.tls import (
    NodeKey,
    check_agency_id,
    check_peer,
    client_context,
    server_context,
)
from consensus.wire import (
    HELLO_MAX,
    MAX_FRAME,
    PausedStreamProtocol,
    abort,
    decode_hello,
    describe,
    encode_hello,
    peer_name,
    read_frame,
    ssl_object,
    write_frame,
)
from ledger.errors import ConsensusError, EncodingError, LedgerError, VerificationError

logger = logging.getLogger(__name__)

ACCEPT_BATCH: Final = 64  # connections taken per wake-up of the listener
ACCEPT_RETRY_MS: Final = 100
# What a misbehaving or vanished peer can cause; anything else is our bug.
# (TimeoutError and ssl.SSLError are OSErrors, IncompleteReadError an EOFError.)
PEER_FAULTS: Final = (OSError, EOFError, LedgerError)

Address = tuple[str, int]
OnFrame = Callable[[str, bytes], None]


@dataclass
class TransportStats:
    """Counters for metrics; they only grow."""

    frames_sent: int = 0
    frames_received: int = 0
    frames_dropped: int = 0  # queue overflow, unknown peer, link removed
    bytes_sent: int = 0
    bytes_received: int = 0
    connections_opened: int = 0  # outbound, fully authenticated
    connections_accepted: int = 0  # inbound, fully authenticated
    connections_refused: int = 0  # failed TLS, pin or hello (either side)
    connections_dropped: int = 0  # authenticated, then a bad or oversize frame
    dial_failures: int = 0


@dataclass
class _Link:
    """The outbound side towards one peer: its queue and its dialler task.

    Invariant: ``queued_bytes == sum(len(f) for f in queue)``.
    """

    peer_id: str
    address: Address
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    queued_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    pinned_key: bytes = b""


@dataclass
class _Inbound:
    peer_id: str
    writer: asyncio.StreamWriter
    pinned_key: bytes


def _consume(task: asyncio.Future[bytes]) -> None:
    # Mark the watcher's outcome as seen so asyncio does not log it as lost.
    if task.done() and not task.cancelled():
        task.exception()


class PeerTransport:
    """Frames to and from the peers of one node (see the module docstring).

    ``peers`` maps each peer's agency id to the address to dial (our own id
    is ignored); ``peer_keys()`` returns the trust list's node keys as they
    are now. ``on_frame(peer_id, frame)`` runs on the event loop for every
    frame received; it may raise ``LedgerError`` (``EncodingError`` from
    ``decode_message``, say) to refuse a frame, which drops that connection.
    Inbound connections are accepted from every agency in ``peer_keys()``,
    dialled or not (a learner not yet in ``peers``, say). Call every method
    from the event loop's thread. Times are integer milliseconds.
    """

    def __init__(
        self,
        *,
        node_id: str,
        listen_host: str,
        listen_port: int,
        key: NodeKey,
        peers: Mapping[str, Address],
        peer_keys: Callable[[], Mapping[str, bytes]],
        on_frame: OnFrame,
        max_frame: int = MAX_FRAME,
        queue_frames: int = 4096,
        queue_bytes: int = 2 * MAX_FRAME,
        backoff_min_ms: int = 50,
        backoff_max_ms: int = 2000,
        timeout_ms: int = 5000,
        rng: random.Random | None = None,
    ) -> None:
        check_agency_id(node_id)
        self.node_id = node_id
        self.stats = TransportStats()
        self._host, self._port = listen_host, listen_port
        self._peer_keys = peer_keys
        self._on_frame = on_frame
        self._max_frame = max_frame
        self._queue_frames, self._queue_bytes = queue_frames, queue_bytes
        self._backoff_ms = (backoff_min_ms, backoff_max_ms)
        self._timeout_s = timeout_ms / 1000
        # Jitter only; it never reaches the Raft core, which gets its own seed.
        self._rng = rng or random.Random()
        self._server_ctx = server_context(node_id, key)
        self._client_ctx = client_context(node_id, key)
        self._listener: socket.socket | None = None
        self._links: dict[str, _Link] = {}
        self._inbound: dict[str, _Inbound] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self.update_peers(peers)

    # -- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with port 0)."""
        return self._port

    async def start(self) -> None:
        """Listen, and start dialling every peer. ``ConsensusError`` if busy."""
        if self._listener is not None:
            raise ConsensusError("transport already started")
        listener = await self._listen_socket()
        self._listener, self._port = listener, listener.getsockname()[1]
        asyncio.get_running_loop().add_reader(listener, self._on_readable)
        for link in self._links.values():
            self._start_link(link)
        logger.info(
            "transport listening node=%s addr=%s:%d",
            self.node_id,
            self._host,
            self._port,
        )

    async def stop(self) -> None:
        """Close every connection and stop listening; queued frames are kept."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        asyncio.get_running_loop().remove_reader(listener)
        listener.close()
        tasks = list(self._handlers)
        for link in self._links.values():
            if link.task is not None:
                tasks.append(link.task)
                link.task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inbound.clear()
        # Aborted transports release their sockets on the next loop turn;
        # take it, so a caller may close the loop as soon as we return.
        await asyncio.sleep(0)
        logger.info("transport stopped node=%s", self.node_id)

    # -- accepting -----------------------------------------------------------
    # NB: our own accept loop, not loop.create_server or loop.sock_accept:
    # in Python 3.11 both leak the socket of a connection accepted just as
    # the listener closes (Server._attach asserts; a cancelled sock_accept
    # raises InvalidStateError), and a stopped node must leak nothing.

    async def _listen_socket(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, address = infos[0]
            sock = socket.create_server(address, family=family)
        except (OSError, IndexError) as exc:
            raise ConsensusError(f"cannot listen on {self._host}:{self._port}") from exc
        sock.setblocking(False)
        return sock

    def _on_readable(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say
                logger.warning(
                    "accept failed node=%s error=%s", self.node_id, describe(exc)
                )
                self._pause_accepting(listener)
                return
            conn.setblocking(False)
            self._spawn(self._adopt(conn), on_failure=conn.close)

    def _pause_accepting(self, listener: socket.socket) -> None:
        # The listener stays readable while descriptors are short: stop
        # polling it for a moment rather than spin.
        loop = asyncio.get_running_loop()
        loop.remove_reader(listener)

        def resume() -> None:
            if self._listener is listener:
                loop.add_reader(listener, self._on_readable)

        loop.call_later(ACCEPT_RETRY_MS / 1000, resume)

    async def _adopt(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> PausedStreamProtocol:
            return PausedStreamProtocol(asyncio.StreamReader(), self._accept, loop)

        await loop.connect_accepted_socket(protocol, conn)

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._listener is None:  # accepted just as we stopped
            abort(writer)
            return
        self._spawn(
            self._serve_inbound(reader, writer),
            on_failure=lambda: abort(writer),
            always=True,
        )

    def _spawn(
        self,
        coro: Coroutine[None, None, None],
        *,
        on_failure: Callable[[], None],
        always: bool = False,
    ) -> None:
        """Run ``coro`` as a handler task that ``stop`` will cancel.

        ``on_failure`` releases the connection if the task fails or is
        cancelled (``always``: whatever the outcome). NB: a task cancelled
        before its first step never runs its own ``finally`` clauses, so the
        release is a done callback.
        """
        task = asyncio.get_running_loop().create_task(coro)
        self._handlers.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._handlers.discard(task)
            exc = None if task.cancelled() else task.exception()
            if exc is not None and not isinstance(exc, PEER_FAULTS):
                # Nobody awaits this task: a bug in it is only seen here.
                logger.error("handler failed node=%s", self.node_id, exc_info=exc)
            if always or task.cancelled() or exc is not None:
                on_failure()

        task.add_done_callback(done)

    # -- sending -------------------------------------------------------------

    def send(self, peer_id: str, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer_id`` without blocking.

        Returns ``False`` (and counts a drop) for a peer we do not dial. If
        the queue is full the oldest frames give way. Precondition
        ``1 <= len(frame) <= max_frame``: no peer would accept anything else,
        so breaking it is a bug and raises ``ConsensusError``.
        """
        if not 1 <= len(frame) <= self._max_frame:
            raise ConsensusError(f"frame of {len(frame)} bytes cannot be sent")
        link = self._links.get(peer_id)
        if link is None:
            self._count_drop(peer_id, "unknown_peer")
            return False
        while link.queue and (
            len(link.queue) >= self._queue_frames
            or link.queued_bytes + len(frame) > self._queue_bytes
        ):
            link.queued_bytes -= len(link.queue.popleft())
            self._count_drop(peer_id, "queue_full")
        link.queue.append(frame)
        link.queued_bytes += len(frame)
        link.wake.set()
        return True

    def _count_drop(self, peer_id: str, reason: str) -> None:
        self.stats.frames_dropped += 1
        logger.debug(
            "frame dropped node=%s peer=%s reason=%s", self.node_id, peer_id, reason
        )

    def connected(self, peer_id: str) -> bool:
        """Whether the outbound connection to ``peer_id`` is up."""
        link = self._links.get(peer_id)
        return link is not None and link.writer is not None

    def queued(self, peer_id: str) -> int:
        """Frames waiting for ``peer_id`` (0 for a peer we do not dial)."""
        link = self._links.get(peer_id)
        return 0 if link is None else len(link.queue)

    # -- membership and keys -------------------------------------------------

    def update_peers(self, peers: Mapping[str, Address]) -> None:
        """Dial exactly ``peers`` from now on, then ``revalidate``.

        Removed peers lose their queued frames; a moved peer keeps them and
        is redialled at its new address. Precondition: every id is a valid
        agency id (``ConfigError``).
        """
        wanted = {p: a for p, a in peers.items() if p != self.node_id}
        for peer_id in wanted:
            check_agency_id(peer_id)
        for link in list(self._links.values()):
            if link.peer_id not in wanted:
                self._remove_link(link)
        for peer_id, address in wanted.items():
            link = self._links.setdefault(peer_id, _Link(peer_id, address))
            if link.address != address or link.task is None:
                link.address = address
                self._restart_link(link)
        self.revalidate()

    def revalidate(self) -> None:
        """Drop open connections whose key is no longer the peer's node key.

        Call after ``peer_keys()`` changes (key rotation, an agency removed);
        new connections are always pinned to the keys of the moment.
        """
        keys = self._peer_keys()
        open_conns = [
            (i.peer_id, i.pinned_key, i.writer) for i in self._inbound.values()
        ]
        open_conns += [
            (link.peer_id, link.pinned_key, link.writer)
            for link in self._links.values()
            if link.writer is not None
        ]
        for peer_id, pinned, writer in open_conns:
            if keys.get(peer_id) != pinned:
                logger.info(
                    "peer key no longer trusted node=%s peer=%s", self.node_id, peer_id
                )
                abort(writer)

    def _remove_link(self, link: _Link) -> None:
        del self._links[link.peer_id]
        if link.task is not None:
            link.task.cancel()
            link.task = None
        for _ in link.queue:
            self._count_drop(link.peer_id, "peer_removed")
        logger.info("peer removed node=%s peer=%s", self.node_id, link.peer_id)

    def _restart_link(self, link: _Link) -> None:
        if link.task is not None:
            link.task.cancel()
            link.task = None
        if self._listener is not None:
            self._start_link(link)

    def _start_link(self, link: _Link) -> None:
        link.task = asyncio.get_running_loop().create_task(
            self._run_link(link), name=f"peer-link-{self.node_id}-{link.peer_id}"
        )

    # -- outbound: one dialler task per peer ---------------------------------

    async def _run_link(self, link: _Link) -> None:
        failures = 0
        # Checking ownership, not only awaiting cancellation, ends a replaced
        # dialler for sure.
        while link.task is asyncio.current_task():
            try:
                async with asyncio.timeout(self._timeout_s):
                    reader, writer, key = await self._dial(link)
            except PEER_FAULTS as exc:
                failures += 1
                self._dial_failed(link, failures, exc)
                await asyncio.sleep(self._backoff_s(failures))
                continue
            failures = 0
            await self._serve_link(link, reader, writer, key)

    async def _dial(
        self, link: _Link
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        host, port = link.address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            # TLS on a connection we already hold, so that a dial cancelled
            # mid-handshake is aborted here rather than left half-closed.
            await writer.start_tls(self._client_ctx, server_hostname=link.peer_id)
            keys = self._peer_keys()
            check_peer(ssl_object(writer), link.peer_id, keys)
            write_frame(writer, encode_hello(self.node_id))
            await writer.drain()
            answer = decode_hello(await read_frame(reader, HELLO_MAX))
            if answer != link.peer_id:
                raise VerificationError(
                    "unknown_issuer", f"dialled {link.peer_id!r}, {answer!r} answered"
                )
        except BaseException:
            abort(writer)
            raise
        return reader, writer, keys[link.peer_id]

    def _dial_failed(self, link: _Link, failures: int, exc: BaseException) -> None:
        self.stats.dial_failures += 1
        if isinstance(exc, LedgerError):
            self.stats.connections_refused += 1
        # The first failure is news; the retries that follow are noise.
        log = logger.info if failures == 1 else logger.debug
        log(
            "peer unreachable node=%s peer=%s addr=%s:%d attempt=%d error=%s",
            self.node_id,
            link.peer_id,
            link.address[0],
            link.address[1],
            failures,
            describe(exc),
        )

    def _backoff_s(self, failures: int) -> float:
        low, high = self._backoff_ms
        step = min(high, low << min(failures - 1, 30))
        # Equal jitter: at least half a step, so a dead peer is not hammered,
        # plus a random half, so nodes that lost a peer together spread out.
        return (step / 2 + self._rng.uniform(0, step / 2)) / 1000

    async def _serve_link(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        key: bytes,
    ) -> None:
        link.writer, link.pinned_key = writer, key
        self.stats.connections_opened += 1
        logger.info(
            "peer connected node=%s peer=%s addr=%s",
            self.node_id,
            link.peer_id,
            peer_name(writer),
        )
        # Peers send nothing after their hello, so the read finishing at all
        # (EOF, an error, or stray bytes) means this connection is over.
        watch = asyncio.ensure_future(reader.read(1))
        watch.add_done_callback(lambda _: link.wake.set())
        reason = "closed by peer"
        try:
            await self._pump(link, writer, watch)
        except PEER_FAULTS as exc:
            reason = describe(exc)
        finally:
            watch.cancel()
            _consume(watch)
            abort(writer)
            if link.writer is writer:
                link.writer = None
        logger.info(
            "peer disconnected node=%s peer=%s reason=%s",
            self.node_id,
            link.peer_id,
            reason,
        )

    async def _pump(
        self, link: _Link, writer: asyncio.StreamWriter, watch: asyncio.Future[bytes]
    ) -> None:
        while not watch.done():
            if not link.queue:
                link.wake.clear()
                await link.wake.wait()
                continue
            while link.queue:
                frame = link.queue.popleft()
                link.queued_bytes -= len(frame)
                write_frame(writer, frame)
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(frame)
                logger.debug(
                    "frame sent node=%s peer=%s size=%d",
                    self.node_id,
                    link.peer_id,
                    len(frame),
                )
            await writer.drain()

    # -- inbound: one handler task per authenticated connection --------------

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        where = peer_name(writer)
        try:
            async with asyncio.timeout(self._timeout_s):
                peer_id, key = await self._authenticate(reader, writer)
        except PEER_FAULTS as exc:
            self.stats.connections_refused += 1
            logger.info(
                "inbound refused node=%s addr=%s error=%s",
                self.node_id,
                where,
                describe(exc),
            )
            return
        self._register(_Inbound(peer_id, writer, key), where)
        reason = "closed by peer"
        try:
            await self._receive(peer_id, reader)
        except EncodingError as exc:
            self.stats.connections_dropped += 1
            reason = describe(exc)
        except PEER_FAULTS as exc:
            reason = describe(exc)
        finally:
            current = self._inbound.get(peer_id)
            if current is not None and current.writer is writer:
                del self._inbound[peer_id]
        logger.info(
            "inbound closed node=%s peer=%s reason=%s", self.node_id, peer_id, reason
        )

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, bytes]:
        await writer.start_tls(self._server_ctx)
        peer_id = decode_hello(await read_frame(reader, HELLO_MAX))
        if peer_id == self.node_id:
            raise VerificationError("unknown_issuer", "peer claims to be this node")
        keys = self._peer_keys()
        check_peer(ssl_object(writer), peer_id, keys)
        write_frame(writer, encode_hello(self.node_id))
        await writer.drain()
        return peer_id, keys[peer_id]

    def _register(self, inbound: _Inbound, where: str) -> None:
        old = self._inbound.get(inbound.peer_id)
        if old is not None:
            # A peer that redials has given up on its old connection.
            abort(old.writer)
        self._inbound[inbound.peer_id] = inbound
        self.stats.connections_accepted += 1
        logger.info(
            "inbound accepted node=%s peer=%s addr=%s",
            self.node_id,
            inbound.peer_id,
            where,
        )

    async def _receive(self, peer_id: str, reader: asyncio.StreamReader) -> None:
        while True:
            frame = await read_frame(reader, self._max_frame)
            self.stats.frames_received += 1
            self.stats.bytes_received += len(frame)
            logger.debug(
                "frame received node=%s peer=%s size=%d",
                self.node_id,
                peer_id,
                len(frame),
            )
            self._deliver(peer_id, frame)

    def _deliver(self, peer_id: str, frame: bytes) -> None:
        try:
            self._on_frame(peer_id, frame)
        except LedgerError:
            raise
        except Exception as exc:
            # Nobody up the stack of this task could catch it: log, and
            # drop the connection rather than the node.
            logger.exception(
                "frame handler failed node=%s peer=%s", self.node_id, peer_id
            )
            raise ConsensusError("frame handler failed") from exc
