"""etcd as the yardstick: a 3-member cluster on loopback under our load.

DESIGN.md measures the ledger against etcd on the same machine, because
etcd is Raft plus an fsync per commit done well: how far we fall short of it
is what our own code costs. The cluster gets temporary data folders and
free ports, and is driven through its JSON gateway (``POST /v3/kv/put``,
``/v3/kv/txn``) by the same load generator, with the same concurrency, the
same batch size and writes of the size of one anchor entry as the ledger's
single and batched figures. Every acknowledged key is then read back from
every member, as for the ledger.

When etcd is not installed the suite says so in one line and reports its
figures as not measured.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bench import load
from bench.figures import Figure, missing, say
from bench.http1 import Reply
from bench.load import LostWriteError, Request, post_json
from bench.machine import ETCD
from bench.procs import LOOPBACK, Children, free_ports, wait_http
from bench.profile import Profile
from ledger.entries import Anchor, encode_entry

SINGLE: Final = "etcd_single_puts_per_s"
BATCHED: Final = "etcd_batched_puts_per_s"
LATENCY_P99: Final = "etcd_commit_latency_p99_ms"
MEMBERS: Final = 3
PAGE: Final = 10_000


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    client_url: str
    peer_url: str


def binary() -> str | None:
    if ETCD.exists():
        return str(ETCD)
    return shutil.which("etcd")


def unavailable(why: str) -> list[Figure]:
    return [
        missing(SINGLE, "puts/s", why),
        missing(BATCHED, "puts/s", why),
        missing(LATENCY_P99, "ms", why, higher_is_better=False),
    ]


def run(profile: Profile, tmp: Path) -> list[Figure]:
    etcd = binary()
    if etcd is None:
        say("etcd: /usr/bin/etcd not found, skipping (apt-get install etcd-server)")
        return unavailable("etcd is not installed")
    ports = free_ports(2 * MEMBERS)
    members = [
        Member(
            f"e{i}",
            f"http://{LOOPBACK}:{ports[2 * i]}",
            f"http://{LOOPBACK}:{ports[2 * i + 1]}",
        )
        for i in range(MEMBERS)
    ]
    # One token for the whole cluster: members with different tokens
    # refuse each other ("cluster ID mismatch").
    token = f"bench-{secrets.token_hex(4)}"
    with Children() as children:
        for m in members:
            argv = _argv(etcd, m, members, tmp, profile, token)
            children.start(m.name, argv, log=tmp / f"{m.name}.log")
        for m in members:
            try:
                wait_http(f"{m.client_url}/health", timeout_s=30, ok=_healthy)
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}\n{children.tail(m.name)}") from exc
        return asyncio.run(_measure(profile, members))


def _healthy(response: httpx.Response) -> bool:
    return bool(response.json().get("health") == "true")


def _argv(
    etcd: str,
    m: Member,
    members: Sequence[Member],
    tmp: Path,
    profile: Profile,
    token: str,
) -> list[str]:
    cluster = ",".join(f"{x.name}={x.peer_url}" for x in members)
    return [
        etcd,
        "--name",
        m.name,
        "--data-dir",
        str(tmp / m.name),
        "--listen-client-urls",
        m.client_url,
        "--advertise-client-urls",
        m.client_url,
        "--listen-peer-urls",
        m.peer_url,
        "--initial-advertise-peer-urls",
        m.peer_url,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        token,
        # A txn carries one of our batches whole, as one submission does.
        "--max-txn-ops",
        str(max(profile.batch_size, 128)),
        "--max-request-bytes",
        str(16 * 1024 * 1024),
        "--logger",
        "zap",
        "--log-level",
        "error",
    ]


def value_size() -> int:
    """Bytes of one encoded anchor entry: etcd writes values this long."""
    sample = Anchor(
        issuer="agency-00",
        doc_id=bytes(32),
        doc_type="criminal_record",
        issued_at=1_700_000_000_000,
    )
    return len(encode_entry(sample))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _accept(req: Request, reply: Reply) -> str | None:
    if reply.status_code != 200:
        return f"{reply.status_code} {reply.text[:200]}"
    try:
        body = reply.json()
    except ValueError:
        return "answer is not JSON"
    if not isinstance(body, dict) or "header" not in body:
        return f"not acknowledged: {reply.text[:200]}"
    if body.get("succeeded") is False:
        return f"txn not applied: {reply.text[:200]}"
    return None


async def _leader(members: Sequence[Member]) -> Member:
    """The member that is leader (writes sent there skip one forward, as
    ours are sent to our leader)."""
    for _ in range(100):
        for m in members:
            status = await post_json(f"{m.client_url}/v3/maintenance/status", {})
            if not isinstance(status, dict) or not status.get("leader"):
                continue
            if status["header"]["member_id"] == status["leader"]:
                return m
        await asyncio.sleep(0.1)
    raise RuntimeError("etcd elected no leader")


async def _measure(profile: Profile, members: Sequence[Member]) -> list[Figure]:
    size = value_size()
    prefix = f"bench/{secrets.token_hex(4)}/"
    url = (await _leader(members)).client_url

    def put(i: int) -> Request:
        key = f"{prefix}s{i:09d}"
        body = {"key": _b64(key.encode()), "value": _b64(os.urandom(size))}
        headers = (("content-type", "application/json"),)
        encoded = json.dumps(body).encode()
        return Request("POST", f"{url}/v3/kv/put", encoded, headers, 1, (key,))

    # (1): sequential puts: the commit latency of one small write.
    seq = await load.run_load(
        (put(i) for i in itertools.count()),
        count=profile.latency_samples,
        concurrency=1,
        seconds=profile.latency_seconds,
        accept=_accept,
    )

    # (2): single puts, as many concurrent clients send single anchors.
    base = profile.latency_samples
    single = await load.run_load(
        (put(base + i) for i in itertools.count()),
        count=profile.single_max,
        concurrency=profile.single_concurrency,
        seconds=profile.single_seconds,
        accept=_accept,
    )

    # (3): batched puts, one txn per batch, as the batched anchors.
    batched = await load.run_load(
        (_txn(url, prefix, b, profile.batch_size, size) for b in itertools.count()),
        count=profile.batched_max_batches,
        concurrency=profile.batch_concurrency,
        seconds=profile.batched_seconds,
        accept=_accept,
    )

    # (4): every acknowledged key on every member.
    acked = [t for r in (*seq.acked, *single.acked, *batched.acked) for t in r.tags]
    await _check_everywhere(members, prefix, acked)
    say(f"etcd: all {len(acked):,} acknowledged keys found on all 3 members")

    load_note = (
        f"3 members on loopback, fsync per commit; {profile.single_concurrency} "
        f"concurrent clients, {size}-byte values"
    )
    return [
        Figure(
            name=SINGLE,
            value=single.items_per_s(),
            unit="puts/s",
            note=f"{load_note}; {single.error_summary()}",
        ),
        Figure(
            name=BATCHED,
            value=batched.items_per_s(),
            unit="puts/s",
            note=(
                f"txns of {profile.batch_size} puts, {profile.batch_concurrency} "
                f"concurrent clients; {batched.error_summary()}"
            ),
        ),
        Figure(
            name=LATENCY_P99,
            value=seq.latency_ms(0.99),
            unit="ms",
            higher_is_better=False,
            note=f"one put at a time; p50 {seq.latency_ms(0.5) or 0:.2f} ms",
        ),
    ]


def _txn(url: str, prefix: str, batch: int, count: int, size: int) -> Request:
    keys = [f"{prefix}b{batch:06d}-{i:05d}" for i in range(count)]
    ops = [
        {"requestPut": {"key": _b64(k.encode()), "value": _b64(os.urandom(size))}}
        for k in keys
    ]
    return Request(
        "POST",
        f"{url}/v3/kv/txn",
        json.dumps({"success": ops}).encode(),
        (("content-type", "application/json"),),
        count,
        tuple(keys),
    )


async def _check_everywhere(
    members: Sequence[Member],
    prefix: str,
    acked: Sequence[str],
) -> None:
    """Each acked key must be on each member (serializable, local reads)."""
    want = set(acked)
    for m in members:
        have = await _keys(m, prefix)
        lost = want - have
        if lost:
            raise LostWriteError(
                f"etcd member {m.name} lacks {len(lost)} of {len(want)} "
                f"acknowledged keys, e.g. {sorted(lost)[:3]}"
            )


async def _keys(m: Member, prefix: str) -> set[str]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    start = prefix
    out: set[str] = set()
    while True:
        body = {
            "key": _b64(start.encode()),
            "range_end": _b64(end.encode()),
            "keys_only": True,
            "serializable": True,
            "limit": PAGE,
        }
        page = await post_json(f"{m.client_url}/v3/kv/range", body)
        if not isinstance(page, dict):
            raise LostWriteError(f"etcd member {m.name}: bad range answer")
        kvs = page.get("kvs", [])
        for kv in kvs:
            out.add(base64.b64decode(kv["key"]).decode())
        if not page.get("more") or not kvs:
            return out
        start = base64.b64decode(kvs[-1]["key"]).decode() + "\x00"
