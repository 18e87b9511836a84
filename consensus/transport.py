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

Frames are a 4-byte big-endian length and that many opaque bytes (the node
puts ``encode_message`` output in them), ``1 <= length <= max_frame``. A peer
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
import ssl
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from consensus.tls import (
    NodeKey,
    check_agency_id,
    check_peer,
    client_context,
    server_context,
)
from ledger.codec import Field, build_record, check_record, get_str, pack, unpack
from ledger.errors import ConsensusError, EncodingError, LedgerError, VerificationError

logger = logging.getLogger(__name__)

HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 64 * 1024 * 1024
HELLO_PROTOCOL: Final = "agency-ledger/peer/v1"
HELLO_MAX: Final = 256
HELLO_FIELDS: Final = (
    Field("proto", str, max_len=64),
    Field("id", str, max_len=40),
)

# What a misbehaving or vanished peer can cause; anything else is our bug.
# (TimeoutError and ssl.SSLError are OSErrors, IncompleteReadError an EOFError.)
PEER_FAULTS: Final = (OSError, EOFError, LedgerError)

Address = tuple[str, int]
OnFrame = Callable[[str, bytes], None]


def encode_hello(node_id: str) -> bytes:
    """The hello frame payload naming ``node_id``."""
    return pack(build_record(HELLO_FIELDS, {"proto": HELLO_PROTOCOL, "id": node_id}))


def decode_hello(data: bytes) -> str:
    """The agency id in a hello; ``EncodingError`` unless well formed."""
    rec = check_record(unpack(data), HELLO_FIELDS, "hello")
    if get_str(rec, "proto") != HELLO_PROTOCOL:
        raise EncodingError(f"hello: unknown protocol {get_str(rec, 'proto')!r}")
    node_id = get_str(rec, "id")
    try:
        check_agency_id(node_id)
    except LedgerError as exc:
        raise EncodingError(f"hello: bad agency id {node_id!r}") from exc
    return node_id


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> bytes:
    """Read one frame; ``EncodingError`` on a length of 0 or above ``max_frame``.

    Raises ``asyncio.IncompleteReadError`` if the stream ends mid-frame.
    """
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if not 1 <= length <= max_frame:
        # Checked before reading so an oversize claim allocates nothing.
        raise EncodingError(f"frame length {length} outside 1..{max_frame}")
    return await reader.readexactly(length)


def write_frame(writer: asyncio.StreamWriter, frame: bytes) -> None:
    writer.writelines([HEADER.pack(len(frame)), frame])


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


class _PausedStreamProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that reads nothing until TLS is started on it.

    NB: the listener starts TLS itself (``StreamWriter.start_tls``) so that
    handshake failures reach our code instead of vanishing inside asyncio.
    Bytes read before the upgrade would land in the plain ``StreamReader``,
    out of the TLS layer's sight, and stall the handshake; pausing in
    ``connection_made``, before the first read, keeps them in the socket.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        super().connection_made(transport)


def _ssl_object(writer: asyncio.StreamWriter) -> ssl.SSLObject:
    tls = writer.get_extra_info("ssl_object")
    if not isinstance(tls, ssl.SSLObject):
        raise VerificationError("malformed", "connection is not TLS")
    return tls


def _abort(writer: asyncio.StreamWriter) -> None:
    # Abort rather than close: a graceful TLS shutdown waits on the peer,
    # and Raft gains nothing from a clean close_notify.
    writer.transport.abort()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peername = writer.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return "?"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    Times are integer milliseconds.
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
        self._server: asyncio.Server | None = None
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
        if self._server is not None:
            raise ConsensusError("transport already started")
        loop = asyncio.get_running_loop()

        def protocol() -> _PausedStreamProtocol:
            return _PausedStreamProtocol(asyncio.StreamReader(), self._accept, loop)

        try:
            self._server = await loop.create_server(protocol, self._host, self._port)
        except OSError as exc:
            raise ConsensusError(f"cannot listen on {self._host}:{self._port}") from exc
        self._port = self._server.sockets[0].getsockname()[1]
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
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._handlers)
        for link in self._links.values():
            if link.task is not None:
                tasks.append(link.task)
                link.task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        # Aborted transports release their sockets on the next loop turn;
        # take it, so a caller may close the loop as soon as we return.
        await asyncio.sleep(0)
        logger.info("transport stopped node=%s", self.node_id)

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
                _abort(writer)

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
        if self._server is not None:
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
            check_peer(_ssl_object(writer), link.peer_id, keys)
            write_frame(writer, encode_hello(self.node_id))
            await writer.drain()
            answer = decode_hello(await read_frame(reader, HELLO_MAX))
            if answer != link.peer_id:
                raise VerificationError(
                    "unknown_issuer", f"dialled {link.peer_id!r}, {answer!r} answered"
                )
        except BaseException:
            _abort(writer)
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
            _describe(exc),
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
            _peer_name(writer),
        )
        # Peers send nothing after their hello, so the read finishing at all
        # (EOF, an error, or stray bytes) means this connection is over.
        watch = asyncio.ensure_future(reader.read(1))
        watch.add_done_callback(lambda _: link.wake.set())
        reason = "closed by peer"
        try:
            await self._pump(link, writer, watch)
        except PEER_FAULTS as exc:
            reason = _describe(exc)
        finally:
            watch.cancel()
            _consume(watch)
            _abort(writer)
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

    # -- inbound: one handler task per accepted connection -------------------

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Our own task, not one asyncio makes from a coroutine callback: stop
        # can cancel it without asyncio reporting the cancellation as an error.
        if self._server is None:  # accepted just as we stopped
            _abort(writer)
            return
        task = asyncio.get_running_loop().create_task(
            self._serve_inbound(reader, writer)
        )
        self._handlers.add(task)

        def done(task: asyncio.Task[None]) -> None:
            # NB: a task cancelled before its first step never runs its own
            # finally clauses, so the connection is closed from here.
            self._handlers.discard(task)
            _abort(writer)

        task.add_done_callback(done)

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        where = _peer_name(writer)
        try:
            async with asyncio.timeout(self._timeout_s):
                peer_id, key = await self._authenticate(reader, writer)
        except PEER_FAULTS as exc:
            self.stats.connections_refused += 1
            logger.info(
                "inbound refused node=%s addr=%s error=%s",
                self.node_id,
                where,
                _describe(exc),
            )
            return
        self._register(_Inbound(peer_id, writer, key), where)
        reason = "closed by peer"
        try:
            await self._receive(peer_id, reader)
        except EncodingError as exc:
            self.stats.connections_dropped += 1
            reason = _describe(exc)
        except PEER_FAULTS as exc:
            reason = _describe(exc)
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
        check_peer(_ssl_object(writer), peer_id, keys)
        write_frame(writer, encode_hello(self.node_id))
        await writer.drain()
        return peer_id, keys[peer_id]

    def _register(self, inbound: _Inbound, where: str) -> None:
        old = self._inbound.get(inbound.peer_id)
        if old is not None:
            # A peer that redials has given up on its old connection.
            _abort(old.writer)
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
