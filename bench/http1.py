"""The load generator's HTTP/1.1 sessions: httpx, or a lean one of our own.

Why two. Driven from asyncio with many concurrent requests, httpx costs so
much CPU per request that on two cores the client, not the server, sets the
figure (measured here: a trivial server answers a raw asyncio client 5 to 20
times faster than httpx's async client at 64 concurrent requests). So the
timed load uses ``RawSession`` by default: one kept-alive connection per
host, requests written as bytes, answers parsed just enough (status,
Content-Length or chunked body). ``--client httpx`` runs the same load
through httpx instead, one client per worker so its pool lock is not shared.

A session belongs to one worker and sends one request at a time.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

import httpx

TIMEOUT_S: Final = 30.0
MAX_HEADER: Final = 64 * 1024
KINDS: Final = ("raw", "httpx")


class TransportError(Exception):
    """The request got no answer (refused, reset, timed out)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> object:
        return json.loads(self.content)


class Session(Protocol):
    async def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply: ...

    async def close(self) -> None: ...


def new_session(kind: str) -> Session:
    if kind == "raw":
        return RawSession()
    if kind == "httpx":
        return HttpxSession()
    raise ValueError(f"unknown HTTP client {kind!r}; one of {KINDS}")


class HttpxSession:
    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        self._client = httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S)

    async def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        try:
            response = await self._client.request(
                method, url, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return Reply(response.status_code, response.content)

    async def close(self) -> None:
        await self._client.aclose()


class _Conn:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.used = False


class RawSession:
    """Plain HTTP/1.1 over asyncio streams, one kept-alive connection per
    (host, port). Only what the benchmarks' servers answer is understood."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], _Conn] = {}

    async def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        payload = body or b""
        if payload or method == "POST":
            head.append(f"Content-Length: {len(payload)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        try:
            return await asyncio.wait_for(self._exchange((host, port), raw), TIMEOUT_S)
        except TimeoutError as exc:
            self._drop((host, port))
            raise TransportError(f"no answer from {host}:{port} in time") from exc

    async def _exchange(self, key: tuple[str, int], raw: bytes) -> Reply:
        conn = self._conns.get(key)
        if conn is not None:
            try:
                return await self._send(key, conn, raw)
            except _StaleError:
                # The server closed a kept-alive connection before reading
                # the request (an idle timeout): nothing was received, so
                # sending it again on a new connection is safe.
                self._drop(key)
        try:
            reader, writer = await asyncio.open_connection(*key)
        except OSError as exc:
            raise TransportError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        conn = _Conn(reader, writer)
        self._conns[key] = conn
        try:
            return await self._send(key, conn, raw)
        except _StaleError as exc:
            self._drop(key)
            raise TransportError(f"{key[0]}:{key[1]} closed the connection") from exc

    async def _send(self, key: tuple[str, int], conn: _Conn, raw: bytes) -> Reply:
        got_any = False
        try:
            conn.writer.write(raw)
            await conn.writer.drain()
            line = await conn.reader.readline()
            if not line:
                raise _StaleError
            got_any = True
            reply, close = await _read_reply(conn.reader, line)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._drop(key)
            if not got_any and conn.used:
                raise _StaleError from exc
            raise TransportError(f"{key[0]}:{key[1]}: {exc!r}") from exc
        conn.used = True
        if close:
            self._drop(key)
        return reply

    def _drop(self, key: tuple[str, int]) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.writer.close()

    async def close(self) -> None:
        for key in list(self._conns):
            self._drop(key)


class _StaleError(Exception):
    pass


async def _read_reply(
    reader: asyncio.StreamReader, status_line: bytes
) -> tuple[Reply, bool]:
    """Parse one answer after its status line; (reply, server closes)."""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = close = False
    size = 0
    while True:
        line = await reader.readline()
        size += len(line)
        if size > MAX_HEADER:
            raise ValueError("answer headers too long")
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()  # until the server closes
        close = True
    return Reply(status, body), close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip(), 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
