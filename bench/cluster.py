"""A real 3-node cluster on loopback, driven over HTTP.

``ledger cluster init`` makes the cluster in a temporary folder and three
``ledger node run`` processes serve it, exactly as an operator runs them,
except for one setting: the per-agency rate limit is lifted, since the
point is what the nodes can do, not what the default policy lets one
agency do.

Phases, in order (each bounded in count and in time by the profile):

1. commit latency: single anchors, one at a time, to the leader;
2. single submissions: one anchor each, many concurrent clients;
3. batched anchors: submissions of ``batch_size`` anchors, a few clients;
4. lookups: status and bundle reads of acknowledged documents, one node;
5. failover: writers keep submitting while the leader is SIGKILLed; the
   time until a write sent after the kill is acknowledged; the killed node
   is restarted and must catch up;
6. the check: every acknowledged anchor is, on every node, the leaf its
   receipt names; statuses are read back as well (``bench.submit``). A
   write acknowledged and then missing fails the run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import tomli_w

from bench import ceiling, http1, load
from bench.figures import Figure, Results, missing, ratio, say
from bench.http1 import Reply, TransportError
from bench.leaves import LeafMaker
from bench.ledgerstore import REPO, init_cluster
from bench.load import LoadResult, Request, wait_applied
from bench.procs import Children, dir_bytes, wait_http
from bench.profile import Profile
from bench.submit import Issuer, Ledger, check_documents, check_leaves, leader_url
from ledger.keys import SigningKey
from ledger.trust import TrustList

AGENCIES: Final = ("bench-a", "bench-b", "bench-c")
# The status route is also read for this many batched anchors per node
# (every one is checked by its leaf bytes regardless).
BATCHED_STATUS_SAMPLE: Final = 2_000
FAILOVER_WRITERS: Final = 16
FAILOVER_STEADY_S: Final = 2.0
FAILOVER_LIMIT_S: Final = 30.0

FIGURES: Final = (
    ("batched_anchors_per_s", "anchors/s", 50_000, True),
    ("single_submissions_per_s", "submissions/s", 5_000, True),
    ("commit_latency_p50_ms", "ms", None, False),
    ("commit_latency_p99_ms", "ms", 50, False),
    ("failover_seconds", "s", 1.5, False),
    ("lookups_per_s", "lookups/s", 5_000, True),
    ("lookup_p99_ms", "ms", 20, False),
    ("cluster_disk_bytes_per_document", "bytes", 300, False),
)


@dataclass(slots=True)
class Nodes:
    """The cluster's folder and its node processes (by agency)."""

    root: Path
    children: Children
    urls: dict[str, str] = field(default_factory=dict)

    def config(self, agency: str) -> Path:
        return self.root / agency / "node.toml"

    def start(self, agency: str) -> None:
        argv = [sys.executable, "-m", "cli.main", "node", "run"]
        argv += ["--config", str(self.config(agency)), "--log-level", "warning"]
        log = self.root / f"{agency}.log"
        self.children.start(agency, argv, log=log, cwd=REPO)

    def wait_serving(self, agency: str) -> None:
        try:
            wait_http(
                f"{self.urls[agency]}/healthz",
                timeout_s=120,
                alive=lambda: self.children.running(agency),
            )
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.children.tail(agency)}") from exc

    def agency_of(self, url: str) -> str:
        return next(a for a, u in self.urls.items() if u == url)


def not_run(why: str) -> list[Figure]:
    return [
        missing(name, unit, why, goal=goal, higher_is_better=higher)
        for name, unit, goal, higher in FIGURES
    ]


def run(profile: Profile, tmp: Path, ceilings: Results) -> list[Figure]:
    root = tmp / "cluster"
    init_cluster(root, list(AGENCIES))
    genesis = TrustList.load(root / "genesis.json")
    issuers = [
        Issuer(a, SigningKey.load(root / a / "issuer.key"), LeafMaker(issuer=a))
        for a in AGENCIES
    ]
    with Children() as children:
        nodes = Nodes(root, children)
        for agency in AGENCIES:
            _lift_rate_limit(nodes.config(agency))
            table = tomllib.loads(nodes.config(agency).read_text("utf-8"))
            nodes.urls[agency] = f"http://{table['api']['listen']}"
        for agency in AGENCIES:
            nodes.start(agency)
        for agency in AGENCIES:
            nodes.wait_serving(agency)
        ledger = Ledger(genesis.origin, issuers)
        out = asyncio.run(_measure(profile, nodes, ledger, ceilings))
    return out


def _lift_rate_limit(config: Path) -> None:
    table = tomllib.loads(config.read_text("utf-8"))
    table.setdefault("limits", {})["rate_per_agency"] = 1_000_000
    config.write_text(tomli_w.dumps(table), "utf-8")


