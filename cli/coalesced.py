"""A transport that sends what one loop iteration writes as one segment.

uvicorn writes an answer's status line and headers when the app starts the
answer, then the body when the app sends it: two ``send`` calls, two TCP
segments, for every small answer. On loopback and on a busy node those
calls cost more than building a status or bundle answer, and the client
pays for each segment again. ``CoalescedTransport`` holds the writes made
until the loop next runs its ready callbacks, then sends them joined.

Invariant: bytes leave in the order they were written, and nothing written
before ``close`` is dropped by it (``close`` sends them first); ``abort``
drops them, as it drops what the real transport still holds. At most
``SEND_AT`` bytes are held: a large answer goes to the real transport at
once, so that its flow control (pause_writing, which makes uvicorn wait for
a slow client) sees every byte it would have seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

# Bytes held before they are sent without waiting for the loop: one segment's
# worth and more gains nothing from joining.
SEND_AT: Final = 64 * 1024


class CoalescedTransport(asyncio.Transport):
    """``transport`` with its writes joined per loop iteration; every other
    method is the real transport's."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_real")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__()
        self._real = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    # -- writing -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._send)
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= SEND_AT:
            self._send()  # the call scheduled above then finds nothing

    def writelines(
        self, list_of_data: Iterable[bytes | bytearray | memoryview]
    ) -> None:
        for data in list_of_data:
            self.write(data)

    def _send(self) -> None:
        held, self._held = self._held, []
        self._held_bytes = 0
        # A connection lost meanwhile: the real transport would only count
        # (and after a few, log) writes to it.
        if held and not self._real.is_closing():
            self._real.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size() + self._held_bytes

    def close(self) -> None:
        self._send()
        self._real.close()

    def abort(self) -> None:
        self._held.clear()
        self._held_bytes = 0
        self._real.abort()

    def write_eof(self) -> None:
        self._send()
        self._real.write_eof()

    def can_write_eof(self) -> bool:
        return self._real.can_write_eof()

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        self._real.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._real.get_write_buffer_limits()

    # -- the rest, as the real transport does it ---------------------------

    def is_closing(self) -> bool:
        return self._real.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._real.get_protocol()

    def is_reading(self) -> bool:
        return self._real.is_reading()

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def resume_reading(self) -> None:
        self._real.resume_reading()
