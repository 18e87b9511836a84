"""A bounded HTTP load generator that keeps the receipts it was given.

Theory of operation. ``concurrency`` workers, each with its own HTTP session
(``bench.http1``; one kept-alive connection per host), take requests one at
a time from a shared iterator and send them. Requests are made lazily, when
a worker takes one, so a time-bounded run signs only what it sends. A
worker stops when ``count`` requests have been taken or the deadline has
passed, so every run is bounded both in count and in time; a request already
in flight finishes (each is bounded by the session timeout).

A request counts only when ``accept`` says its answer acknowledges it, and
every acknowledged request is kept, so the caller can check afterwards that
what the server acknowledged is really there (``verify_documents``,
``bench.submit.check_leaves``). A throughput of acknowledged writes that
later turn out missing would be worthless, so a missing one raises
``LostWriteError`` and fails the run.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from bench import http1
from bench.figures import percentile
from bench.http1 import Reply, TransportError

# Errors kept verbatim for the report; the rest are only counted.
KEEP_ERRORS: Final = 5
# Which HTTP client the timed load uses (``--client``).
CLIENT = ["raw"]


class LostWriteError(Exception):
    """Something the server acknowledged is not where it must be."""


@dataclass(frozen=True, slots=True)
class Request:
    """One prepared request; ``items`` is how many writes it carries and
    ``tags`` what to look for afterwards (document ids, keys)."""

    method: str
    url: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    items: int = 1
    tags: tuple[str, ...] = ()


# Returns None when the answer acknowledges the request, else why not.
Accept = Callable[[Request, Reply], str | None]


@dataclass(slots=True)
class LoadResult:
    """What a run did; ``elapsed_s`` runs from the first send to the last
    acknowledgement."""

    elapsed_s: float = 0.0
    sent: int = 0
    acked: list[Request] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # acked only
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def acked_items(self) -> int:
        return sum(r.items for r in self.acked)

    def items_per_s(self) -> float:
        return self.acked_items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        return 1000 * percentile(self.latencies_s, q)

    def error_summary(self) -> str:
        if not self.errors:
            return "no errors"
        counts = ", ".join(f"{k}: {v}" for k, v in self.errors.most_common(4))
        first = self.samples[0][:160] if self.samples else ""
        return f"{sum(self.errors.values())} errors ({counts}); first: {first}"


async def run_load(
    requests: Iterable[Request],
    *,
    count: int,
    concurrency: int,
    seconds: float,
    accept: Accept,
) -> LoadResult:
    """Send up to ``count`` of ``requests`` with ``concurrency`` workers for
    at most ``seconds``."""
    source = iter(requests)
    result = LoadResult()
    start = time.perf_counter()
    deadline = start + seconds
    last = [start]

    async def worker() -> None:
        session = http1.new_session(CLIENT[0])
        try:
            while result.sent < count and time.perf_counter() < deadline:
                req = next(source, None)
                if req is None:
                    return
                result.sent += 1
                sent_at = time.perf_counter()
                try:
                    reply = await session.request(
                        req.method, req.url, req.body, dict(req.headers)
                    )
                except TransportError as exc:
                    _record_error(result, "no answer", f"{req.url}: {exc}")
                    continue
                done = time.perf_counter()
                why = accept(req, reply)
                if why is not None:
                    _record_error(result, f"http {reply.status_code}", why)
                    continue
                result.acked.append(req)
                result.latencies_s.append(done - sent_at)
                last[0] = max(last[0], done)
        finally:
            await session.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = last[0] - start
    return result


def _record_error(result: LoadResult, kind: str, detail: str) -> None:
    result.errors[kind] += 1
    if len(result.samples) < KEEP_ERRORS:
        result.samples.append(detail[:300])


async def verify_documents(
    node_urls: Sequence[str], doc_ids: Sequence[str], *, concurrency: int
) -> None:
    """Check every given document on every node; ``LostWriteError`` if not.

    ``GET /v1/documents/{doc_id}`` on each node must answer 200 naming the
    same doc_id. Reads are not retried: an acknowledgement means applied on
    a quorum, and the caller waits (``wait_applied``) for the last node to
    catch up before checking.
    """
    pairs = [(url, d) for url in node_urls for d in doc_ids]
    requests = (
        Request("GET", f"{url}/v1/documents/{d}", tags=(url, d)) for url, d in pairs
    )

    def found(req: Request, reply: Reply) -> str | None:
        if reply.status_code != 200:
            return f"{req.tags[0]} {req.tags[1]}: {reply.status_code}"
        try:
            body = reply.json()
        except ValueError:
            return f"{req.tags[0]} {req.tags[1]}: not JSON"
        if not isinstance(body, dict) or body.get("doc_id") != req.tags[1]:
            return f"{req.tags[0]} {req.tags[1]}: another document answered"
        return None

    result = await run_load(
        requests,
        count=len(pairs),
        concurrency=concurrency,
        seconds=3600.0,
        accept=found,
    )
    if len(result.acked) != len(pairs):
        raise LostWriteError(
            f"{len(pairs) - len(result.acked)} of {len(pairs)} document reads "
            f"failed ({result.error_summary()}); first: "
            f"{'; '.join(result.samples)}"
        )


async def get_json(url: str) -> object:
    """One GET on a fresh connection (setup and polling, not timed)."""
    session = http1.new_session("raw")
    try:
        reply = await session.request("GET", url, None, {})
    finally:
        await session.close()
    if reply.status_code != 200:
        raise TransportError(f"GET {url}: {reply.status_code} {reply.text[:200]}")
    return reply.json()


async def tree_size(url: str) -> int:
    info = await get_json(f"{url}/v1/cluster")
    if not isinstance(info, dict):
        raise TransportError(f"{url}/v1/cluster is not an object")
    return int(info["tree_size"])


async def wait_applied(node_urls: Sequence[str], *, timeout_s: float) -> None:
    """Wait until every node has applied what the most advanced one has.

    An acknowledgement means applied on a quorum; the last node may lag a
    little, which is not a loss. ``LostWriteError`` if it never catches up.
    """
    deadline = time.monotonic() + timeout_s
    for attempt in itertools.count():
        sizes = []
        for url in node_urls:
            try:
                sizes.append(await tree_size(url))
            except (TransportError, ValueError, KeyError, TypeError):
                sizes.append(-1)
        if min(sizes) >= 0 and min(sizes) == max(sizes):
            return
        if time.monotonic() > deadline:
            raise LostWriteError(
                f"nodes never converged after {attempt} polls: tree sizes {sizes}"
            )
        await asyncio.sleep(0.2)


async def post_json(url: str, body: object) -> object:
    """One POST of a JSON body on a fresh connection (setup, not timed)."""
    session = http1.new_session("raw")
    payload = json.dumps(body).encode()
    try:
        reply = await session.request(
            "POST", url, payload, {"content-type": "application/json"}
        )
    finally:
        await session.close()
    if reply.status_code != 200:
        raise TransportError(f"POST {url}: {reply.status_code} {reply.text[:200]}")
    return reply.json()
