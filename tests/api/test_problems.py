"""Every error a tiny app answers is RFC 9457 problem+json."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, HTTPException, Query
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import BaseModel

from api.problems import (
    MEDIA_TYPE,
    PROBLEM_BASE,
    PROBLEM_TYPES,
    ProblemError,
    from_ledger_error,
    install_problem_handlers,
)
from ledger.errors import (
    CommitTimeoutError,
    ConsensusError,
    CorruptStoreError,
    EncodingError,
    NotLeaderError,
    RuleViolation,
)

SECRET = "s3cret-internal-state"


class Body(BaseModel):
    count: int
    name: str


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/documents/{doc_id}")
    def document(doc_id: str) -> dict[str, str]:
        if len(doc_id) != 64:
            raise ProblemError(
                "invalid-hex",
                "doc_id must be 64 lowercase hex digits",
                extra={"parameter": "doc_id"},
            )
        raise ProblemError("document-not-found", f"no document {doc_id}")

    @app.get("/leaves")
    def leaves(start: int = Query(ge=0), end: int = Query(ge=0)) -> dict[str, int]:
        if start > end:
            raise ProblemError("invalid-range", "start > end")
        return {"start": start, "end": end}

    @app.post("/submit")
    def submit(body: Body) -> dict[str, int]:
        return {"count": body.count}

    @app.get("/rule")
    def rule() -> None:
        raise RuleViolation("not_issuer", "entry 3 names another issuer", entry=3)

    @app.get("/signature")
    def signature() -> None:
        raise RuleViolation("bad_signature", "batch signature does not verify")

    @app.get("/leader")
    def leader() -> None:
        raise NotLeaderError("justice")

    @app.get("/quorum")
    def quorum() -> None:
        raise ConsensusError("no quorum")

    @app.get("/codec")
    def codec() -> None:
        raise EncodingError("trailing bytes")

    @app.get("/limited")
    def limited() -> None:
        raise ProblemError("rate-limited", headers={"Retry-After": "2"})

    @app.get("/slow")
    async def slow() -> None:
        raise TimeoutError

    @app.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418)

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError(SECRET)

    @app.get("/corrupt")
    def corrupt() -> None:
        raise CorruptStoreError(SECRET, height=7)

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app())


def assert_problem(response: Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert isinstance(body, dict)
    type_uri = "about:blank" if slug == "about:blank" else PROBLEM_BASE + slug
    assert body["type"] == type_uri
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    return body


def test_registry_is_consistent() -> None:
    required = {
        "bad-request", "not-found", "document-not-found", "block-not-found",
        "invalid-hex", "invalid-range", "payload-too-large",
        "too-many-entries", "rate-limited", "invalid-submission", "bad-signature",
        "replay", "not-leader", "unavailable", "timeout", "malformed",
        "validation-error", "internal-error", "method-not-allowed",
    }  # fmt: skip
    assert required <= set(PROBLEM_TYPES)
    for slug, ptype in PROBLEM_TYPES.items():
        assert ptype.slug == slug
        assert ptype.uri == PROBLEM_BASE + slug
        assert 400 <= ptype.status <= 599


def test_problem_error_checks_its_input() -> None:
    with pytest.raises(ValueError, match="unknown problem type"):
        ProblemError("no-such-type")
    with pytest.raises(ValueError, match="standard names"):
        ProblemError("bad-request", extra={"status": 200})


def test_raised_problem_with_extension_member(client: TestClient) -> None:
    body = assert_problem(client.get("/documents/abc"), 400, "invalid-hex")
    assert body["detail"] == "doc_id must be 64 lowercase hex digits"
    assert body["parameter"] == "doc_id"
    body = assert_problem(
        client.get("/documents/" + "a" * 64), 404, "document-not-found"
    )
    assert body["title"] == "Document not found"


def test_problem_headers_are_sent(client: TestClient) -> None:
    response = client.get("/limited")
    body = assert_problem(response, 429, "rate-limited")
    assert response.headers["retry-after"] == "2"
    assert "detail" not in body


def test_invalid_range(client: TestClient) -> None:
    assert_problem(client.get("/leaves?start=5&end=2"), 400, "invalid-range")
    assert client.get("/leaves?start=1&end=2").json() == {"start": 1, "end": 2}


def test_unknown_route_is_404_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/no/such/route"), 404, "not-found")
    assert "detail" not in body


def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    response = client.delete("/leaves")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"


def test_query_validation_is_422_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/leaves?start=-1&end=x"), 422, "validation-error")
    errors = body["errors"]
    assert isinstance(errors, list)
    locs = sorted(tuple(e["loc"]) for e in errors)
    assert locs == [("query", "end"), ("query", "start")]
    assert body["detail"] == "the request has 2 invalid fields"


def test_body_validation_does_not_echo_input(client: TestClient) -> None:
    response = client.post("/submit", json={"count": "many", "name": SECRET * 3})
    body = assert_problem(response, 422, "validation-error")
    assert SECRET not in response.text
    assert body["errors"] == [
        {
            "loc": ["body", "count"],
            "msg": "Input should be a valid integer, unable to parse string as an"
            " integer",
            "type": "int_parsing",
        }
    ]
    invalid_json = client.post(
        "/submit", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(invalid_json, 422, "validation-error")


def test_rule_violation_carries_reason_code(client: TestClient) -> None:
    body = assert_problem(client.get("/rule"), 422, "invalid-submission")
    assert body["reason"] == "not_issuer"
    assert body["entry"] == 3
    body = assert_problem(client.get("/signature"), 403, "bad-signature")
    assert body["reason"] == "bad_signature"
    assert "entry" not in body


def test_consensus_and_codec_errors(client: TestClient) -> None:
    body = assert_problem(client.get("/leader"), 503, "not-leader")
    assert body["leader"] == "justice"
    assert_problem(client.get("/quorum"), 503, "unavailable")
    assert_problem(client.get("/codec"), 400, "malformed")
    assert_problem(client.get("/slow"), 504, "timeout")


def test_unregistered_http_status_is_about_blank(client: TestClient) -> None:
    body = assert_problem(client.get("/teapot"), 418, "about:blank")
    assert body["title"] == "I'm a Teapot"


@pytest.mark.parametrize("path", ["/crash", "/corrupt"])
def test_unexpected_error_is_logged_500_without_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.problems"):
        response = client.get(path)
    body = assert_problem(response, 500, "internal-error")
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    instance = body["instance"]
    assert isinstance(instance, str) and instance.startswith("urn:uuid:")
    [record] = [r for r in caplog.records if r.name == "api.problems"]
    assert instance in record.getMessage()
    assert record.exc_info is not None
    assert SECRET in str(record.exc_info[1])


@pytest.mark.parametrize(
    ("code", "slug"),
    [
        ("replay", "replay"),
        ("timestamp_window", "replay"),
        ("too_many_entries", "too-many-entries"),
        ("malformed", "malformed"),
        ("already_anchored", "invalid-submission"),
    ],
)
def test_rule_codes_map_to_types(code: str, slug: str) -> None:
    problem = from_ledger_error(RuleViolation(code, "x"))
    assert problem is not None
    assert problem.slug == slug
    assert problem.extra["reason"] == code


def test_a_commit_timeout_is_504_and_a_refusal_503() -> None:
    """A client must tell "may still commit, retry the same bytes" (timeout)
    from "nothing was proposed" (unavailable)."""
    late = from_ledger_error(CommitTimeoutError("not committed in time"))
    refused = from_ledger_error(ConsensusError("no quorum"))
    assert late is not None and refused is not None
    assert (late.slug, late.status) == ("timeout", 504)
    assert (refused.slug, refused.status) == ("unavailable", 503)


def test_openapi_documents_problem_responses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/submit"]["post"]["responses"]
    ref = {"$ref": "#/components/schemas/Problem"}
    assert responses["422"]["content"] == {MEDIA_TYPE: {"schema": ref}}
    assert responses["default"]["content"] == {MEDIA_TYPE: {"schema": ref}}
    assert "Problem" in schema["components"]["schemas"]
