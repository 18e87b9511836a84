"""The web application each node serves: read API, submissions, verify page.

``create_app(node, ...)`` builds the FastAPI app around a running node.
Errors are ``application/problem+json`` everywhere (``api.problems``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Final

import httpx
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_documents, routes_read, routes_write
from api.deps import NodeLike
from api.limits import RateLimiter
from api.metrics import Metrics, create_metrics
from api.problems import ProblemError, install_problem_handlers
from api.verify_page import STATIC_DIR, STATIC_PREFIX
from ledger.store import LedgerStore


class HttpMetrics:
    """Counts every answered request by route template and status.

    A plain ASGI middleware: FastAPI's ``@app.middleware("http")`` wraps each
    request in extra tasks and streams, which costs more than the count.
    """

    def __init__(
        self, app: ASGIApp, *, observe: Callable[[str, str, int, float], None]
    ) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.observe(scope["method"], path, status, time.perf_counter() - started)


# The two busiest reads: a document's status, and its proof bundle.
HOT_PATH: Final = re.compile(r"/v1/documents/([0-9a-f]{64})(/bundle)?")
Answer = Callable[[LedgerStore, str], Response]


class HotReads:
    """Answers ``GET /v1/documents/{doc_id}`` and ``.../bundle`` without
    FastAPI's routing, parameter solving and worker thread, which cost more
    CPU than building the answer.

    The same functions the routes call build the same bytes, a
    ``ProblemError`` becomes what the app's handler makes of it, and
    ``scope["route"]`` is set as the router sets it, so the metrics label
    it alike. Anything else (a malformed path, another exception) goes on
    to the app, which answers it as before. The answer is built on the
    event loop: a few LevelDB reads and hashes, without waiting for a
    writer's disk flush (see ``LedgerStore._tip_snapshot``). Except a bundle
    whose final checkpoint's state is not at hand: building it first
    decodes the undo records of the blocks after that checkpoint (megabytes
    for large blocks), which must not hold up the node's Raft ticks and
    messages, so it goes to one worker thread of its own (one, so that
    bundle builders do not contend for the interpreter). A worker thread
    for every bundle would cost the loop more, through the interpreter
    lock, than the few hundred microseconds a bundle takes.
    """

    def __init__(self, app: ASGIApp, *, node: NodeLike) -> None:
        self.app = app
        self.node = node
        self.bundles = ThreadPoolExecutor(1, thread_name_prefix="bundles")
        status = _route(routes_documents.router.routes, routes_documents.document)
        bundle = _route(routes_documents.router.routes, routes_documents.bundle)
        self.routes: dict[bool, tuple[APIRoute, Answer]] = {
            False: (status, routes_documents.document_response),
            True: (bundle, routes_documents.bundle_response),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = HOT_PATH.fullmatch(scope["path"])
            if match is not None and not scope.get("root_path"):
                is_bundle = match[2] is not None
                route, answer = self.routes[is_bundle]
                response: Response | None
                try:
                    if is_bundle and not self._state_at_hand():
                        loop = asyncio.get_running_loop()
                        response = await loop.run_in_executor(
                            self.bundles, answer, self.node.store, match[1]
                        )
                    else:
                        response = answer(self.node.store, match[1])
                except ProblemError as exc:
                    response = exc.response()  # what the app's handler sends
                except Exception:
                    # The app answers it (and logs it) as it would have.
                    response = None
                if response is not None:
                    scope["route"] = route
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _state_at_hand(self) -> bool:
        store = self.node.store
        final = store.latest_final()
        return final is None or store.state_at_is_cheap(final[0].height)


class LedgerApp(FastAPI):
    """FastAPI behind ``front``: the request count and the hot reads come
    before FastAPI's own layers (error pages, telemetry, body limit), which
    cost a hot read more than its answer's LevelDB reads; everything else
    goes on to ``framework``, FastAPI as it is.
    """

    front: ASGIApp | None = None

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.front or self.framework)(scope, receive, send)


def _route(routes: Sequence[BaseRoute], endpoint: Callable[..., object]) -> APIRoute:
    """The route of ``endpoint``, as the router puts it in ``scope["route"]``."""
    for route in routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(f"no route for {endpoint.__name__}")


def create_app(
    node: NodeLike,
    *,
    public_url: str,
    metrics: Metrics | None = None,
    max_body_bytes: int = 16 * 1024 * 1024,
    rate_per_agency: float = 500.0,
    max_age_ms: int = 24 * 3600 * 1000,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=30.0) as client:
            app.state.http = client
            yield

    app = LedgerApp(
        title="Agency Ledger",
        version="1",
        summary="Documents anchored by government agencies, verifiable by anyone.",
        lifespan=lifespan,
    )
    app.state.node = node
    app.state.public_url = public_url.rstrip("/")
    app.state.metrics = metrics or create_metrics()
    app.state.max_body_bytes = max_body_bytes
    app.state.max_age_ms = max_age_ms
    app.state.limiter = RateLimiter(rate=rate_per_agency, burst=rate_per_agency * 2)
    install_problem_handlers(app)
    app.include_router(routes_read.router)
    app.include_router(routes_documents.router)
    app.include_router(routes_write.router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
    # Hot reads inside the count, so they are counted too.
    app.front = HttpMetrics(
        HotReads(app.framework, node=node), observe=app.state.metrics.observe_http
    )
    return app
