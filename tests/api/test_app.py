"""``api.app.create_app`` at the HTTP level: HEAD is answered wherever GET
is (hot reads included, and counted as HEAD), a trailing slash is a 404
rather than a redirect built from the Host header, a bad doc id's problem
names the parameter, and a client that hangs up mid-body is no error: one
debug line, and counted as 499, not 500."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Scope

from api.app import CLIENT_CLOSED_REQUEST, create_app
from api.problems import MEDIA_TYPE, PROBLEM_BASE
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import Document, LocalChain
from tests.loopback import uvicorn_on_loopback

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[LocalChain, Document]]:
    chain = LocalChain.create(tmp_path / "store")
    (doc,) = chain.anchor("police", 1)
    chain.finalize()
    yield chain, doc
    chain.close()


@pytest.fixture
def client(chain: tuple[LocalChain, Document]) -> Iterator[TestClient]:
    with TestClient(create_app(StubNode(chain[0].store), public_url=BASE)) as client:
        yield client


def _get_routes(doc: str) -> list[str]:
    return [
        "/v1/trust",
        "/v1/checkpoint",
        f"/v1/documents/{doc}",  # the hot reads
        f"/v1/documents/{doc}/bundle",
        f"/v1/documents/{'00' * 32}",
        f"/v1/documents/{doc}/qr.svg",
        "/v1/proofs/inclusion?index=0&size=1",
        "/v1/leaves?start=0&end=1",
        "/v1/blocks/1",
        "/v1/blocks",
        f"/v/{doc}",
        f"/v/{doc}?lang=en",
        "/v/zz",
        "/openapi.json",
        "/healthz",
        "/static/verify.css",
        "/no/such/route",
        "/v1/submissions",  # POST only: 405 for both
    ]


def _counts(client: TestClient) -> list[str]:
    return [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("http_requests_total{")
    ]


def test_head_answers_what_get_answers_without_the_body(
    chain: tuple[LocalChain, Document], client: TestClient
) -> None:
    doc = chain[1].doc_id.hex()
    statuses = set()
    for path in _get_routes(doc):
        get = client.get(path)
        head = client.head(path)
        assert head.status_code == get.status_code, path
        assert sorted(head.headers.items()) == sorted(get.headers.items()), path
        assert head.content == b"", path
        assert int(head.headers["content-length"]) == len(get.content), path
        statuses.add(get.status_code)
    assert statuses == {200, 400, 404, 405}


def test_head_is_counted_as_head_under_its_route(
    chain: tuple[LocalChain, Document], client: TestClient
) -> None:
    doc = chain[1].doc_id.hex()
    client.head(f"/v1/documents/{doc}")  # a hot read
    client.head("/v1/trust")
    client.head("/no/such/route")
    counts = _counts(client)
    for route, status in [
        ("/v1/documents/{doc_id}", 200),
        ("/v1/trust", 200),
        ("unmatched", 404),
    ]:
        line = f'http_requests_total{{method="HEAD",route="{route}",status="{status}"}}'
        assert f"{line} 1.0" in counts, counts


def test_head_of_a_problem_keeps_its_problem_headers(client: TestClient) -> None:
    head = client.head("/v1/documents/abc")
    assert head.status_code == 400
    assert head.headers["content-type"] == MEDIA_TYPE
    assert head.content == b""


@pytest.mark.parametrize("path", ["/v1/trust/", "/v1/checkpoint/", "/v1/blocks/"])
def test_a_trailing_slash_is_a_404_problem_not_a_redirect_to_the_host_header(
    client: TestClient, path: str
) -> None:
    answer = client.get(path, headers={"host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert answer.headers["content-type"] == MEDIA_TYPE
    assert answer.json()["type"] == PROBLEM_BASE + "not-found"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/documents/abc",
        f"/v1/documents/{'AB' * 32}",  # the hot path takes lowercase only
        "/v1/documents/abc/bundle",
        "/v1/documents/abc/qr.png",
    ],
)
def test_invalid_hex_names_the_parameter(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400
    body = answer.json()
    assert body["type"] == PROBLEM_BASE + "invalid-hex"
    assert body["parameter"] == "doc_id"


def _hang_up_mid_body(app: object) -> list[Message]:
    """POST a submission that declares 100 bytes, send 2 and hang up."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/submissions",
        "raw_path": b"/v1/submissions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/msgpack"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    assert callable(app)
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_client_hanging_up_mid_body_is_a_debug_line_and_counted_499(
    chain: tuple[LocalChain, Document], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(StubNode(chain[0].store), public_url=BASE)
    with caplog.at_level(logging.DEBUG):
        sent = _hang_up_mid_body(app)
    assert sent == []  # nobody to answer
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    [line] = [r.getMessage() for r in caplog.records if "disconnected" in r.msg]
    assert "method=POST path=/v1/submissions" in line
    text = app.state.metrics.render()[0].decode()
    route = 'method="POST",route="/v1/submissions"'
    assert f'http_requests_total{{{route},status="{CLIENT_CLOSED_REQUEST}"}} 1.0' in (
        text
    )
    assert f'{route},status="500"' not in text


def uvicorn_serving(app: ASGIApp) -> AbstractContextManager[int]:
    """``app`` on a real uvicorn on loopback, its log records going to the
    root logger (``log_config=None``, as ``cli.serve`` runs it); the port."""
    return uvicorn_on_loopback(
        lambda port: uvicorn.Config(app, log_config=None, lifespan="on")
    )


def test_a_client_hanging_up_mid_body_on_a_real_server_is_no_error(
    chain: tuple[LocalChain, Document], caplog: pytest.LogCaptureFixture
) -> None:
    """The same over a socket: ``Content-Length: 100``, 2 bytes, close. No
    error from the app nor from uvicorn ("Exception in ASGI application")."""
    app = create_app(StubNode(chain[0].store), public_url=BASE)
    with caplog.at_level(logging.DEBUG), uvicorn_serving(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                b"POST /v1/submissions HTTP/1.1\r\nHost: node\r\n"
                b"Content-Type: application/msgpack\r\nContent-Length: 100\r\n\r\nab"
            )
        deadline = time.monotonic() + 5
        while "client disconnected" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "client disconnected method=POST path=/v1/submissions" in caplog.text
    assert (
        'http_requests_total{method="POST",route="/v1/submissions",status="499"} 1.0'
        in metrics
    )
