"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers is a JSON object with ``type``, ``title``,
``status``, usually ``detail``, and sometimes extension members (``reason``,
``entry``, ``leader``, ``errors``...). Clients branch on ``type``, never on
``title`` or ``detail``, which are for people and may change.

Type URIs are absolute: ``https://agency-ledger.example/problems/<slug>``
(``PROBLEM_BASE`` + slug). Absolute rather than relative because a relative
reference resolves against whichever node answered, so the same problem would
get a different identifier from each agency's node. The ``.example`` host is
reserved (RFC 2606) and never resolves: the URIs are identifiers, not pages.
Errors that have no type of their own (an HTTP error raised by a framework
with a status we do not register) use ``about:blank`` with the status phrase
as title, as RFC 9457 §4.2.1 prescribes.

``install_problem_handlers(app)`` makes every error problem+json: a raised
``ProblemError``, the ledger's own errors, Starlette's 404 (unknown route) and
405, FastAPI's request validation errors (422) and, through a small ASGI
middleware, any unexpected exception (500: logged here with an id that the
answer repeats in ``instance``; the traceback never leaves the server). A
client that hangs up mid-request (``ClientDisconnect``) is no error: it gets
no answer and one debug line.
"""

from __future__ import annotations

import http
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import (
    CommitTimeoutError,
    ConsensusError,
    EncodingError,
    LedgerError,
    NotLeaderError,
    RuleViolation,
)

logger = logging.getLogger(__name__)

PROBLEM_BASE: Final = "https://agency-ledger.example/problems/"
MEDIA_TYPE: Final = "application/problem+json"
ABOUT_BLANK: Final = "about:blank"
# The members RFC 9457 defines; extension members may not reuse them.
STANDARD_MEMBERS: Final = frozenset({"type", "title", "status", "detail", "instance"})


@dataclass(frozen=True, kw_only=True)
class ProblemType:
    """One stable problem type: its slug, HTTP status and title."""

    slug: str
    status: int
    title: str
    # When a client sees it; for the API reference, not sent on the wire.
    description: str

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug


def _types(*items: tuple[str, int, str, str]) -> dict[str, ProblemType]:
    return {
        slug: ProblemType(slug=slug, status=status, title=title, description=desc)
        for slug, status, title, desc in items
    }


PROBLEM_TYPES: Final[Mapping[str, ProblemType]] = _types(
    ("bad-request", 400, "Bad request", "The request cannot be understood."),
    (
        "invalid-hex",
        400,
        "Invalid hex",
        "A hash or id is not lowercase hex of the right length; `parameter` names it.",
    ),
    (
        "invalid-range",
        400,
        "Invalid range",
        "Pagination or proof bounds out of range (start > end, end > size...).",
    ),
    (
        "malformed",
        400,
        "Malformed data",
        "Bytes are not the canonical encoding (ledger.codec refused them).",
    ),
    (
        "bad-signature",
        403,
        "Bad signature",
        "The submission's signature does not verify under the agency's issuer keys.",
    ),
    ("not-found", 404, "Not found", "No such route or resource."),
    (
        "document-not-found",
        404,
        "Document not found",
        "No document with this id is on the ledger.",
    ),
    ("block-not-found", 404, "Block not found", "No block at this height."),
    (
        "method-not-allowed",
        405,
        "Method not allowed",
        "The route exists but not for this method; see the Allow header.",
    ),
    (
        "replay",
        409,
        "Replayed submission",
        "The nonce was seen before or the timestamp is outside the window.",
    ),
    (
        "payload-too-large",
        413,
        "Payload too large",
        "The request body is larger than the node accepts.",
    ),
    (
        "too-many-entries",
        413,
        "Too many entries",
        "A submission holds more than 10,000 entries; split it.",
    ),
    (
        "unsupported-media-type",
        415,
        "Unsupported media type",
        "The body's Content-Type is not one this route takes.",
    ),
    (
        "validation-error",
        422,
        "Request validation failed",
        "Parameters or body do not match the schema; `errors` lists each problem.",
    ),
    (
        "invalid-submission",
        422,
        "Submission breaks a ledger rule",
        "`reason` is the rule's reason code, `entry` the offending entry's index.",
    ),
    ("rate-limited", 429, "Too many requests", "Slow down; see Retry-After."),
    (
        "internal-error",
        500,
        "Internal server error",
        "A bug; `instance` names the log line.",
    ),
    (
        "not-leader",
        503,
        "Not the leader",
        "This node cannot take writes now; `leader` names the leader if known.",
    ),
    (
        "unavailable",
        503,
        "Service unavailable",
        "No quorum or the node is not ready; retry later.",
    ),
    (
        "timeout",
        504,
        "Timed out",
        "The operation did not complete in time; a submission may still commit.",
    ),
)

# Statuses a framework raises as HTTPException that have a type of our own.
_STATUS_SLUGS: Final[Mapping[int, str]] = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    503: "unavailable",
    504: "timeout",
}

# Rule reason codes that have a problem type of their own; every other rule
# violation is "invalid-submission" with the code in `reason`.
_RULE_SLUGS: Final[Mapping[str, str]] = {
    "bad_signature": "bad-signature",
    "replay": "replay",
    "timestamp_window": "replay",
    "too_many_entries": "too-many-entries",
    "malformed": "malformed",
}


class ProblemError(Exception):
    """An error the API answers as one registered problem type.

    ``slug`` must be a key of ``PROBLEM_TYPES`` (``ValueError`` otherwise);
    the status and title come from the registry. ``extra`` holds extension
    members and may not reuse a standard member name. ``headers`` are sent
    with the answer (``Retry-After``, ``Allow``...).
    """

    def __init__(
        self,
        slug: str,
        detail: str | None = None,
        *,
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            ptype = PROBLEM_TYPES[slug]
        except KeyError:
            raise ValueError(f"unknown problem type {slug!r}") from None
        clash = STANDARD_MEMBERS.intersection(extra or {})
        if clash:
            raise ValueError(f"extension members reuse standard names: {clash}")
        super().__init__(detail or ptype.title)
        self.slug = slug
        self.type = ptype.uri
        self.status = ptype.status
        self.title = ptype.title
        self.detail = detail
        self.extra: dict[str, object] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, object]:
        return _body(self.type, self.title, self.status, self.detail, self.extra)

    def response(self) -> JSONResponse:
        return problem_response(self.to_dict(), headers=self.headers)


def _body(
    type_: str,
    title: str,
    status: int,
    detail: str | None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    body: dict[str, object] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra or {})
    return body


def problem_response(
    body: Mapping[str, object], *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An ``application/problem+json`` answer; ``body['status']`` is the code."""
    status = body["status"]
    assert isinstance(status, int)
    return JSONResponse(
        dict(body), status_code=status, headers=headers, media_type=MEDIA_TYPE
    )


