"""``LedgerClient``: problems, retries, leader following, and the helpers
against a fake node over a real local store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.client import ClientError, LedgerClient, NetworkError, trust_from_api
from cli.documents import AnchorReceipt, hash_file
from cli.verifying import check_bundle
from ledger.entries import record_key
from ledger.errors import ConfigError
from ledger.keys import verifier_key_string
from ledger.submission import decode_submission
from tests.cli.chain import LocalChain
from tests.cli.fakenode import NODE, FakeNode, problem


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[LocalChain]:
    local = LocalChain.create(tmp_path / "store")
    yield local
    local.close()


def _client(transport: httpx.MockTransport, **kw: object) -> LedgerClient:
    return LedgerClient(NODE, transport=transport, sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def test_problem_details_become_client_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return problem(
            422, "invalid-submission", "no", reason="already_anchored", entry=3
        )

    with (
        _client(httpx.MockTransport(handler)) as client,
        pytest.raises(ClientError) as c,
    ):
        client.checkpoint()
    err = c.value
    assert err.status == 422
    assert err.type.endswith("/invalid-submission") and err.slug == "invalid-submission"
    assert (err.title, err.detail, err.code) == (
        "invalid-submission",
        "no",
        "already_anchored",
    )
    assert err.body["entry"] == 3
    assert not err.retried


def test_non_json_error_is_still_a_client_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway"))
    with _client(transport) as client, pytest.raises(ClientError) as caught:
        client.cluster()
    assert caught.value.status == 502
    assert caught.value.detail == "bad gateway"


def test_503_is_retried_with_backoff() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return problem(503, "unavailable", "no quorum yet")
        return httpx.Response(200, json={"height": 1})

    client = LedgerClient(
        NODE, transport=httpx.MockTransport(handler), sleep=sleeps.append
    )
    assert client.cluster() == {"height": 1}
    assert len(calls) == 3
    assert sleeps == [0.1, 0.2]


def test_retry_after_is_honoured_and_retries_end() -> None:
    sleeps: list[float] = []
    transport = httpx.MockTransport(
        lambda r: httpx.Response(
            429, headers={"retry-after": "2"}, json={"title": "slow"}
        )
    )
    client = LedgerClient(NODE, transport=transport, sleep=sleeps.append, retries=2)
    with pytest.raises(ClientError) as caught:
        client.trust()
    assert caught.value.status == 429
    assert caught.value.retried
    assert sleeps == [2.0, 2.0]


def test_not_leader_with_a_leader_url_is_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "follower":
            return problem(
                503,
                "not-leader",
                "ask the leader",
                leader="justice",
                leader_url="http://leader:7201",
            )
        return httpx.Response(
            200,
            json={
                "status": "accepted",
                "height": 5,
                "block_hash": "00" * 32,
                "first_leaf": 9,
                "receipts": [],
                "checkpoint": None,
            },
        )

    client = LedgerClient(
        "http://follower:7200", transport=httpx.MockTransport(handler)
    )
    result = client.submit(b"\x80")
    assert result.height == 5
    assert client.base_url == "http://leader:7201"
    assert seen == [
        "http://follower:7200/v1/submissions?wait=applied",
        "http://leader:7201/v1/submissions?wait=applied",
    ]


def test_not_leader_naming_only_the_leader_looks_it_up() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/cluster":
            return httpx.Response(
                200,
                json={
                    "leader": "health",
                    "members": [
                        {"id": "police", "api_url": "http://follower:7200"},
                        {"id": "health", "api_url": "http://leader:7202"},
                    ],
                },
            )
        if request.url.host == "follower":
            return problem(503, "not-leader", "no", leader="health")
        return httpx.Response(200, json={"origin": "o"})

    client = LedgerClient(
        "http://follower:7200", transport=httpx.MockTransport(handler)
    )
    assert client.trust() == {"origin": "o"}
    assert client.base_url == "http://leader:7202"


def test_unreachable_node_is_a_network_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sleeps: list[float] = []
    client = LedgerClient(
        NODE, transport=httpx.MockTransport(handler), sleep=sleeps.append, retries=3
    )
    with pytest.raises(NetworkError):
        client.cluster()
    assert len(sleeps) == 3


def test_timeout_of_a_write_is_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(NetworkError):
        client.submit(b"\x80")
    assert calls == [1]


def test_trust_from_api_takes_the_design_form(chain: LocalChain) -> None:
    trust = chain.trust
    api = {
        "origin": trust.origin,
        "quorum": trust.quorum,
        "agencies": [
            {
                "id": a.id,
                "names": dict(a.names),
                "node_key": verifier_key_string(a.id, a.node_key),
                "issuer_keys": [k.hex() for k in a.issuer_keys],
                "doc_types": list(a.doc_types),
            }
            for a in trust.agencies
        ],
    }
    parsed = trust_from_api(api)
    assert parsed.note_verifiers() == trust.note_verifiers()
    assert [a.issuer_keys for a in parsed.agencies] == [
        a.issuer_keys for a in trust.agencies
    ]
    assert trust_from_api({"trust_list": trust.to_json()}) == trust


@pytest.mark.parametrize(
    "served",
    [
        [1, 2],
        "x",
        {"origin": "o", "quorum": 1, "agencies": 5},
        {
            "origin": "o",
            "agencies": [{"id": "a", "node_key": "00" * 32, "issuer_keys": 7}],
        },
        {"origin": "o", "agencies": [7]},
        {"trust_list": {"origin": "o"}},
    ],
    ids=["list", "string", "agencies-int", "keys-int", "agency-int", "inner-short"],
)
def test_a_malformed_trust_list_is_a_config_error(served: object) -> None:
    # Untrusted input: a typed error naming the defect, never a TypeError.
    with pytest.raises(ConfigError, match="trust list"):
        trust_from_api(served)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "body", "call"),
    [
        ("/v1/proofs/inclusion", {"proof": 5}, lambda c: c.inclusion_proof(0, 2)),
        ("/v1/proofs/inclusion", [1], lambda c: c.inclusion_proof(0, 2)),
        (
            "/v1/proofs/consistency",
            {"proof": ["zz"]},
            lambda c: c.consistency_proof(1, 2),
        ),
        ("/v1/leaves", {"leaves": [7]}, lambda c: c.leaves(0, 1)),
        ("/v1/leaves", {}, lambda c: c.leaves(0, 1)),
    ],
    ids=["proof-int", "proof-list", "proof-bad-hex", "leaf-int", "no-leaves"],
)
def test_an_answer_of_the_wrong_shape_is_a_client_error(
    path: str, body: object, call: Any
) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    with _client(transport) as client, pytest.raises(ClientError) as caught:
        call(client)
    assert caught.value.title == "unexpected answer"


def test_a_binary_bundle_answered_as_json_is_a_client_error() -> None:
    """A node from before the binary form ignores ``format`` and answers
    JSON; the client says so rather than hand JSON over as the bytes."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url.params))
        return httpx.Response(200, json={"version": 1})

    doc_id = "ab" * 32
    with (
        _client(httpx.MockTransport(handler)) as client,
        pytest.raises(ClientError) as caught,
    ):
        client.bundle_binary(doc_id)
    assert asked == ["format=binary"]
    assert caught.value.title == "not a binary bundle"
    assert "application/json" in str(caught.value.detail)


