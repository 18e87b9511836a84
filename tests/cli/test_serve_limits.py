"""``cli.serve``: the limits a node's uvicorn serves under, on a real uvicorn
server on loopback. A connection that sends nothing, part of its headers or
part of its body is closed after the timeout, while whole requests (and a
slow body that keeps arriving) are served; connections over the cap are
answered 503 and closed.

The timeouts are shortened in a subclass of the protocol (its class
attributes), everything else is ``uvicorn_config`` as a node runs it.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from contextlib import AbstractContextManager
from typing import Final

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from cli.serve import (
    BACKLOG,
    MAX_CONNECTIONS,
    BoundedHttpProtocol,
    uvicorn_config,
)
from tests.loopback import uvicorn_on_loopback

TIMEOUT: Final = 1.0  # seconds: first byte, headers and idle body alike
# How late a timed-out connection may be closed: loaded test machines.
SLACK: Final = 3.0
GET: Final = b"GET / HTTP/1.1\r\nHost: node\r\n\r\n"


class QuickProtocol(BoundedHttpProtocol):
    first_byte_timeout = TIMEOUT
    header_timeout = TIMEOUT
    body_idle_timeout = TIMEOUT
    body_deadline = 3 * TIMEOUT
    write_stall_timeout = TIMEOUT


class Echo:
    """Answers 200 with the request body; notes a disconnect it receives."""

    def __init__(self) -> None:
        self.disconnects = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        answer = b"ok:" + body
        headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def running(app: Echo, *, limit: int | None = None) -> AbstractContextManager[int]:
    """Serve ``app`` as a node does (QuickProtocol's timeouts); yields the port."""

    def config_for(port: int) -> uvicorn.Config:
        config = uvicorn_config(app, "127.0.0.1", port)
        config.http = QuickProtocol
        if limit is not None:
            config.http = type("Capped", (QuickProtocol,), {"max_connections": limit})
        config.lifespan = "off"
        return config

    return uvicorn_on_loopback(config_for)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT + SLACK)


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (socket timeout: it did not)."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def answer_or_503(conn: socket.socket) -> bytes:
    """One request's answer, or the 503 of a connection over the cap."""
    conn.sendall(GET)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
        if data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok:"):
            break
    return data


def answer(conn: socket.socket, request: bytes = GET) -> bytes:
    """Send one request and read one (small) answer on a kept-alive connection."""
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = conn.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    return data


def still_open(conn: socket.socket, seconds: float) -> bool:
    """True if the server neither sent anything nor closed within ``seconds``."""
    readable, _, _ = select.select([conn], [], [], seconds)
    return not readable


def test_a_node_serves_under_a_connection_cap_and_read_timeouts() -> None:
    config = uvicorn_config(Echo(), "127.0.0.1", 8080)
    # The cap is the protocol's: uvicorn's own would answer 503 on every
    # connection once it is reached.
    assert config.limit_concurrency is None
    assert BoundedHttpProtocol.max_connections == MAX_CONNECTIONS == 1_000
    assert 1 <= BoundedHttpProtocol.first_byte_timeout <= 10
    assert config.backlog == BACKLOG
    assert config.http is BoundedHttpProtocol
    # Generous enough for a phone on a poor link.
    assert 10 <= BoundedHttpProtocol.header_timeout <= 60
    assert BoundedHttpProtocol.body_idle_timeout >= BoundedHttpProtocol.header_timeout


def test_partial_headers_are_closed_after_the_timeout_while_requests_are_served() -> (
    None
):
    with running(Echo()) as port, connect(port) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: node\r\n")  # no blank line: more to come
        sent = time.monotonic()
        assert still_open(slow, TIMEOUT / 4)  # not closed at once
        # Meanwhile whole requests are answered, on new connections.
        for _ in range(3):
            with connect(port) as fast:
                assert answer(fast).startswith(b"HTTP/1.1 200 ")
        assert read_until_closed(slow) == b""
        elapsed = time.monotonic() - sent
        assert TIMEOUT * 0.8 <= elapsed <= TIMEOUT + SLACK


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout() -> None:
    with running(Echo()) as port, connect(port) as idle:
        opened = time.monotonic()
        assert read_until_closed(idle) == b""
        assert TIMEOUT * 0.8 <= time.monotonic() - opened <= TIMEOUT + SLACK


def test_partial_headers_of_a_kept_alive_connections_next_request_time_out() -> None:
    """uvicorn's keep-alive timer stops at the next request's first byte."""
    with running(Echo()) as port, connect(port) as conn:
        assert answer(conn).startswith(b"HTTP/1.1 200 ")
        conn.sendall(b"GET / HTTP/1.1\r\n")
        sent = time.monotonic()
        assert read_until_closed(conn) == b""
        assert TIMEOUT * 0.8 <= time.monotonic() - sent <= TIMEOUT + SLACK


