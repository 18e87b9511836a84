"""``cli.coalesced``: a write leaves joined to the next, at once, in order;
a lone one when the loop runs its callbacks; ``close`` sends what is held
first and ``abort`` drops it. On a real
TCP connection on loopback; the real transport is wrapped once more only to
count the writes it is given.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from cli.coalesced import SEND_AT, CoalescedTransport


class CountingTransport(asyncio.Transport):
    """The real transport, noting each write it receives."""

    def __init__(self, real: asyncio.Transport) -> None:
        super().__init__()
        self.real = real
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.real.write(data)

    def close(self) -> None:
        self.real.close()

    def abort(self) -> None:
        self.real.abort()

    def is_closing(self) -> bool:
        return self.real.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()


@dataclass
class Accepted:
    transports: asyncio.Queue[asyncio.Transport] = field(default_factory=asyncio.Queue)


class Server(asyncio.Protocol):
    def __init__(self, accepted: Accepted) -> None:
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.accepted.transports.put_nowait(transport)


@dataclass
class Link:
    counting: CountingTransport
    coalesced: CoalescedTransport
    client: socket.socket

    async def received(self) -> bytes:
        """Everything the client gets until the server side closes."""
        loop = asyncio.get_running_loop()
        data = b""
        while chunk := await loop.sock_recv(self.client, 65536):
            data += chunk
        return data


@asynccontextmanager
async def link() -> AsyncIterator[Link]:
    loop = asyncio.get_running_loop()
    accepted = Accepted()
    server = await loop.create_server(lambda: Server(accepted), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    real = await asyncio.wait_for(accepted.transports.get(), 5)
    counting = CountingTransport(real)
    try:
        yield Link(counting, CoalescedTransport(counting, loop), client)
    finally:
        real.abort()
        client.close()
        server.close()
        await server.wait_closed()


def test_a_head_and_its_body_leave_in_one_send_at_once() -> None:
    """The body does not wait for the loop: the pair goes when it is whole."""

    async def main() -> None:
        async with link() as ln:
            ln.coalesced.write(b"HTTP/1.1 200 OK\r\n\r\n")
            assert ln.counting.writes == []  # the head waits for its body
            assert ln.coalesced.get_write_buffer_size() == 19
            ln.coalesced.write(bytearray(b"body"))
            assert ln.counting.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
            ln.coalesced.writelines([b"one ", memoryview(b"two")])
            assert ln.counting.writes[1:] == [b"one two"]
            ln.coalesced.close()
            assert await ln.received() == b"HTTP/1.1 200 OK\r\n\r\nbodyone two"

    asyncio.run(main())


def test_a_lone_write_goes_when_the_loop_runs_its_callbacks() -> None:
    async def main() -> None:
        async with link() as ln:
            ln.coalesced.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            ln.coalesced.write(b"")  # nothing to send: it pairs with nothing
            assert ln.counting.writes == []
            await asyncio.sleep(0)
            assert ln.counting.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
            ln.coalesced.write(b"second")
            await asyncio.sleep(0)
            assert ln.counting.writes[1:] == [b"second"]
            ln.coalesced.close()
            assert await ln.received() == b"HTTP/1.1 100 Continue\r\n\r\nsecond"

    asyncio.run(main())


def test_close_sends_what_is_held_before_closing() -> None:
    async def main() -> None:
        async with link() as ln:
            ln.coalesced.write(b"answer")
            ln.coalesced.close()
            assert ln.counting.writes == [b"answer"]
            assert ln.coalesced.is_closing()
            assert await ln.received() == b"answer"
            await asyncio.sleep(0)  # the send scheduled earlier finds nothing
            assert ln.counting.writes == [b"answer"]

    asyncio.run(main())


def test_abort_drops_what_is_held() -> None:
    async def main() -> None:
        async with link() as ln:
            ln.coalesced.write(b"never sent")
            ln.coalesced.abort()
            await asyncio.sleep(0)
            assert ln.counting.writes == []
            try:
                got = await ln.received()
            except ConnectionResetError:
                got = b""
            assert got == b""

    asyncio.run(main())


def test_a_write_held_when_the_connection_closes_is_not_sent_to_it() -> None:
    async def main() -> None:
        async with link() as ln:
            ln.coalesced.write(b"late")
            ln.counting.real.close()  # closed under it, as a lost connection
            await asyncio.sleep(0)
            assert ln.counting.writes == []

    asyncio.run(main())


def test_a_large_answer_goes_to_the_real_transport_at_once() -> None:
    """So that its flow control sees the bytes as uvicorn writes them."""

    async def main() -> None:
        async with link() as ln:
            head = b"HTTP/1.1 200 OK\r\n\r\n"
            body = b"x" * SEND_AT
            ln.coalesced.write(body)  # alone: not held either
            assert ln.counting.writes == [body]
            ln.coalesced.write(head)
            ln.coalesced.write(body)
            assert ln.counting.writes == [body, head + body]
            assert ln.coalesced.get_write_buffer_size() == (
                ln.counting.real.get_write_buffer_size()
            )
            ln.coalesced.close()
            assert await ln.received() == body + head + body

    asyncio.run(main())
