"""Crash safety: a process applying blocks is SIGKILLed at random moments;
every reopen holds whole blocks only, and every block it acknowledged.

Run as a script, this module is the child: it opens the store at
``argv[1]`` and applies blocks until killed, printing ``applied <height>``
after each synced apply returns.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # the child: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.block import block_hash
from ledger.store import LedgerStore
from tests.ledger.store_helpers import (
    Chain,
    anchor,
    doc_id,
    make_agencies,
    make_genesis,
    revoke,
)

AGENCIES = make_agencies()
GENESIS = make_genesis(AGENCIES)
ROUNDS = 30
ROOT = Path(__file__).resolve().parents[2]


def _block_entries(height: int, rng: random.Random) -> list[tuple[str, list[bytes]]]:
    """Deterministic per height, so a block lost to a kill is redone alike."""
    subs: list[tuple[str, list[bytes]]] = [
        ("moj", [anchor("moj", f"{height}-{i}") for i in range(rng.randint(1, 60))])
    ]
    if height > 1:
        subs.append(("moh", [anchor("moh", f"h{height}")]))
        subs.append(("moj", [revoke("moj", f"{height - 1}-0")]))
    return subs


def child(path: str) -> None:
    store = LedgerStore.open(path, GENESIS, full_check=False)
    chain = Chain(store, AGENCIES)
    print("ready", store.height, flush=True)
    while True:
        height = store.height + 1
        rng = random.Random(height)
        chain.apply(*_block_entries(height, rng), final=rng.random() < 0.7)
        print("applied", store.height, flush=True)


def _check_consistent(store: LedgerStore) -> None:
    """Whole blocks: the tip, the log, the state and the leaves agree."""
    h = store.height
    if h == 0:
        assert store.tree_size == 0
        return
    header = store.header(h)
    assert block_hash(header) == store.last_hash
    assert (header.tree_size, header.state_root) == (store.tree_size, store.state_root)
    assert store.log_root(store.tree_size) == header.log_root
    assert store.applied_index == h  # stored with the block, never apart
    assert store.status(doc_id(f"{h}-0")) is not None  # the last block is whole
    assert store.status(doc_id(f"{h + 1}-0")) is None  # the next is absent
    if h > 1:
        rec = store.status(doc_id(f"{h - 1}-0"))
        assert rec is not None and rec.status == "revoked"
    store.verify_chain()


def _run_child(path: Path, rng: random.Random) -> int:
    """Start the child, kill it at a random moment; the last height it
    reported as applied (or -1)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, __file__, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.startswith(b"ready"), proc.stderr.read() if proc.stderr else ready
    time.sleep(rng.uniform(0.0, 0.12))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return _last_applied(out)


def _last_applied(out: bytes) -> int:
    """The highest ``applied N`` line; a last line the kill cut short (no
    newline yet) proves nothing and is ignored, any other line is a fault."""
    lines = out.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    assert b"applied ".startswith(tail[:8]), f"unexpected output {tail!r}"
    heights = []
    for line in complete:
        word, _, number = line.partition(b" ")
        assert word == b"applied" and number.isdigit(), f"bad line {line!r}"
        heights.append(int(number))
    return max(heights, default=-1)


def test_sigkill_leaves_whole_blocks_or_none(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    rng = random.Random(20240607)
    acknowledged = 0
    for round_ in range(ROUNDS):
        acknowledged = max(acknowledged, _run_child(path, rng))
        full = round_ % 5 == 4 or round_ == ROUNDS - 1
        with LedgerStore.open(path, GENESIS, full_check=full) as store:
            # Durability: an apply that returned is on disk (synced batch).
            assert store.height >= acknowledged
            _check_consistent(store)
    with LedgerStore.open(path, GENESIS) as store:
        assert store.height > 0  # the children made progress


if __name__ == "__main__":
    child(sys.argv[1])
