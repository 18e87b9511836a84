"""The HTTP side of audit and verify, against the real web application.

``api.app.create_app`` serves a local store through a stub node (no Raft),
and ``LedgerClient`` reaches it through Starlette's test client, so the
routes, their JSON and the client's parsing are the production ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.qr import qr_png, qr_url
from cli.audit import AuditError, KeptCheckpoint, audit
from cli.client import ClientError, LedgerClient
from cli.sources import ClientSource
from cli.verifying import VerifyRequest, check_bundle, run_verify
from ledger.bundle_binary import decode_bundle
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import Document, LocalChain

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")


@pytest.fixture
def served(
    tmp_path: Path,
) -> Iterator[tuple[LocalChain, httpx.MockTransport, list[Document]]]:
    from starlette.testclient import TestClient

    chain = LocalChain.create(tmp_path / "store")
    docs = chain.anchor("police", 4)
    chain.cosign()
    chain.revoke(docs[0])
    docs.append(chain.supersede(docs[1]))
    chain.finalize()
    app = create_app(StubNode(chain.store), public_url=BASE)
    with TestClient(app) as test_client:

        def handler(request: httpx.Request) -> httpx.Response:
            answer = test_client.request(
                request.method,
                request.url.raw_path.decode(),
                content=request.content,
                headers=dict(request.headers),
            )
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )

        yield chain, httpx.MockTransport(handler), docs
    chain.close()


def _client(transport: httpx.MockTransport) -> LedgerClient:
    return LedgerClient(BASE, transport=transport, retries=0)


def test_audit_over_http(served: tuple[LocalChain, httpx.MockTransport, Any]) -> None:
    chain, transport, docs = served
    with _client(transport) as client:
        source = ClientSource(client)
        genesis = source.genesis()
        assert genesis == chain.trust
        report = audit(source, chain.trust)
    assert report.blocks == chain.store.height
    assert report.entries == chain.store.tree_size
    assert report.documents == len(docs)
    assert report.final_note is not None


def test_kept_checkpoint_over_http(
    served: tuple[LocalChain, httpx.MockTransport, Any], tmp_path: Path
) -> None:
    chain, transport, _ = served
    with _client(transport) as client:
        first = audit(ClientSource(client), chain.trust)
    assert first.final_note is not None
    kept = KeptCheckpoint(chain_id=first.chain_id, note=first.final_note)
    chain.anchor("police", 2)
    chain.finalize()
    with _client(transport) as client:
        again = audit(ClientSource(client), chain.trust, keep=kept)
    assert again.kept_height == kept.checkpoint.height
    other = LocalChain.create(tmp_path / "other", seed=9)
    try:
        other.anchor("police")
        other.finalize()
        with _client(transport) as client, pytest.raises(AuditError):
            audit(ClientSource(client), other.trust)
    finally:
        other.close()


@pytest.mark.parametrize(
    ("index", "status"), [(0, "revoked"), (1, "superseded"), (2, "valid"), (4, "valid")]
)
def test_verify_online_with_a_qr_code(
    served: tuple[LocalChain, httpx.MockTransport, list[Document]],
    tmp_path: Path,
    index: int,
    status: str,
) -> None:
    _, transport, docs = served
    doc = docs[index]
    image = tmp_path / "qr.png"
    image.write_bytes(qr_png(qr_url(BASE, doc.doc_id, doc.salt)))
    document = tmp_path / "doc.pdf"
    document.write_bytes(doc.content)
    req = VerifyRequest(qr=image, document=document)
    outcome = run_verify(req, client_factory=lambda url: _client(transport))
    assert outcome.status == status
    assert outcome.trust_from_node


@pytest.mark.parametrize(("index", "status"), [(0, "revoked"), (2, "valid")])
def test_the_binary_bundle_over_http_verifies_as_the_json_one(
    served: tuple[LocalChain, httpx.MockTransport, list[Document]],
    index: int,
    status: str,
) -> None:
    chain, transport, docs = served
    with _client(transport) as client:
        binary = client.bundle_binary(docs[index].doc_id)
        bundle = client.bundle(docs[index].doc_id)
    assert decode_bundle(binary) == bundle
    binary_outcome = check_bundle(binary, chain.trust, doc_id=docs[index].doc_id)
    json_outcome = check_bundle(bundle, chain.trust, doc_id=docs[index].doc_id)
    assert binary_outcome.status == status
    assert binary_outcome.verdict == json_outcome.verdict
    assert check_bundle(binary[:-1], chain.trust).status == "malformed"


def test_verify_online_unknown_document(
    served: tuple[LocalChain, httpx.MockTransport, Any], tmp_path: Path
) -> None:
    _, transport, _ = served
    image = tmp_path / "qr.png"
    image.write_bytes(qr_png(qr_url(BASE, os.urandom(32), os.urandom(16))))
    outcome = run_verify(
        VerifyRequest(qr=image), client_factory=lambda url: _client(transport)
    )
    # Proven: the node's bundle shows the absence, and it verified.
    assert outcome.status == "not_found" and outcome.verdict is not None


def test_a_node_that_answers_404_proves_nothing(
    served: tuple[LocalChain, httpx.MockTransport, list[Document]], tmp_path: Path
) -> None:
    # A node (or whoever sits between) that answers 404 for a genuine
    # document must not make it read "not found": that takes a proof.
    _, transport, docs = served
    image = tmp_path / "qr.png"
    image.write_bytes(qr_png(qr_url(BASE, docs[2].doc_id, docs[2].salt)))

    def hiding(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/bundle"):
            return httpx.Response(
                404,
                headers={"content-type": "application/problem+json"},
                json={"type": "about:blank", "title": "Not Found", "status": 404},
            )
        return transport.handle_request(request)

    def liar(url: str) -> LedgerClient:
        return LedgerClient(BASE, transport=httpx.MockTransport(hiding), retries=0)

    with pytest.raises(ClientError) as caught:
        run_verify(VerifyRequest(qr=image), client_factory=liar)
    assert caught.value.status == 404
    honest = run_verify(
        VerifyRequest(qr=image), client_factory=lambda url: _client(transport)
    )
    assert honest.status == "valid"


def test_large_blocks_come_in_short_pages_and_the_audit_pages_on(
    served: tuple[LocalChain, httpx.MockTransport, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page of blocks stops at its byte budget (here: any one block), and
    the auditor continues from the last height served."""
    import api.routes_read

    chain, transport, _ = served
    monkeypatch.setattr(api.routes_read, "MAX_PAGE_SUBMISSION_BYTES", 1)
    with _client(transport) as client:
        page = client.blocks(1, 100, raw=False)
        assert [b["height"] for b in page] == [1]
        report = audit(ClientSource(client), chain.trust)
    assert report.blocks == chain.store.height > 1