async def _measure(
    profile: Profile, nodes: Nodes, ledger: Ledger, ceilings: Results
) -> list[Figure]:
    urls = list(nodes.urls.values())
    leader = await leader_url(urls, timeout_s=60)

    # (1): one anchor at a time.
    say(f"cluster: leader {leader}; commit latency")
    seq = await load.run_load(
        ledger.requests(leader, 1),
        count=profile.latency_samples,
        concurrency=1,
        seconds=profile.latency_seconds,
        accept=ledger.accept,
    )
    single_ids = [t for r in seq.acked for t in r.tags]

    # (2): many clients, one anchor each.
    say("cluster: single submissions")
    single = await load.run_load(
        ledger.requests(leader, 1),
        count=profile.single_max,
        concurrency=profile.single_concurrency,
        seconds=profile.single_seconds,
        accept=ledger.accept,
    )
    single_ids += [t for r in single.acked for t in r.tags]

    # (3): batches.
    say("cluster: batched submissions")
    batched = await load.run_load(
        ledger.requests(leader, profile.batch_size),
        count=profile.batched_max_batches,
        concurrency=profile.batch_concurrency,
        seconds=profile.batched_seconds,
        accept=ledger.accept,
    )
    batched_ids = [t for r in batched.acked for t in r.tags]

    # (4): reads on one follower (reads scale out by followers), once it
    # has applied every acknowledged block: an acknowledgement means applied
    # on the leader, and a follower a block behind answers 404 for now.
    say("cluster: lookups")
    await wait_applied(urls, timeout_s=120)
    follower = next(u for u in urls if u != leader)
    lookups = await _lookups(profile, follower, single_ids + batched_ids)

    # (5): failover, then the killed node back.
    say("cluster: failover")
    failovers: list[float] = []
    failover_error = None
    for _ in range(profile.failover_rounds):
        try:
            failovers.append(await _failover(nodes, ledger))
        except RuntimeError as exc:  # the other figures still stand
            failover_error = str(exc)
            say(f"cluster: failover failed: {exc}")
            break

    # (6): everything acknowledged is everywhere.
    say("cluster: checking every acknowledged anchor on every node")
    await wait_applied(urls, timeout_s=120)
    await check_leaves(urls, ledger)
    read_single = await check_documents(
        urls,
        single_ids,
        concurrency=profile.lookup_concurrency,
        limit=profile.verify_max,
    )
    read_batched = await check_documents(
        urls,
        batched_ids,
        concurrency=profile.lookup_concurrency,
        limit=BATCHED_STATUS_SAMPLE,
    )
    size = await load.tree_size(leader)
    checked = (
        f"all {len(ledger.acked):,} acknowledged anchors found on all 3 nodes "
        f"(leaf bytes; status read for {read_single:,} single and "
        f"{read_batched:,} batched)"
    )
    say(f"cluster: {checked}")
    disk = dir_bytes(nodes.root / nodes.agency_of(leader) / "data")
    out = _figures(profile, ceilings, seq, single, batched, lookups, disk, size)
    out.insert(4, _failover_figure(failovers, failover_error))
    return out


def _figures(
    profile: Profile,
    ceilings: Results,
    seq: LoadResult,
    single: LoadResult,
    batched: LoadResult,
    lookups: LoadResult,
    disk: int,
    size: int,
) -> list[Figure]:
    verify = ceilings.value(ceiling.VERIFY)
    fsync = ceilings.value(ceiling.FSYNC)
    p50 = seq.latency_ms(0.5)
    return [
        Figure(
            name="batched_anchors_per_s",
            value=batched.items_per_s(),
            unit="anchors/s",
            goal=50_000,
            ceiling_ratio=ratio(batched.items_per_s(), _ceiling_leveldb(ceilings)),
            note=(
                f"{batched.acked_items:,} anchors in submissions of "
                f"{profile.batch_size:,}, {profile.batch_concurrency} clients, "
                f"acknowledged once applied; {batched.error_summary()}"
            ),
        ),
        Figure(
            name="single_submissions_per_s",
            value=single.items_per_s(),
            unit="submissions/s",
            goal=5_000,
            ceiling_ratio=ratio(single.items_per_s(), verify),
            note=(
                f"{len(single.acked):,} one-anchor submissions, "
                f"{profile.single_concurrency} concurrent clients to the leader "
                f"(p99 {single.latency_ms(0.99) or 0:.0f} ms); ceiling: one "
                f"signature check each; {single.error_summary()}"
            ),
        ),
        Figure(
            name="commit_latency_p50_ms",
            value=p50,
            unit="ms",
            higher_is_better=False,
            # A share, as for the rates: the ceiling's time over ours.
            ceiling_ratio=ratio(1000 / fsync if fsync else None, p50),
            note=(
                f"{len(seq.acked):,} single anchors sent one at a time; "
                "ceiling: one fsync"
            ),
        ),
        Figure(
            name="commit_latency_p99_ms",
            value=seq.latency_ms(0.99),
            unit="ms",
            goal=50,
            higher_is_better=False,
            note=f"as commit_latency_p50_ms; {seq.error_summary()}",
        ),
        Figure(
            name="lookups_per_s",
            value=lookups.items_per_s(),
            unit="lookups/s",
            goal=5_000,
            # Each lookup reads at least the document's status from LevelDB.
            ceiling_ratio=ratio(
                lookups.items_per_s(), ceilings.value(ceiling.LEVELDB_GETS)
            ),
            note=(
                f"GET /v1/documents/ID and /bundle alternately on one follower, "
                f"{profile.lookup_concurrency} clients; ceiling: one LevelDB "
                f"read per lookup; {lookups.error_summary()}"
            ),
        ),
        Figure(
            name="lookup_p99_ms",
            value=lookups.latency_ms(0.99),
            unit="ms",
            goal=20,
            higher_is_better=False,
            note=f"p50 {lookups.latency_ms(0.5) or 0:.1f} ms, same reads",
        ),
        Figure(
            name="cluster_disk_bytes_per_document",
            value=disk / size if size else None,
            unit="bytes",
            goal=300,
            higher_is_better=False,
            note=(
                f"the leader's whole data folder (ledger and Raft log, not "
                f"compacted) over {size:,} entries after the run"
            ),
        ),
    ]


