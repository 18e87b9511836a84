"""The web application each node serves: read API, submissions, verify page.

``create_app(node, ...)`` builds the FastAPI app around a running node.
Errors are ``application/problem+json`` everywhere (``api.problems``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Final, Literal

import httpx
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_documents, routes_read, routes_write
from api.deps import NodeLike
from api.limits import BodyBudget, RateLimiter
from api.metrics import Metrics, create_metrics
from api.problems import ProblemError, install_problem_handlers, problem_for
from api.qr import QrRenderer
from api.verify_page import STATIC_DIR, STATIC_PREFIX, VersionedStaticFiles
from ledger.bundle_binary import BundleFormat
from ledger.store import LedgerStore

logger = logging.getLogger(__name__)

# The status a request is counted under when its client hung up before any
# answer began (mid-body, say): nginx's "client closed request". HTTP defines
# no code for it because nobody receives one; it keeps such requests out of
# the 5xx, which mean the server failed, and out of the 4xx a client was sent.
CLIENT_CLOSED_REQUEST: Final = 499


class HttpMetrics:
    """Counts every request by route template and status: the status
    answered, 499 (``CLIENT_CLOSED_REQUEST``) if the client hung up before
    an answer began, else 500 (the app failed without one).

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
        status: int | None = None
        hung_up = False

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def watch_disconnect() -> Message:
            nonlocal hung_up
            message = await receive()
            # Only before an answer began: the server also says "disconnect"
            # to a receive after the answer is complete.
            if message["type"] == "http.disconnect" and status is None:
                hung_up = True
            return message

        try:
            await self.app(scope, watch_disconnect, send_status)
        finally:
            code = 500 if status is None else status
            if hung_up:
                # Whatever the app made of the hang-up, nobody received it.
                code = CLIENT_CLOSED_REQUEST
            path = getattr(scope.get("route"), "path", "unmatched")
            self.observe(scope["method"], path, code, time.perf_counter() - started)


HEAD_DROPS: Final = frozenset({"http.response.body", "http.response.pathsend"})


