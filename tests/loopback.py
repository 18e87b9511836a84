"""A real uvicorn server on a loopback port, in a thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn


@contextmanager
def uvicorn_on_loopback(config_for: Callable[[int], uvicorn.Config]) -> Iterator[int]:
    """Serve ``config_for(port)`` on a free loopback port until the block
    ends; yields the port once the server has started."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(config_for(port))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="loopback", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