def test_a_stalled_body_is_closed_and_the_app_receives_a_disconnect() -> None:
    app = Echo()
    with running(app) as port, connect(port) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: node\r\nContent-Length: 100\r\n\r\nab")
        sent = time.monotonic()
        assert read_until_closed(conn) == b""
        assert TIMEOUT * 0.8 <= time.monotonic() - sent <= TIMEOUT + SLACK
        deadline = time.monotonic() + SLACK
        while app.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.disconnects == 1


def test_a_slow_body_that_keeps_arriving_is_served() -> None:
    """The body timeout is an idle limit, not a deadline for the whole body."""
    with running(Echo()) as port, connect(port) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: node\r\nContent-Length: 5\r\n\r\n")
        started = time.monotonic()
        for byte in b"slow!":
            time.sleep(TIMEOUT / 4)
            conn.sendall(bytes([byte]))
        assert time.monotonic() - started > TIMEOUT
        reply = answer(conn, b"")
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert reply.endswith(b"ok:slow!")


def test_a_chunked_body_whose_size_line_trickles_is_closed() -> None:
    """Only body bytes keep a body alive: a chunk-size line sent a digit at
    a time carries none."""
    with running(Echo()) as port, connect(port) as conn:
        conn.sendall(
            b"POST / HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nab\r\n"
        )
        sent = time.monotonic()
        closed = False
        while time.monotonic() - sent < TIMEOUT + SLACK:
            try:
                conn.sendall(b"0")  # a chunk size that never ends
            except OSError:
                closed = True
                break
            if not still_open(conn, TIMEOUT / 4):
                closed = read_until_closed(conn) == b""
                break
        assert closed
        assert time.monotonic() - sent >= TIMEOUT * 0.8


def test_a_body_that_trickles_past_its_deadline_is_closed() -> None:
    """A byte now and then keeps a body from being idle, not from being
    late: it must be in by the deadline."""
    with running(Echo()) as port, connect(port) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: node\r\nContent-Length: 1000\r\n\r\n")
        sent = time.monotonic()
        while still_open(conn, TIMEOUT / 4):
            conn.sendall(b"x")
            assert time.monotonic() - sent < QuickProtocol.body_deadline + SLACK
        assert read_until_closed(conn) == b""
        assert time.monotonic() - sent >= QuickProtocol.body_deadline * 0.8


class Slow(Echo):
    """Takes twice the timeout to answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(2 * TIMEOUT)
        await super().__call__(scope, receive, send)


def test_a_pipelined_request_does_not_time_out_while_the_one_before_is_answered() -> (
    None
):
    # The next request's headers wait on the node, not on the client.
    with running(Slow()) as port, connect(port) as conn:
        conn.sendall(GET + b"GET / HTTP/1.1\r\n")  # the second, begun
        data = b""
        while b"ok:" not in data:
            chunk = conn.recv(65536)
            assert chunk, f"closed before the first answer: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")


class Big:
    """Answers every request with 8 MiB."""

    body = b"x" * (8 << 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def test_a_client_that_never_reads_its_answer_is_dropped() -> None:
    # Its answer would wait in the node's buffer, and the connection hold
    # its place under the cap, for ever.
    with running(Big()) as port:  # type: ignore[arg-type]
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.connect(("127.0.0.1", port))
        with conn:
            conn.sendall(GET)
            time.sleep(TIMEOUT + 1.0)  # not reading
            conn.settimeout(TIMEOUT + SLACK)
            received = 0
            try:
                while chunk := conn.recv(1 << 16):
                    received += len(chunk)
            except ConnectionResetError:
                pass
        assert received < len(Big.body)


@pytest.mark.parametrize("limit", [3])
def test_connections_over_the_cap_are_answered_503_and_closed(limit: int) -> None:
    with running(Echo(), limit=limit) as port:
        held = [connect(port) for _ in range(limit)]
        try:
            time.sleep(0.1)  # accepted and counted
            with connect(port) as extra:
                reply = read_until_closed(extra)
            assert reply.startswith(b"HTTP/1.1 503 ")
            assert b"connection: close" in reply
        finally:
            for conn in held:
                conn.close()
        # Served again once their close reached the server.
        deadline = time.monotonic() + SLACK
        while True:
            with connect(port) as conn:
                reply = answer_or_503(conn)
            if reply.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert reply.startswith(b"HTTP/1.1 200 ")


def test_at_the_cap_the_connections_open_are_still_served() -> None:
    # Idle connections filling the cap keep new ones out, not the others.
    with running(Echo(), limit=3) as port, connect(port) as kept:
        assert answer(kept).startswith(b"HTTP/1.1 200 ")
        idle = [connect(port) for _ in range(2)]
        try:
            time.sleep(0.1)  # accepted and counted: the cap is reached
            for _ in range(3):
                assert answer(kept).startswith(b"HTTP/1.1 200 ")
        finally:
            for conn in idle:
                conn.close()
