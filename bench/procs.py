"""Child processes the benchmarks start, and free loopback ports for them.

Every process started here is tracked by its ``Popen`` and stopped by its
own pid (never by name), also when a benchmark fails half-way: ``Children``
is a context manager whose exit stops whatever is still running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import httpx

LOOPBACK: Final = "127.0.0.1"
STOP_GRACE_S: Final = 10.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback right now.

    All sockets are held open until every port is picked, so the kernel
    cannot hand the same port out twice; another program may still take one
    before we bind it, which only fails the run loudly.
    """
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_base_port(offsets: Sequence[int], *, low: int = 20_000) -> int:
    """A base port such that ``base + o`` is free for every offset.

    ``ledger cluster init`` lays ports out from one base (Raft at base + i,
    the API at base + 100 + i), so the whole pattern must be free.
    """
    for base in range(low, 60_000, 211):
        if all(port_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port range on loopback")


class Children:
    """The processes one benchmark started; stops them all on exit."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name in list(self.procs):
            self.stop(name)

    def start(
        self, name: str, argv: Sequence[str], *, log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with its output in ``log``; ``name`` must be new."""
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        out = log.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                # Its own session: a Ctrl-C on the benchmark reaches us, and
                # we stop the child ourselves, in order.
                start_new_session=True,
            )
        finally:
            out.close()
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL: the crash a failover benchmark needs."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def tail(self, name: str, lines: int = 15) -> str:
        """The end of a child's log, for an error message."""
        log = self.logs.get(name)
        if log is None or not log.exists():
            return ""
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_http(
    url: str,
    *,
    timeout_s: float,
    alive: Callable[[], bool] | None = None,
    ok: Callable[[httpx.Response], bool] | None = None,
    interval_s: float = 0.01,
) -> float:
    """Poll ``url`` until it answers 200 (and ``ok``); return when, in
    ``perf_counter`` seconds. ``TimeoutError`` otherwise, or at once if
    ``alive`` says the process died."""
    deadline = time.perf_counter() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                response = client.get(url)
                if response.status_code == 200 and (ok is None or ok(response)):
                    return time.perf_counter()
            if alive is not None and not alive():
                raise TimeoutError(f"process serving {url} exited")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{url} not serving after {timeout_s:.0f} s")
            time.sleep(interval_s)


@dataclass(frozen=True, slots=True)
class Resident:
    """What ``pid`` holds in memory, in MB (from /proc/PID/status)."""

    anon: float  # its own: heap, LevelDB's cache and buffers (RssAnon)
    total: float  # with file pages mapped in (VmRSS)
    peak: float  # the most VmRSS ever was (VmHWM)

    @property
    def mapped_files(self) -> float:
        """Pages of files it maps (LevelDB reads its tables through mmap):
        the kernel's page cache, dropped whenever memory is wanted."""
        return self.total - self.anon


def resident_mb(pid: int) -> Resident:
    fields: dict[str, float] = {}
    text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / 1024
    return Resident(fields["RssAnon"], fields["VmRSS"], fields["VmHWM"])


def dir_bytes(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (like ``du``)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total