def _ceiling_leveldb(ceilings: Results) -> float | None:
    return ceilings.value(ceiling.LEVELDB)


def _failover_figure(failovers: list[float], error: str | None) -> Figure:
    if error is not None or not failovers:
        why = error or "no failover round ran"
        return missing("failover_seconds", "s", why, goal=1.5, higher_is_better=False)
    rounds = ", ".join(f"{f:.2f}" for f in failovers)
    return Figure(
        name="failover_seconds",
        value=max(failovers),
        unit="s",
        goal=1.5,
        higher_is_better=False,
        note=(
            f"worst of {len(failovers)} (s: {rounds}): leader SIGKILLed under "
            f"{FAILOVER_WRITERS} writers, until a write sent after the kill "
            "is acknowledged"
        ),
    )


async def _lookups(profile: Profile, url: str, doc_ids: list[str]) -> LoadResult:
    rng = random.Random(13)

    def reads() -> Iterator[Request]:
        for n in itertools.count():
            doc = rng.choice(doc_ids)
            suffix = "/bundle" if n % 2 else ""
            yield Request("GET", f"{url}/v1/documents/{doc}{suffix}")

    def accept(req: Request, reply: Reply) -> str | None:
        if reply.status_code == 200:
            return None
        return f"{req.url}: {reply.status_code} {reply.text[:120]}"

    return await load.run_load(
        reads(),
        count=10**9,
        concurrency=profile.lookup_concurrency,
        seconds=profile.lookup_seconds,
        accept=accept,
    )


async def _failover(nodes: Nodes, ledger: Ledger) -> float:
    """Seconds from SIGKILL of the leader until a write sent after it is
    acknowledged; then the killed node is restarted."""
    urls = list(nodes.urls.values())
    # Every node caught up first (a node restarted by the previous round
    # may still be behind), so each round starts from the same place.
    await wait_applied(urls, timeout_s=120)
    leader = await leader_url(urls, timeout_s=60)
    victim = nodes.agency_of(leader)
    acks: list[tuple[float, float]] = []  # (sent, acknowledged)
    stop = asyncio.Event()

    async def writer(i: int) -> None:
        session = http1.new_session(load.CLIENT[0])
        target = i % len(urls)
        try:
            while not stop.is_set():
                req = ledger.submission(urls[target], 1)
                sent = time.perf_counter()
                try:
                    reply: Reply | None = await session.request(
                        req.method, req.url, req.body, dict(req.headers)
                    )
                except TransportError:
                    reply = None
                if reply is not None and ledger.accept(req, reply) is None:
                    acks.append((sent, time.perf_counter()))
                    continue
                # Unreachable, no leader, or forwarded to a dead one: the
                # next node after a short pause, as a client library would.
                target = (target + 1) % len(urls)
                await asyncio.sleep(0.01)
        finally:
            await session.close()

    tasks = [asyncio.create_task(writer(i)) for i in range(FAILOVER_WRITERS)]
    killed: float | None = None
    try:
        await asyncio.sleep(FAILOVER_STEADY_S)
        killed = time.perf_counter()
        nodes.children.kill(victim)
        while not any(s >= killed for s, _ in acks):
            if time.perf_counter() - killed > FAILOVER_LIMIT_S:
                raise RuntimeError(
                    f"no write acknowledged {FAILOVER_LIMIT_S:.0f} s after the kill"
                )
            await asyncio.sleep(0.005)
        recovered = min(done for sent, done in acks if sent >= killed)
        await asyncio.sleep(0.5)  # a little steady state on the new leader
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        if killed is not None:
            # Back in any case: the check afterwards reads every node.
            nodes.start(victim)
            nodes.wait_serving(victim)
    return recovered - killed