def from_ledger_error(exc: LedgerError) -> ProblemError | None:
    """The problem a ledger error means to a client, or None for a server bug.

    Storage, corruption and verification errors that escape a handler are the
    node's fault, not the client's, so they are left to the 500 path.
    """
    if isinstance(exc, RuleViolation):
        extra: dict[str, object] = {"reason": exc.code}
        if exc.entry is not None:
            extra["entry"] = exc.entry
        slug = _RULE_SLUGS.get(exc.code, "invalid-submission")
        return ProblemError(slug, exc.message, extra=extra)
    if isinstance(exc, NotLeaderError):
        leader = {} if exc.leader is None else {"leader": exc.leader}
        return ProblemError("not-leader", str(exc), extra=leader)
    if isinstance(exc, CommitTimeoutError):
        return ProblemError("timeout", str(exc))
    if isinstance(exc, ConsensusError):
        return ProblemError("unavailable", str(exc))
    if isinstance(exc, EncodingError):
        return ProblemError("malformed", str(exc))
    return None


def internal_error_response(
    request_method: str, path: str, exc: BaseException
) -> JSONResponse:
    """Log ``exc`` with a fresh id and answer a 500 that carries only the id."""
    instance = f"urn:uuid:{uuid.uuid4()}"
    logger.error(
        "unhandled error instance=%s method=%s path=%s",
        instance,
        request_method,
        path,
        exc_info=exc,
    )
    ptype = PROBLEM_TYPES["internal-error"]
    body = _body(ptype.uri, ptype.title, ptype.status, "An unexpected error occurred.")
    body["instance"] = instance
    return problem_response(body)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return exc.response()


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = _phrase(status)
    # Starlette fills an empty detail with the status phrase; saying it twice
    # (as title and detail) tells the client nothing.
    detail = (
        exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    )
    slug = _STATUS_SLUGS.get(status)
    if slug is None:
        body = _body(ABOUT_BLANK, phrase, status, detail)
    else:
        ptype = PROBLEM_TYPES[slug]
        body = _body(ptype.uri, ptype.title, status, detail)
    return problem_response(body, headers=exc.headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and error type: the offending `input` could echo
    # a large or private body back, and `ctx` may hold non-JSON objects.
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    count = len(errors)
    detail = f"the request has {count} invalid field{'s' if count != 1 else ''}"
    return ProblemError("validation-error", detail, extra={"errors": errors}).response()


def problem_for(exc: Exception, method: str, path: str) -> JSONResponse:
    """What the app's handlers answer for ``exc``, raised by a route: for a
    route answered in front of them (``api.app.HotSubmissions``)."""
    if isinstance(exc, ProblemError):
        return exc.response()
    if isinstance(exc, LedgerError):
        problem = from_ledger_error(exc)
        if problem is not None:
            return problem.response()
    elif isinstance(exc, TimeoutError):
        return ProblemError(
            "timeout", "the operation did not complete in time"
        ).response()
    return internal_error_response(method, path, exc)


async def _on_ledger(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerError)
    return problem_for(exc, request.method, request.url.path)


async def _on_timeout(request: Request, exc: Exception) -> JSONResponse:
    return problem_for(exc, request.method, request.url.path)


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Reached only for errors raised outside CatchAllMiddleware (a middleware
    # added after install_problem_handlers); Starlette re-raises afterwards.
    return internal_error_response(request.method, request.url.path, exc)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class CatchAllMiddleware:
    """Answers any exception the exception handlers left as problem+json 500.

    Starlette's own last-resort handler re-raises after answering, so every
    bug would be logged twice (here and by the server) and TestClient would
    raise; catching it one layer further in answers once and logs once. If
    the response had already started there is nothing left to send: re-raise.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except ClientDisconnect:
            # The client hung up before its request was read in full: there
            # is nobody to answer and nothing went wrong here. The metrics
            # count it as 499 (api.app.HttpMetrics).
            logger.debug(
                "client disconnected method=%s path=%s answered=%s",
                scope["method"],
                scope["path"],
                started,
            )
        except Exception as exc:
            if started:
                raise
            response = internal_error_response(scope["method"], scope["path"], exc)
            await response(scope, receive, send)


Handler = Callable[[Request, Exception], Any]


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error ``app`` answers ``application/problem+json``.

    Call once, before the app starts (it adds a middleware). Also documents
    the problem responses in the app's OpenAPI schema.
    """
    handlers: dict[type[Exception], Handler] = {
        ProblemError: _on_problem,
        StarletteHTTPException: _on_http,
        RequestValidationError: _on_validation,
        LedgerError: _on_ledger,
        TimeoutError: _on_timeout,
        Exception: _on_unhandled,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
    app.add_middleware(CatchAllMiddleware)
    _document_problems(app)


PROBLEM_SCHEMA: Final[Mapping[str, object]] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def _document_problems(app: FastAPI) -> None:
    """Rewrite the app's OpenAPI so error answers say problem+json.

    FastAPI documents every 422 as its own ``HTTPValidationError`` JSON; a
    schema-driven client or fuzzer (schemathesis) would then reject our
    answers. Each operation's 422 and a ``default`` response now point to a
    ``Problem`` schema instead.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if "422" in responses:
                    responses["422"] = {
                        "description": "Validation error",
                        "content": content,
                    }
                responses.setdefault(
                    "default", {"description": "Problem", "content": content}
                )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = dict(PROBLEM_SCHEMA)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
