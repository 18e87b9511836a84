"""``GET /v1/documents/{doc_id}/bundle`` in both forms: JSON by default,
the binary form on ``?format=binary``, and a problem for any other form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from api.problems import PROBLEM_BASE
from ledger.bundle_binary import MEDIA_TYPE as BINARY_MEDIA_TYPE
from ledger.bundle_binary import decode_bundle
from ledger.verify import verify_bundle
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import Document, LocalChain

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")

ROUTE = "/v1/documents/{doc_id}/bundle"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalChain, list[Document], TestClient]]:
    chain = LocalChain.create(tmp_path / "store")
    docs = chain.anchor("police", 2)
    chain.cosign()
    chain.revoke(docs[0])
    chain.finalize()
    with TestClient(create_app(StubNode(chain.store), public_url=BASE)) as client:
        yield chain, docs, client
    chain.close()


def _path(doc: Document | str) -> str:
    return ROUTE.format(doc_id=doc if isinstance(doc, str) else doc.doc_id.hex())


@pytest.mark.parametrize(("which", "status"), [(0, "revoked"), (1, "valid")])
def test_the_binary_form_verifies_offline_as_the_json_one_does(
    served: tuple[LocalChain, list[Document], TestClient], which: int, status: str
) -> None:
    chain, docs, client = served
    json_answer = client.get(_path(docs[which]))
    binary_answer = client.get(_path(docs[which]), params={"format": "binary"})
    assert binary_answer.status_code == 200
    assert binary_answer.headers["content-type"] == BINARY_MEDIA_TYPE
    assert len(binary_answer.content) < 0.8 * len(json_answer.content)
    decoded = decode_bundle(binary_answer.content)
    assert decoded == json_answer.json()
    now = chain.time_ms
    verdict = verify_bundle(decoded, chain.trust, now_ms=now)
    assert verdict.status == status
    assert verdict == verify_bundle(json_answer.json(), chain.trust, now_ms=now)


def test_an_unknown_document_gets_its_proof_of_absence_in_binary(
    served: tuple[LocalChain, list[Document], TestClient],
) -> None:
    chain, _, client = served
    answer = client.get(_path("00" * 32), params={"format": "binary"})
    assert answer.headers["content-type"] == BINARY_MEDIA_TYPE
    verdict = verify_bundle(decode_bundle(answer.content), chain.trust)
    assert verdict.status == "not_found"


def test_json_stays_the_default(
    served: tuple[LocalChain, list[Document], TestClient],
) -> None:
    _, docs, client = served
    default = client.get(_path(docs[1]))
    asked = client.get(_path(docs[1]), params={"format": "json"})
    assert default.headers["content-type"] == "application/json"
    assert (asked.status_code, asked.headers["content-type"]) == (
        200,
        "application/json",
    )
    assert asked.content == default.content
    assert default.json()["doc_id"] == docs[1].doc_id.hex()


def _problem(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    return body


@pytest.mark.parametrize("form", ["xml", "BINARY", "msgpack", ""])
def test_an_unknown_format_is_a_validation_problem(
    served: tuple[LocalChain, list[Document], TestClient], form: str
) -> None:
    _, docs, client = served
    answer = client.get(_path(docs[1]), params={"format": form})
    body = _problem(answer, 422, "validation-error")
    assert [e["loc"] for e in body["errors"]] == [["query", "format"]]


def test_a_bad_doc_id_is_the_same_problem_in_either_form(
    served: tuple[LocalChain, list[Document], TestClient],
) -> None:
    _, _, client = served
    for params in ({}, {"format": "binary"}):
        answer = client.get(_path("AB" * 32), params=params)
        assert _problem(answer, 400, "invalid-hex")["parameter"] == "doc_id"


def test_head_of_the_binary_form(
    served: tuple[LocalChain, list[Document], TestClient],
) -> None:
    _, docs, client = served
    params = {"format": "binary"}
    get = client.get(_path(docs[1]), params=params)
    head = client.head(_path(docs[1]), params=params)
    assert head.status_code == 200
    assert head.content == b""
    assert sorted(head.headers.items()) == sorted(get.headers.items())
    assert int(head.headers["content-length"]) == len(get.content)
    bad = client.head(_path(docs[1]), params={"format": "xml"})
    assert (bad.status_code, bad.content) == (422, b"")


def test_the_openapi_document_names_the_format_and_both_media_types(
    served: tuple[LocalChain, list[Document], TestClient],
) -> None:
    _, _, client = served
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][ROUTE]["get"]
    (param,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert param["in"] == "query" and not param.get("required", False)
    ref = param["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][ref]["enum"] == ["json", "binary"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/json",
        BINARY_MEDIA_TYPE,
    }
    assert PROBLEM_MEDIA_TYPE in operation["responses"]["422"]["content"]
