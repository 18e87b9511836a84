"""A transport that sends an answer's head and body as one segment.

uvicorn writes an answer's status line and headers when the app starts the
answer, then the body when the app sends it: two ``send`` calls, two TCP
segments, for every small answer. On loopback and on a busy node those
calls cost more than building a status or bundle answer, and the client
pays for each segment again. ``CoalescedTransport`` holds a write until the
next one, then sends both joined, at once: a head waits for its body, never
longer. A write that no other follows in the same loop iteration (a lone
``100 Continue``, the last chunk of a stream) goes when the loop next runs
its ready callbacks.

Invariant: bytes leave in the order they were written, and nothing written
before ``close`` is dropped by it (``close`` sends them first); ``abort``
drops them, as it drops what the real transport still holds. At most one
write is held, and never one of ``SEND_AT`` bytes or more: a large answer
goes to the real transport at once, so that its flow control
(pause_writing, which makes uvicorn wait for a slow client) sees every byte
it would have seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

# A write this large is sent at once: joining gains nothing at this size.
SEND_AT: Final = 64 * 1024


class CoalescedTransport(asyncio.Transport):
    """``transport`` with each write joined to the next; every other method
    is the real transport's."""

    __slots__ = ("_held", "_loop", "_real", "_scheduled")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__()
        self._real = transport
        self._loop = loop
        self._held: list[bytes] = []  # at most one write
        self._scheduled = False  # a _flush is due in the loop's ready queue

    # -- writing -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))
        if len(self._held) > 1 or len(data) >= SEND_AT:
            self._send()  # a head with its body, or too large to hold
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._send()

    def writelines(
        self, list_of_data: Iterable[bytes | bytearray | memoryview]
    ) -> None:
        for data in list_of_data:
            self.write(data)

    def _send(self) -> None:
        held, self._held = self._held, []
        # A connection lost meanwhile: the real transport would only count
        # (and after a few, log) writes to it.
        if held and not self._real.is_closing():
            self._real.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size() + sum(map(len, self._held))

    def close(self) -> None:
        self._send()
        self._real.close()

    def abort(self) -> None:
        self._held.clear()
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
