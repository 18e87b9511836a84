"""The web application each node serves: read API, submissions, verify page.

``create_app(node, ...)`` builds the FastAPI app around a running node.
Errors are ``application/problem+json`` everywhere (``api.problems``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_documents, routes_read, routes_write
from api.deps import NodeLike
from api.limits import RateLimiter
from api.metrics import Metrics, create_metrics
from api.problems import install_problem_handlers
from api.verify_page import STATIC_DIR, STATIC_PREFIX


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

    app = FastAPI(
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
    app.add_middleware(HttpMetrics, observe=app.state.metrics.observe_http)
    return app
