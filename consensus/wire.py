"""The wire format of peer connections, and small helpers for their streams.

A frame is a 4-byte big-endian length and that many opaque bytes,
``1 <= length <= max_frame``. The first frame each way is a hello naming the
sender's agency id (a canonical map, ``ledger.codec``); the transport pins
that id to the TLS certificate's key (``consensus.tls``).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from typing import Final

from consensus.tls import check_agency_id
from ledger.codec import Field, build_record, check_record, get_str, pack, unpack
from ledger.errors import EncodingError, LedgerError, VerificationError

HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 64 * 1024 * 1024
HELLO_PROTOCOL: Final = "agency-ledger/peer/v1"
HELLO_MAX: Final = 256
HELLO_FIELDS: Final = (
    Field("proto", str, max_len=64),
    Field("id", str, max_len=40),
)


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
    """Queue one frame on ``writer``; the caller drains."""
    writer.writelines([HEADER.pack(len(frame)), frame])


class PausedStreamProtocol(asyncio.StreamReaderProtocol):
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


def ssl_object(writer: asyncio.StreamWriter) -> ssl.SSLObject:
    """The TLS state of ``writer``'s connection (``VerificationError`` if none)."""
    tls = writer.get_extra_info("ssl_object")
    if not isinstance(tls, ssl.SSLObject):
        raise VerificationError("malformed", "connection is not TLS")
    return tls


def abort(writer: asyncio.StreamWriter) -> None:
    # Abort rather than close: a graceful TLS shutdown waits on the peer,
    # and Raft gains nothing from a clean close_notify.
    writer.transport.abort()


def peer_name(writer: asyncio.StreamWriter) -> str:
    """``host:port`` of the remote end, for logs."""
    peername = writer.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return "?"


def describe(exc: BaseException) -> str:
    """An exception as one log value: its type, and its message if any."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
