"""The machine and the versions a run measured, for ``latest.json``.

Figures mean little without the box they came from: two runs are only
comparable when these match.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Final

# Python packages whose speed the figures depend on.
PACKAGES: Final = (
    "plyvel",
    "pynacl",
    "msgpack",
    "cryptography",
    "fastapi",
    "uvicorn",
    "httpx",
)
ETCD: Final = Path("/usr/bin/etcd")


def machine() -> dict[str, object]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["leveldb"] = _leveldb_version()
    out["libsodium"] = _libsodium_version()
    out["etcd"] = etcd_version()
    return out


def load_average() -> float:
    """The 1-minute load average; a busy box makes every figure lower."""
    return os.getloadavg()[0]


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def _memory_mb() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def _leveldb_version() -> str | None:
    # The plyvel wheel bundles its own libleveldb; the version is in the
    # bundled file's name (plyvel.libs/libleveldb-<hash>.so.<version>).
    try:
        import plyvel
    except ImportError:
        return None
    package = Path(plyvel.__file__).resolve().parent
    for lib in sorted(package.parent.glob("plyvel.libs/libleveldb*.so*")):
        found = re.search(r"\.so\.([\d.]+)$", lib.name)
        if found:
            return found.group(1)
    return "system libleveldb"


def _libsodium_version() -> str | None:
    # pynacl bundles libsodium and exposes no version call for it.
    try:
        return f"bundled with pynacl {metadata.version('pynacl')}"
    except metadata.PackageNotFoundError:
        return None


def etcd_version() -> str | None:
    """The installed etcd's version, or None when it is not installed."""
    if not ETCD.exists() and shutil.which("etcd") is None:
        return None
    binary = str(ETCD) if ETCD.exists() else "etcd"
    try:
        out = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"etcd Version:\s*(\S+)", out)
    return match.group(1) if match else None