class HeadAsGet:
    """Answers ``HEAD`` wherever the app answers ``GET``: the same status and
    headers (``content-length`` included), no body (RFC 9110 section 9.3.2).

    FastAPI routes take only the methods they declare, so HEAD was a 405 on
    every route but ``/healthz`` and ``/static``; declaring HEAD on each
    would also add a HEAD operation of each to the OpenAPI document. The app
    sees ``GET`` in a copy of the scope (the server reads the method from its
    own, to leave the body out), so the hot reads serve HEAD too, and the
    route it matched is copied back for the metrics, which count it as HEAD.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = dict(scope, method="GET")

        async def headers_only(message: Message) -> None:
            # A body, or a file to send (the pathsend extension, which a
            # FileResponse uses where the server offers it): none for HEAD.
            if message["type"] in HEAD_DROPS:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]


# The two busiest reads: a document's status, and its proof bundle.
HOT_PATH: Final = re.compile(r"/v1/documents/([0-9a-f]{64})(/bundle)?")
# The bundle queries the hot reads take, and the form each asks for; any
# other query (``format=xml``, ``format`` twice) goes on to the app, which
# validates it as the route declares.
HOT_BUNDLE_QUERIES: Final[dict[bytes, BundleFormat]] = {
    b"": BundleFormat.JSON,
    b"format=json": BundleFormat.JSON,
    b"format=binary": BundleFormat.BINARY,
}
# How many bodies at the size limit a node holds at once (api.limits.BodyBudget).
BODY_BUDGET_BODIES: Final = 4
Answer = Callable[[LedgerStore, str], Response]


class HotReads:
    """Answers ``GET /v1/documents/{doc_id}`` and ``.../bundle`` (in either
    form, ``HOT_BUNDLE_QUERIES``) without FastAPI's routing, parameter
    solving and worker thread, which cost more CPU than building the answer.

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
        self.status = _route(routes_documents.router.routes, routes_documents.document)
        self.bundle = _route(routes_documents.router.routes, routes_documents.bundle)
        self.bundle_answers: dict[BundleFormat, Answer] = {
            form: partial(routes_documents.bundle_response, form=form)
            for form in BundleFormat
        }

    def _hot(self, scope: Scope) -> tuple[APIRoute, Answer, str, bool] | None:
        """The route, its answer, the doc id and whether it is a bundle, for
        a request taken here; None for one left to the app."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        match = HOT_PATH.fullmatch(scope["path"])
        if match is None or scope.get("root_path"):
            return None
        if match[2] is None:
            # The status route declares no query: FastAPI ignores any.
            return self.status, routes_documents.document_response, match[1], False
        form = HOT_BUNDLE_QUERIES.get(scope.get("query_string", b""))
        if form is None:
            return None
        return self.bundle, self.bundle_answers[form], match[1], True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self._hot(scope)
        if hot is not None:
            route, answer, doc_id, is_bundle = hot
            response: Response | None
            try:
                if is_bundle and not self._state_at_hand():
                    loop = asyncio.get_running_loop()
                    response = await loop.run_in_executor(
                        self.bundles, answer, self.node.store, doc_id
                    )
                else:
                    response = answer(self.node.store, doc_id)
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


# The busiest write, and the queries it takes in front of FastAPI: none, or
# one ``wait`` of the two values the route declares.
SUBMISSIONS_PATH: Final = "/v1/submissions"
HOT_WAITS: Final[dict[bytes, Literal["applied", "final"]]] = {
    b"": "applied",
    b"wait=applied": "applied",
    b"wait=final": "final",
}


class HotSubmissions:
    """Takes ``POST /v1/submissions`` without FastAPI's routing, parameter
    solving and middleware layers, which cost a leader under many
    single-document submissions about a quarter of its event loop.

    The route's own function answers, from the same ``Request`` (with
    ``scope["app"]`` set as Starlette sets it); whatever it raises becomes
    what the app's handlers make of it (``api.problems.problem_for``), and
    ``scope["route"]`` is set as the router sets it, for the metrics. A
    request with any other query (``wait=soon``, ``wait`` twice) goes on to
    the app, which validates it as before: nothing is read of a request's
    body before it is taken here.
    """

    def __init__(self, app: ASGIApp, *, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner
        self.route = _route(routes_write.router.routes, routes_write.submit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == SUBMISSIONS_PATH
            and not scope.get("root_path")
        ):
            wait = HOT_WAITS.get(scope.get("query_string", b""))
            if wait is not None:
                await self._take(scope, receive, send, wait)
                return
        await self.app(scope, receive, send)

    async def _take(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        wait: Literal["applied", "final"],
    ) -> None:
        scope["app"] = self.owner
        scope["route"] = self.route
        response: Response
        try:
            response = await routes_write.submit(Request(scope, receive), wait)
        except ClientDisconnect:
            # As api.problems.CatchAllMiddleware: nobody to answer.
            logger.debug("client disconnected method=POST path=%s", scope["path"])
            return
        except Exception as exc:
            response = problem_for(exc, scope["method"], scope["path"])
        await response(scope, receive, send)


class LedgerApp(FastAPI):
    """FastAPI behind ``front``: the request count, HEAD, the hot reads and
    the submissions come before FastAPI's own layers (error pages,
    telemetry, body limit), which cost a hot read more than its answer's
    LevelDB reads; everything else goes on to ``framework``, FastAPI as it
    is.
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
        # A redirect to the path without its trailing slash is built from the
        # Host header, so anyone could make a node redirect to their site;
        # such a path is a plain 404 problem instead.
        redirect_slashes=False,
    )
    app.state.node = node
    app.state.public_url = public_url.rstrip("/")
    app.state.metrics = metrics or create_metrics()
    app.state.max_body_bytes = max_body_bytes
    # Four bodies at the size limit in flight at once (or many small ones).
    app.state.body_budget = BodyBudget(BODY_BUDGET_BODIES * max_body_bytes)
    app.state.max_age_ms = max_age_ms
    app.state.limiter = RateLimiter(rate=rate_per_agency, burst=rate_per_agency * 2)
    app.state.qr = QrRenderer()
    install_problem_handlers(app)
    app.include_router(routes_read.router)
    app.include_router(routes_documents.router)
    app.include_router(routes_write.router)
    # Versioned URLs kept for a year, anything else revalidated.
    static = VersionedStaticFiles(directory=STATIC_DIR)
    app.mount(STATIC_PREFIX, static, name="static")
    # Hot reads inside the count, so they are counted too; HEAD before them,
    # so that they answer it.
    app.front = HttpMetrics(
        HeadAsGet(HotReads(HotSubmissions(app.framework, owner=app), node=node)),
        observe=app.state.metrics.observe_http,
    )
    return app
