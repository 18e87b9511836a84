"""The machine ceiling: what the primitives under the ledger do on this box.

Every higher figure is bounded by one of these (a submission costs a
signature check, a leaf a few SHA-256 calls and LevelDB puts, a commit an
fsync), so the report shows each figure as a fraction of its ceiling. A
figure far below its ceiling points at our Python, not at the machine.

Each primitive runs on one core, in this process, for ``seconds`` of wall
time.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Final

import nacl.signing
import plyvel

from bench.figures import Figure, per_second

# Names the other suites use to look a ceiling up.
SIGN: Final = "ed25519_sign_per_s"
VERIFY: Final = "ed25519_verify_per_s"
SHA256: Final = "sha256_small_per_s"
LEVELDB: Final = "leveldb_batched_puts_per_s"
LEVELDB_GETS: Final = "leveldb_random_gets_per_s"
FSYNC: Final = "fsync_per_s"

# A submission's signing message is about this long (prefix, origin,
# agency, nonce, time, root).
MESSAGE_BYTES: Final = 120
LEVELDB_BATCH: Final = 10_000
# Keys and values the size of a leaf key and a small stored record.
LEVELDB_KEY_BYTES: Final = 9
LEVELDB_VALUE_BYTES: Final = 100


def run(seconds: float, tmp: Path) -> list[Figure]:
    """All six ceilings; ``tmp`` is a scratch folder on the data disk."""
    figures = [
        _sign(seconds),
        _verify(seconds),
        _sha256(seconds),
        *_leveldb(seconds, tmp),
        _fsync(seconds, tmp),
    ]
    # Other processes on the box lower every figure; say how busy it was.
    busy = f"; 1-min load average {os.getloadavg()[0]:.2f} when measured"
    for figure in figures:
        figure.note = (figure.note or "") + busy
    return figures


def _sign(seconds: float) -> Figure:
    key = nacl.signing.SigningKey(bytes(range(32)))
    message = os.urandom(MESSAGE_BYTES)

    def batch() -> int:
        for _ in range(200):
            key.sign(message)
        return 200

    return Figure(
        name=SIGN,
        value=per_second(batch, min_seconds=seconds),
        unit="signatures/s",
        note=f"pynacl (libsodium), {MESSAGE_BYTES}-byte messages, one core",
    )


def _verify(seconds: float) -> Figure:
    key = nacl.signing.SigningKey(bytes(range(32)))
    signed = key.sign(os.urandom(MESSAGE_BYTES))
    verify_key = key.verify_key

    def batch() -> int:
        for _ in range(100):
            verify_key.verify(signed)
        return 100

    return Figure(
        name=VERIFY,
        value=per_second(batch, min_seconds=seconds),
        unit="verifications/s",
        note=f"pynacl (libsodium), {MESSAGE_BYTES}-byte messages, one core",
    )


def _sha256(seconds: float) -> Figure:
    data = os.urandom(64)
    sha256 = hashlib.sha256

    def batch() -> int:
        for _ in range(5_000):
            sha256(data).digest()
        return 5_000

    return Figure(
        name=SHA256,
        value=per_second(batch, min_seconds=seconds),
        unit="hashes/s",
        note="hashlib, 64-byte inputs (two child hashes), from Python",
    )


def _leveldb(seconds: float, tmp: Path) -> list[Figure]:
    """Batched puts, then random point reads of the keys they wrote."""
    path = Path(tempfile.mkdtemp(prefix="leveldb-", dir=tmp))
    db = plyvel.DB(str(path), create_if_missing=True)
    value = os.urandom(LEVELDB_VALUE_BYTES)
    counter = [0]

    def batch() -> int:
        # Increasing big-endian keys, like leaf and node keys in the store.
        start = counter[0]
        with db.write_batch() as wb:
            for i in range(start, start + LEVELDB_BATCH):
                wb.put(b"L" + i.to_bytes(8, "big"), value)
        counter[0] = start + LEVELDB_BATCH
        return LEVELDB_BATCH

    rng = random.Random(2)

    def reads() -> int:
        # Keys the puts wrote, in random order, like a proof's node reads
        # or a lookup's status read in a store.
        top = counter[0]
        get = db.get
        for _ in range(1_000):
            if get(b"L" + rng.randrange(top).to_bytes(8, "big")) is None:
                raise RuntimeError("a key the ceiling wrote is missing")
        return 1_000

    try:
        rate = per_second(batch, min_seconds=seconds)
        written = counter[0]
        gets = per_second(reads, min_seconds=seconds)
    finally:
        db.close()
    return [
        Figure(
            name=LEVELDB,
            value=rate,
            unit="puts/s",
            note=(
                f"plyvel write batches of {LEVELDB_BATCH:,}, {LEVELDB_KEY_BYTES}-"
                f"byte keys, {LEVELDB_VALUE_BYTES}-byte values, not synced"
            ),
        ),
        Figure(
            name=LEVELDB_GETS,
            value=gets,
            unit="gets/s",
            note=(
                f"plyvel DB.get of random keys among the {written:,} the puts "
                "wrote, from Python"
            ),
        ),
    ]


def _fsync(seconds: float, tmp: Path) -> Figure:
    path = tmp / "fsync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    record = os.urandom(128)

    def one() -> int:
        os.write(fd, record)
        # fdatasync is what LevelDB calls for a synced write on Linux.
        os.fdatasync(fd)
        return 1

    try:
        rate = per_second(one, min_seconds=seconds)
    finally:
        os.close(fd)
    return Figure(
        name=FSYNC,
        value=rate,
        unit="fsyncs/s",
        note=f"append 128 bytes + fdatasync on the data disk ({1000 / rate:.3f} ms)",
    )