# --- the helpers, against a fake node ------------------------------------------


def test_anchor_files_batches_and_receipts(chain: LocalChain, tmp_path: Path) -> None:
    node = FakeNode(chain)
    paths = []
    for i in range(5):
        path = tmp_path / f"doc{i}.pdf"
        path.write_bytes(b"%%PDF- certificate %d" % i)
        paths.append(path)
    paths.append(tmp_path / "copy.pdf")
    paths[-1].write_bytes(paths[0].read_bytes())  # an identical second copy
    key = chain.keys["police"].issuer
    ticks: list[int] = []
    with _client(node.transport()) as client:
        receipts = client.anchor_files(
            paths, key, "police", "criminal_record", batch_size=4, progress=ticks.append
        )
    assert ticks == [4, 2]
    assert len(node.submissions) == 2
    for request in node.submissions:
        assert request.headers["content-type"] == "application/msgpack"
        assert decode_submission(request.content).agency == "police"
    assert [r.file_name for r in receipts] == [p.name for p in paths]
    # Identical files get their own salts, so their own ids.
    assert len({r.doc_id for r in receipts}) == 6
    for receipt, path in zip(receipts, paths, strict=True):
        assert receipt.file_sha256 == hash_file(path)
        assert chain.store.status(receipt.doc_id) is not None
        assert chain.store.leaf(receipt.leaf_index)  # exists
        assert receipt.verify_url == (
            f"{NODE}/v/{receipt.doc_id.hex()}#{receipt.salt.hex()}"
        )
        again = AnchorReceipt.from_json(json.loads(json.dumps(receipt.to_json())))
        assert again == receipt
        bundle = build(chain, receipt.doc_id)
        outcome = check_bundle(
            bundle, chain.trust, document=path.read_bytes(), salt=receipt.salt
        )
        assert outcome.status == "valid"


def build(chain: LocalChain, doc_id: bytes) -> dict[str, object]:
    from ledger.bundle import build_bundle

    return build_bundle(chain.store, doc_id)


def test_revoke_supersede_and_record(chain: LocalChain, tmp_path: Path) -> None:
    node = FakeNode(chain)
    key = chain.keys["justice"].issuer
    first, second = tmp_path / "a.pdf", tmp_path / "b.pdf"
    first.write_bytes(b"birth certificate")
    second.write_bytes(b"birth certificate, corrected")
    with _client(node.transport()) as client:
        (old,) = client.anchor_files([first], key, "justice", "birth_registration")
        new, result = client.supersede_with_file(
            old.doc_id, second, key, "justice", "birth_registration"
        )
        assert [r.kind for r in result.receipts] == ["anchor", "supersede"]
        assert len(node.submissions) == 2  # anchor + supersede in one
        client.revoke([new.doc_id], key, "justice", "issued_in_error")
        client.record("civil_registry", b"R-17", 1, b"\x01" * 32, key, "justice")
        with pytest.raises(ClientError) as caught:
            client.record("civil_registry", b"R-17", 3, b"\x02" * 32, key, "justice")
        assert caught.value.code == "bad_version"
    assert check_bundle(build(chain, old.doc_id), chain.trust).status == "superseded"
    assert check_bundle(build(chain, new.doc_id), chain.trust).status == "revoked"
    rec = chain.store.status(record_key("civil_registry", b"R-17"))
    assert rec is not None and rec.version == 1


def test_not_mine_to_revoke(chain: LocalChain, tmp_path: Path) -> None:
    node = FakeNode(chain)
    path = tmp_path / "x.pdf"
    path.write_bytes(b"x")
    with _client(node.transport()) as client:
        (receipt,) = client.anchor_files(
            [path], chain.keys["police"].issuer, "police", "criminal_record"
        )
        with pytest.raises(ClientError) as caught:
            client.revoke(
                [receipt.doc_id], chain.keys["health"].issuer, "health", "withdrawn"
            )
    assert caught.value.status == 422
    assert caught.value.code == "not_owner"
