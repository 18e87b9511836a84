"""PeerTransport over real TLS sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping

import pytest

from consensus.tls import check_peer, client_context
from consensus.transport import PeerTransport
from consensus.wire import HEADER, decode_hello, encode_hello, read_frame, write_frame
from ledger.errors import ConsensusError, EncodingError
from ledger.keys import SigningKey

IDS = ("node-a", "node-b", "node-c")
KEYS = {node: SigningKey.from_seed(bytes([i + 1]) * 32) for i, node in enumerate(IDS)}
MALLORY = SigningKey.from_seed(bytes([66]) * 32)
MAX_FRAME = 1024


class Node:
    """One transport and the frames it has received."""

    def __init__(
        self,
        node_id: str,
        trust: Mapping[str, bytes],
        *,
        key: SigningKey | None = None,
        port: int = 0,
        queue_frames: int = 4096,
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.transport = PeerTransport(
            node_id=node_id,
            listen_host="127.0.0.1",
            listen_port=port,
            key=key or KEYS[node_id],
            peers={},
            peer_keys=lambda: trust,
            on_frame=self.on_frame,
            max_frame=MAX_FRAME,
            queue_frames=queue_frames,
            backoff_min_ms=10,
            backoff_max_ms=100,
            timeout_ms=500,
            rng=random.Random(7),
        )

    def on_frame(self, peer: str, frame: bytes) -> None:
        self.received.append((peer, frame))

    def frames_from(self, peer: str) -> list[bytes]:
        return [frame for src, frame in self.received if src == peer]


def trust_of(*ids: str) -> dict[str, bytes]:
    return {node: KEYS[node].public_key for node in ids}


async def until(pred: Callable[[], bool], timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 15))


async def started(*nodes: Node) -> None:
    """Start ``nodes`` on free ports, then tell each where the others are."""
    for node in nodes:
        if node.transport.port == 0:
            await node.transport.start()
    addresses = {n.transport.node_id: ("127.0.0.1", n.transport.port) for n in nodes}
    for node in nodes:
        node.transport.update_peers(addresses)


async def stopped(*nodes: Node) -> None:
    for node in nodes:
        await node.transport.stop()


async def raw_peer(
    port: int, node_id: str, key: SigningKey
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven peer that has passed TLS and the hello exchange."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(node_id, key), server_hostname="x"
    )
    check_peer(writer.get_extra_info("ssl_object"), "node-b", trust_of(*IDS))
    write_frame(writer, encode_hello(node_id))
    assert decode_hello(await read_frame(reader, 256)) == "node-b"
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 3) == b""
    except ConnectionError:
        return True


def test_frames_flow_both_ways_between_three_transports() -> None:
    async def main() -> None:
        nodes = [Node(node, trust_of(*IDS)) for node in IDS]
        await started(*nodes)
        pairs = [(src, dst) for src in nodes for dst in nodes if src is not dst]
        for src, dst in pairs:
            for n in range(3):
                frame = f"{src.transport.node_id}>{n}".encode()
                assert src.transport.send(dst.transport.node_id, frame)
        await until(lambda: all(len(node.received) == 6 for node in nodes))
        for src, dst in pairs:
            sender = src.transport.node_id
            want = [f"{sender}>{n}".encode() for n in range(3)]
            assert dst.frames_from(sender) == want  # in order, per sender
        stats = nodes[0].transport.stats
        assert stats.frames_sent == 6 and stats.frames_received == 6
        assert stats.connections_opened == 2 and stats.connections_accepted == 2
        await stopped(*nodes)

    run(main)


def test_reconnects_after_a_peer_restarts() -> None:
    async def main() -> None:
        a, b = Node("node-a", trust_of(*IDS)), Node("node-b", trust_of(*IDS))
        await started(a, b)
        a.transport.send("node-b", b"before")
        await until(lambda: b.frames_from("node-a") == [b"before"])
        port = b.transport.port
        await b.transport.stop()
        await until(lambda: not a.transport.connected("node-b"))
        a.transport.send("node-b", b"while down")  # kept in a's queue
        b2 = Node("node-b", trust_of(*IDS), port=port)
        await b2.transport.start()
        await until(lambda: b2.frames_from("node-a") == [b"while down"])
        a.transport.send("node-b", b"after")
        await until(lambda: b2.frames_from("node-a") == [b"while down", b"after"])
        assert a.transport.stats.connections_opened == 2
        await stopped(a, b2)

    run(main)


def test_oversize_and_empty_frames_drop_the_connection_not_the_node() -> None:
    async def main() -> None:
        a, b = Node("node-a", trust_of(*IDS)), Node("node-b", trust_of(*IDS))
        await started(a, b)
        for bad_length in (MAX_FRAME + 1, 0, 2**32 - 1):
            reader, writer = await raw_peer(b.transport.port, "node-c", KEYS["node-c"])
            writer.write(HEADER.pack(bad_length) + b"xyz")
            assert await closed_by_server(reader)
            writer.close()
        assert b.transport.stats.connections_dropped == 3
        # A frame cut short by the peer's crash is dropped as well.
        reader, writer = await raw_peer(b.transport.port, "node-c", KEYS["node-c"])
        writer.write(HEADER.pack(100) + b"short")
        writer.transport.abort()
        a.transport.send("node-b", b"still alive")
        await until(lambda: b.frames_from("node-a") == [b"still alive"])
        assert b.frames_from("node-c") == []
        await stopped(a, b)

    run(main)


def test_bad_hello_is_refused() -> None:
    async def main() -> None:
        b = Node("node-b", trust_of(*IDS))
        await started(b)
        for hello in (b"\x93garbage", encode_hello("node-b"), encode_hello("node-a")):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                b.transport.port,
                ssl=client_context("node-c", KEYS["node-c"]),
                server_hostname="x",
            )
            write_frame(writer, hello)  # not node-c's own name, or not a hello
            assert await closed_by_server(reader)
            writer.close()
        assert b.transport.stats.connections_refused == 3
        assert b.transport.stats.connections_accepted == 0
        await stopped(b)

    run(main)


def test_garbage_and_silent_tcp_clients_do_not_crash_the_server() -> None:
    async def main() -> None:
        a, b = Node("node-a", trust_of(*IDS)), Node("node-b", trust_of(*IDS))
        await started(b)
        reader, writer = await asyncio.open_connection("127.0.0.1", b.transport.port)
        writer.write(random.Random(1).randbytes(4096))
        assert await closed_by_server(reader)
        writer.close()
        # A client that says nothing is cut off after the handshake timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", b.transport.port)
        assert await closed_by_server(reader)
        writer.close()
        assert b.transport.stats.connections_refused == 2
        await started(a, b)
        a.transport.send("node-b", b"hello after garbage")
        await until(lambda: b.frames_from("node-a") == [b"hello after garbage"])
        await stopped(a, b)

    run(main)


def test_peer_with_an_unknown_key_never_gets_a_frame_through() -> None:
    async def main() -> None:
        b = Node("node-b", trust_of(*IDS))
        # Mallory claims node-c's id and trusts b's key, but holds its own key.
        mallory = Node("node-c", trust_of(*IDS), key=MALLORY)
        await started(b, mallory)
        mallory.transport.send("node-b", b"let me in")
        await until(lambda: b.transport.stats.connections_refused >= 2)
        assert b.received == [] and b.transport.stats.connections_accepted == 0
        assert not mallory.transport.connected("node-b")
        await stopped(b, mallory)

    run(main)


def test_revalidate_drops_connections_of_a_rotated_out_key() -> None:
    async def main() -> None:
        trust = trust_of(*IDS)
        a, b = Node("node-a", trust), Node("node-b", trust)
        await started(a, b)
        a.transport.send("node-b", b"one")
        await until(lambda: b.frames_from("node-a") == [b"one"])
        trust["node-a"] = MALLORY.public_key  # agency a rotated its node key
        b.transport.revalidate()
        await until(lambda: not a.transport.connected("node-b"))
        refused = b.transport.stats.connections_refused
        await until(lambda: b.transport.stats.connections_refused > refused)
        assert b.transport.stats.connections_accepted == 1
        await stopped(a, b)

    run(main)


def test_frame_refused_by_the_node_drops_the_connection() -> None:
    async def main() -> None:
        class Refusing(Node):
            def on_frame(self, peer: str, frame: bytes) -> None:
                if frame == b"bad":
                    raise EncodingError("not a message")
                super().on_frame(peer, frame)

        a, b = Node("node-a", trust_of(*IDS)), Refusing("node-b", trust_of(*IDS))
        await started(a, b)
        a.transport.send("node-b", b"bad")
        await until(lambda: b.transport.stats.connections_dropped == 1)
        # Frames written before a notices the drop are lost (Raft resends);
        # wait for the new connection.
        await until(lambda: a.transport.stats.connections_opened == 2)
        a.transport.send("node-b", b"good")
        await until(lambda: b.frames_from("node-a") == [b"good"])
        await stopped(a, b)

    run(main)


def test_send_queue_is_bounded_and_drops_the_oldest() -> None:
    a = Node("node-a", trust_of(*IDS), queue_frames=3)
    a.transport.update_peers({"node-b": ("127.0.0.1", 9)})
    for n in range(5):
        assert a.transport.send("node-b", bytes([n]))
    assert a.transport.queued("node-b") == 3
    assert a.transport.stats.frames_dropped == 2
    assert not a.transport.send("node-z", b"nobody")
    assert a.transport.stats.frames_dropped == 3
    with pytest.raises(ConsensusError):
        a.transport.send("node-b", bytes(MAX_FRAME + 1))
    with pytest.raises(ConsensusError):
        a.transport.send("node-b", b"")
