"""``api.app.HotReads``: the two busiest reads, answered before FastAPI's
routing, must answer exactly what the routes answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

import api.app
from api.app import HotReads, create_app
from ledger.bundle_binary import MEDIA_TYPE as BINARY_MEDIA_TYPE
from ledger.store import LedgerStore
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import Document, LocalChain

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[LocalChain, list[Document]]]:
    chain = LocalChain.create(tmp_path / "store")
    docs = chain.anchor("police", 3)
    chain.cosign()
    chain.revoke(docs[0])
    docs.append(chain.supersede(docs[1]))
    chain.finalize()
    yield chain, docs
    chain.close()


def _paths(docs: list[Document]) -> list[str]:
    ids = [d.doc_id.hex() for d in docs]
    ids += ["00" * 32, "AB" * 32, "zz"]  # unknown, not lowercase, malformed
    paths = [f"/v1/documents/{i}{end}" for i in ids for end in ("", "/bundle")]
    # Both forms of the bundle, and queries the hot reads leave to the app.
    forms = ["binary", "json", "xml", "binary&format=json", "binary&x=1"]
    paths += [f"/v1/documents/{ids[0]}/bundle?format={f}" for f in forms]
    paths += [f"/v1/documents/{i}/bundle?format=binary" for i in ids[1:]]
    return [*paths, f"/v1/documents/{ids[0]}?lang=en", f"/v1/documents/{ids[0]}/"]


def _answers(
    store: LedgerStore, paths: list[str]
) -> tuple[list[tuple[int, list[tuple[str, str]], bytes]], list[str]]:
    with TestClient(create_app(StubNode(store), public_url=BASE)) as client:
        answers = []
        for path in paths:
            for method in ("GET", "HEAD"):
                r = client.request(method, path)
                answers.append((r.status_code, sorted(r.headers.items()), r.content))
        text = client.get("/metrics").text
    counts = [line for line in text.splitlines() if "/v1/documents" in line]
    return answers, [line for line in counts if line.startswith("http_requests_total")]


def test_hot_reads_answer_what_the_routes_answer(
    chain: tuple[LocalChain, list[Document]], monkeypatch: pytest.MonkeyPatch
) -> None:
    local, docs = chain
    paths = _paths(docs)
    hot = _answers(local.store, paths)
    monkeypatch.setattr(api.app, "HOT_PATH", re.compile(r"(?!)"))  # matches nothing
    assert _answers(local.store, paths) == hot
    # HEAD is answered as GET is (no 405), by the hot reads too; a trailing
    # slash is a 404 (no redirect); an unknown format a 422.
    assert {status for status, _, _ in hot[0]} == {200, 400, 404, 422}
    heads = hot[0][1::2]
    assert heads and all(body == b"" for _, _, body in heads)


def _call(app: HotReads, path: str, query: bytes = b"") -> list[Message]:
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_only_other_requests_reach_the_app(
    chain: tuple[LocalChain, list[Document]],
) -> None:
    local, docs = chain
    reached: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    app = HotReads(inner, node=StubNode(local.store))
    doc = docs[0].doc_id.hex()
    for path in (f"/v1/documents/{doc}", f"/v1/documents/{doc}/bundle"):
        assert _call(app, path)[0]["status"] == 200
    unknown = "00" * 32
    assert _call(app, f"/v1/documents/{unknown}")[0]["status"] == 404
    assert _call(app, f"/v1/documents/{unknown}/bundle")[0]["status"] == 200
    bundle = f"/v1/documents/{doc}/bundle"
    for query, media_type in [
        (b"format=json", b"application/json"),
        (b"format=binary", BINARY_MEDIA_TYPE.encode()),
    ]:
        start = _call(app, bundle, query)[0]
        assert start["status"] == 200
        assert (b"content-type", media_type) in start["headers"]
    assert reached == []
    for path in ("/v1/documents/zz", f"/v1/documents/{doc}/qr.png", "/v1/trust"):
        assert _call(app, path) == []
    assert reached == ["/v1/documents/zz", f"/v1/documents/{doc}/qr.png", "/v1/trust"]
    # A bundle query the route would have to validate is the app's.
    for query in (b"format=xml", b"format=binary&format=json", b"lang=en"):
        assert _call(app, bundle, query) == []
    assert reached[3:] == [bundle] * 3
