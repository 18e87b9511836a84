"""Every public route of DESIGN.md against a running 3-node cluster (issue #5).

One cluster (police, justice, health: real processes, LevelDB, TLS between
peers) serves the whole module. The setup anchors the sample PDFs through
``LedgerClient`` and leaves one document valid, one revoked and one
superseded; the tests then read every route from every node and check what
comes back with the offline verifiers of ``ledger`` and nothing but the
trust list: checkpoint notes, inclusion and consistency proofs, blocks, and
proof bundles ("any bundle the API serves verifies offline").

The second half triggers every problem type the API can answer and checks
each is ``application/problem+json`` with its stable type URI. The node
limits are lowered in node.toml before the cluster starts, so the rate limit
and the body size limit are reached with a few requests.
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pyzbar import pyzbar

from api.problems import MEDIA_TYPE, PROBLEM_BASE, PROBLEM_TYPES
from api.qr import qr_url
from cli.client import LedgerClient, SubmitResult, trust_from_api
from cli.documents import AnchorReceipt, hash_file
from ledger.block import block_hash, decode_block, verify_body
from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.entries import (
    Anchor,
    Record,
    Revoke,
    decode_entry,
    derive_doc_id,
    encode_entry,
    record_key,
)
from ledger.errors import VerificationError
from ledger.keys import parse_verifier_key
from ledger.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from ledger.rules import TIMESTAMP_WINDOW_MS
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    decode_submission,
    encode_submission,
    sign_submission,
)
from ledger.trust import TrustList
from ledger.verify import verify_bundle
from tests.node.harness import Cluster, now_ms, running_cluster

ROOT: Final = Path(__file__).resolve().parents[2]
EXAMPLES: Final = ROOT / "examples"
VALID_PDF: Final = EXAMPLES / "criminal-record-1-nguyen-thi-hong-nhung.pdf"
REVOKED_PDF: Final = EXAMPLES / "criminal-record-1-tran-quoc-bao.pdf"
OLD_PDF: Final = EXAMPLES / "birth-certificate-tran-minh-khoi.pdf"
NEW_PDF: Final = EXAMPLES / "birth-certificate-tran-minh-khoi-amended.pdf"
AGENCIES: Final = ("police", "justice", "health")
# Lowered in node.toml so a test reaches them quickly. The rate limit is per
# agency with a burst of twice the rate; only the rate-limit test submits as
# `health`, and no other agency submits more than the burst in this module.
RATE_PER_AGENCY: Final = 10
RATE_LIMIT_TIMEOUT_S: Final = 30.0
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MSGPACK: Final = {"content-type": "application/msgpack"}
QR_SCALE: Final = 8  # api.qr: pixels per module
QR_BORDER: Final = 4  # api.qr: quiet zone in modules
MAX_QR_VERSION: Final = 10
PAGE_TIMEOUT: Final = 10.0


# --- the cluster and what the module puts on it -------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    def lower_limits(c: Cluster) -> None:
        for agency in c.agencies:
            c.edit_config(
                agency,
                lambda cfg: cfg.setdefault("limits", {}).update(
                    rate_per_agency=RATE_PER_AGENCY, max_body_bytes=MAX_BODY_BYTES
                ),
            )

    directory = tmp_path_factory.mktemp("cluster-routes")
    with running_cluster(directory, AGENCIES, configure=lower_limits) as running:
        yield running


@dataclass(frozen=True)
class Docs:
    """The documents the module's setup anchored, revoked and superseded."""

    valid: AnchorReceipt
    revoked: AnchorReceipt
    revoke: SubmitResult
    old: AnchorReceipt
    new: AnchorReceipt
    supersede: SubmitResult
    # A final checkpoint taken before the revocation: consistency from it.
    early: Checkpoint
    unknown: bytes


@pytest.fixture(scope="module")
def docs(cluster: Cluster) -> Docs:
    with LedgerClient(cluster.url("police")) as police:
        (valid,) = police.anchor_files(
            [VALID_PDF],
            cluster.issuer_key("police"),
            "police",
            "criminal_record",
            wait="final",
        )
        (revoked,) = police.anchor_files(
            [REVOKED_PDF],
            cluster.issuer_key("police"),
            "police",
            "criminal_record",
            wait="final",
        )
        early = _verified(cluster.trust, police.checkpoint()["note"])
        (revoke,) = police.revoke(
            [revoked.doc_id],
            cluster.issuer_key("police"),
            "police",
            "issued_in_error",
            wait="final",
        )
    with LedgerClient(cluster.url("justice")) as justice:
        (old,) = justice.anchor_files(
            [OLD_PDF],
            cluster.issuer_key("justice"),
            "justice",
            "birth_registration",
            wait="final",
        )
        new, supersede = justice.supersede_with_file(
            old.doc_id,
            NEW_PDF,
            cluster.issuer_key("justice"),
            "justice",
            "birth_registration",
            wait="final",
        )
    cluster.wait_converged(AGENCIES)
    return Docs(
        valid=valid,
        revoked=revoked,
        revoke=revoke,
        old=old,
        new=new,
        supersede=supersede,
        early=early,
        unknown=os.urandom(32),
    )


def _verified(trust: TrustList, note: str) -> Checkpoint:
    cp, _ = verify_checkpoint(
        note, trust.note_verifiers(), trust.quorum, origin=trust.origin
    )
    return cp


def get(cluster: Cluster, agency: str, path: str, **params: Any) -> httpx.Response:
    return cluster.http.get(
        f"{cluster.url(agency)}{path}", params=params, timeout=PAGE_TIMEOUT
    )


def ok_json(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    return response.json()


def final_checkpoint(cluster: Cluster, agency: str) -> tuple[Checkpoint, Any]:
    body = ok_json(get(cluster, agency, "/v1/checkpoint"))
    return _verified(cluster.trust, body["note"]), body


def all_leaves(cluster: Cluster, agency: str, size: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < size:
        end = min(size, len(out) + 1000)
        page = ok_json(get(cluster, agency, "/v1/leaves", start=len(out), end=end))
        assert page["start"] == len(out) and page["end"] == end
        out += [base64.b64decode(x, validate=True) for x in page["leaves"]]
    return out


# --- the read API ---------------------------------------------------------------


@pytest.mark.parametrize("agency", AGENCIES)
def test_trust_is_the_genesis_trust_list(cluster: Cluster, agency: str) -> None:
    body = ok_json(get(cluster, agency, "/v1/trust"))
    trust = cluster.trust
    assert body["origin"] == trust.origin
    assert body["quorum"] == trust.quorum == 2
    assert body["chain_id"] == trust.chain_id().hex()
    assert [a["id"] for a in body["agencies"]] == [a.id for a in trust.agencies]
    for shown, info in zip(body["agencies"], trust.agencies, strict=True):
        assert shown["names"] == dict(info.names)
        assert set(shown["names"]) == {"vi", "en"}
        verifier = parse_verifier_key(shown["node_key"])
        assert (verifier.name, verifier.public_key) == (info.id, info.node_key)
        assert shown["issuer_keys"] == [k.hex() for k in info.issuer_keys]
        assert shown["doc_types"] == list(info.doc_types)
    # What an integrator rebuilds from the answer is the trust list itself.
    assert trust_from_api(body) == trust


@pytest.mark.parametrize("agency", AGENCIES)
def test_checkpoint_is_final_and_its_note_verifies(
    cluster: Cluster, docs: Docs, agency: str
) -> None:
    cp, body = final_checkpoint(cluster, agency)
    assert body["origin"] == cp.origin == cluster.trust.origin
    assert body["size"] == cp.size
    assert body["root"] == cp.root.hex()
    assert body["state_root"] == cp.state_root.hex()
    assert body["height"] == cp.height
    assert body["block_hash"] == cp.block_hash.hex()
    assert body["time"] == cp.time_ms
    # The setup waited for finality of its last submission.
    assert cp.height >= docs.supersede.height
    # Final: a quorum of distinct agency keys signed it, so one key alone
    # does not verify it, and it is a checkpoint of this log only.
    verifiers = cluster.trust.note_verifiers()
    quorum = cluster.trust.quorum
    for verifier in verifiers:
        with pytest.raises(VerificationError):
            verify_checkpoint(body["note"], [verifier], quorum, origin=cp.origin)
    with pytest.raises(VerificationError):
        verify_checkpoint(body["note"], verifiers, quorum, origin="another/log")


def test_leaves_and_inclusion_proofs_verify(cluster: Cluster, docs: Docs) -> None:
    cp, _ = final_checkpoint(cluster, "justice")
    leaves = all_leaves(cluster, "justice", cp.size)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    assert root_of(hashes) == cp.root
    kinds = [type(decode_entry(leaf)).__name__ for leaf in leaves]
    assert {"Anchor", "Revoke", "Supersede"} <= set(kinds)
    for index in range(cp.size):
        body = ok_json(
            get(cluster, "health", "/v1/proofs/inclusion", index=index, size=cp.size)
        )
        assert (body["index"], body["size"]) == (index, cp.size)
        proof = [bytes.fromhex(h) for h in body["proof"]]
        verify_inclusion(hashes[index], index, cp.size, proof, cp.root)
    # A smaller tree: the proof is against that tree's root.
    size = docs.early.size
    body = ok_json(get(cluster, "police", "/v1/proofs/inclusion", index=0, size=size))
    proof = [bytes.fromhex(h) for h in body["proof"]]
    verify_inclusion(hashes[0], 0, size, proof, docs.early.root)


def test_consistency_proofs_verify(cluster: Cluster, docs: Docs) -> None:
    cp, _ = final_checkpoint(cluster, "police")
    hashes = [leaf_hash(leaf) for leaf in all_leaves(cluster, "police", cp.size)]
    # Between two signed checkpoints: the log only grew.
    body = ok_json(
        get(
            cluster,
            "justice",
            "/v1/proofs/consistency",
            first=docs.early.size,
            second=cp.size,
        )
    )
    assert (body["first"], body["second"]) == (docs.early.size, cp.size)
    proof = [bytes.fromhex(h) for h in body["proof"]]
    verify_consistency(docs.early.size, cp.size, proof, docs.early.root, cp.root)
    # And from every smaller size to the checkpoint.
    for first in range(1, cp.size + 1):
        body = ok_json(
            get(
                cluster, "health", "/v1/proofs/consistency", first=first, second=cp.size
            )
        )
        proof = [bytes.fromhex(h) for h in body["proof"]]
        verify_consistency(first, cp.size, proof, root_of(hashes[:first]), cp.root)


def test_blocks_chain_and_match_the_checkpoint(cluster: Cluster, docs: Docs) -> None:
    cp, _ = final_checkpoint(cluster, "police")
    listed = ok_json(get(cluster, "police", "/v1/blocks", start=1, limit=100, raw=True))
    assert listed["start"] == 1
    blocks = listed["blocks"]
    assert [b["height"] for b in blocks] == list(range(1, listed["height"] + 1))
    prev = cluster.trust.chain_id()
    leaves = all_leaves(cluster, "police", blocks[-1]["tree_size"])
    hashes = [leaf_hash(leaf) for leaf in leaves]
    for shown in blocks:
        block = decode_block(base64.b64decode(shown["raw"]))
        verify_body(block)
        header = block.header
        assert shown["hash"] == block_hash(header).hex()
        assert header.prev_hash == prev
        assert shown["prev_hash"] == prev.hex()
        assert header.log_root == root_of(hashes[: header.tree_size])
        assert shown["log_root"] == header.log_root.hex()
        assert shown["tree_size"] == header.tree_size
        assert shown["first_leaf"] == header.first_leaf
        assert shown["state_root"] == header.state_root.hex()
        for sub, data in zip(shown["submissions"], block.submissions, strict=True):
            assert sub["agency"] == decode_submission(data).agency
            assert sub["outcome"] == "ok" or re.fullmatch(r"[a-z_]+", sub["outcome"])
        prev = block_hash(header)
        # The single-block route says the same, without the raw bytes.
        one = ok_json(get(cluster, "justice", f"/v1/blocks/{header.height}"))
        assert one == {k: v for k, v in shown.items() if k != "raw"}
    at_cp = blocks[cp.height - 1]
    assert at_cp["hash"] == cp.block_hash.hex()
    assert (at_cp["tree_size"], at_cp["log_root"]) == (cp.size, cp.root.hex())
    assert at_cp["state_root"] == cp.state_root.hex()
    # Pages: start and limit select a window; past the tip is empty.
    page = ok_json(get(cluster, "health", "/v1/blocks", start=2, limit=2))
    assert [b["hash"] for b in page["blocks"]] == [b["hash"] for b in blocks[1:3]]
    beyond = ok_json(get(cluster, "health", "/v1/blocks", start=10_000, limit=5))
    assert beyond["blocks"] == []
    # The receipts name blocks that hold them.
    assert blocks[docs.revoke.height - 1]["hash"] == docs.revoke.block_hash.hex()


def _history(body: Any) -> list[tuple[int, int, str]]:
    return [(h["leaf_index"], h["block"], h["kind"]) for h in body["history"]]


@pytest.mark.parametrize("agency", AGENCIES)
def test_documents_valid_revoked_superseded(
    cluster: Cluster, docs: Docs, agency: str
) -> None:
    valid = ok_json(get(cluster, agency, f"/v1/documents/{docs.valid.doc_id.hex()}"))
    assert valid["doc_id"] == docs.valid.doc_id.hex()
    assert valid["status"] == "valid"
    assert (valid["issuer"], valid["doc_type"]) == ("police", "criminal_record")
    assert isinstance(valid["issued_at"], int)
    assert _history(valid) == [
        (docs.valid.leaf_index, docs.valid.block_height, "anchor")
    ]

    revoked = ok_json(
        get(cluster, agency, f"/v1/documents/{docs.revoked.doc_id.hex()}")
    )
    assert revoked["status"] == "revoked"
    assert revoked["reason"] == "issued_in_error"
    assert isinstance(revoked["revoked_at"], int)
    (receipt,) = docs.revoke.receipts
    assert _history(revoked) == [
        (docs.revoked.leaf_index, docs.revoked.block_height, "anchor"),
        (receipt.leaf_index, receipt.block_height, "revoke"),
    ]

    old = ok_json(get(cluster, agency, f"/v1/documents/{docs.old.doc_id.hex()}"))
    assert old["status"] == "superseded"
    assert old["superseded_by"] == docs.new.doc_id.hex()
    anchor, change = docs.supersede.receipts
    assert (anchor.kind, change.kind) == ("anchor", "supersede")
    assert _history(old) == [
        (docs.old.leaf_index, docs.old.block_height, "anchor"),
        (change.leaf_index, change.block_height, "supersede"),
    ]
    new = ok_json(get(cluster, agency, f"/v1/documents/{docs.new.doc_id.hex()}"))
    assert new["status"] == "valid"
    assert _history(new) == [
        (anchor.leaf_index, anchor.block_height, "anchor"),
        (change.leaf_index, change.block_height, "supersede"),
    ]
    # Each answer names the block it is as of: at least every change shown.
    for body in (valid, revoked, old, new):
        assert body["as_of_block"] >= max(block for _, block, _ in _history(body))


@pytest.mark.parametrize("agency", AGENCIES)
def test_every_bundle_verifies_offline(
    cluster: Cluster, docs: Docs, agency: str
) -> None:
    # Only the genesis trust list, as an integrator holds it: no node's word.
    trust = TrustList.load(cluster.dir / "genesis.json")
    cases = [
        (docs.valid, VALID_PDF, "valid"),
        (docs.revoked, REVOKED_PDF, "revoked"),
        (docs.old, OLD_PDF, "superseded"),
        (docs.new, NEW_PDF, "valid"),
    ]
    for receipt, pdf, status in cases:
        bundle = ok_json(
            get(cluster, agency, f"/v1/documents/{receipt.doc_id.hex()}/bundle")
        )
        verdict = verify_bundle(
            bundle, trust, document=pdf.read_bytes(), salt=receipt.salt
        )
        assert verdict.status == status
        assert verdict.doc_id == receipt.doc_id
        assert verdict.issuer == receipt.issuer
        # The file check is part of it: another file is caught.
        with pytest.raises(VerificationError) as caught:
            verify_bundle(bundle, trust, document=b"%PDF-1.7 other", salt=receipt.salt)
        assert caught.value.reason == "tampered"
    old = verify_bundle(
        ok_json(get(cluster, agency, f"/v1/documents/{docs.old.doc_id.hex()}/bundle")),
        trust,
    )
    assert old.superseded_by == docs.new.doc_id
    revoked = verify_bundle(
        ok_json(
            get(cluster, agency, f"/v1/documents/{docs.revoked.doc_id.hex()}/bundle")
        ),
        trust,
    )
    assert revoked.reason == "issued_in_error"
    # Absence is proved too.
    missing = ok_json(
        get(cluster, agency, f"/v1/documents/{docs.unknown.hex()}/bundle")
    )
    assert verify_bundle(missing, trust).status == "not_found"


def _qr_version(modules_with_border: int) -> int:
    modules = modules_with_border - 2 * QR_BORDER
    assert (modules - 17) % 4 == 0, modules
    return (modules - 17) // 4


@pytest.mark.parametrize("agency", AGENCIES)
def test_qr_codes_carry_the_exact_verify_url(
    cluster: Cluster, docs: Docs, agency: str
) -> None:
    doc = docs.valid
    base = f"/v1/documents/{doc.doc_id.hex()}"
    url = qr_url(cluster.url(agency), doc.doc_id, doc.salt)
    assert url == f"{cluster.url(agency)}/v/{doc.doc_id.hex()}#{doc.salt.hex()}"
    png = get(cluster, agency, f"{base}/qr.png", salt=doc.salt.hex())
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG"
    decoded = pyzbar.decode(image)
    assert [(d.type, d.data.decode("ascii")) for d in decoded] == [("QRCODE", url)]
    assert image.size[0] % QR_SCALE == 0
    assert _qr_version(image.size[0] // QR_SCALE) <= MAX_QR_VERSION
    # The receipt the agency got has the same link (from the node it used).
    assert docs.valid.verify_url == qr_url(cluster.url("police"), doc.doc_id, doc.salt)
    # Without a salt the code opens the status page only.
    bare = get(cluster, agency, f"{base}/qr.png")
    decoded = pyzbar.decode(Image.open(io.BytesIO(bare.content)))
    assert [d.data.decode() for d in decoded] == [url.split("#")[0]]

    svg = get(cluster, agency, f"{base}/qr.svg", salt=doc.salt.hex())
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width = int(float(root.attrib["width"]))
    assert width == int(float(root.attrib["height"]))
    assert _qr_version(width // QR_SCALE) <= MAX_QR_VERSION


@pytest.mark.parametrize("agency", AGENCIES)
def test_verify_page_route(cluster: Cluster, docs: Docs, agency: str) -> None:
    cases = {
        docs.valid.doc_id.hex(): "valid",
        docs.revoked.doc_id.hex(): "revoked",
        docs.old.doc_id.hex(): "superseded",
        docs.unknown.hex(): "not_found",
        "not-a-doc-id": "malformed",
    }
    for doc, status in cases.items():
        for lang in ("vi", "en"):
            page = get(cluster, agency, f"/v/{doc}", lang=lang)
            assert page.status_code == {"not_found": 404, "malformed": 400}.get(
                status, 200
            )
            assert page.headers["content-type"].startswith("text/html")
            assert "connect-src 'none'" in page.headers["content-security-policy"]
            assert f'<html lang="{lang}">' in page.text
            assert f'data-status="{status}"' in page.text
    # Vietnamese by default.
    page = get(cluster, agency, f"/v/{docs.valid.doc_id.hex()}")
    assert '<html lang="vi">' in page.text
    assert 'id="file-check"' in page.text


@pytest.mark.parametrize("agency", AGENCIES)
def test_healthz_and_cluster(cluster: Cluster, agency: str) -> None:
    health = ok_json(get(cluster, agency, "/healthz"))
    assert health["status"] == "ok"
    assert health["agency"] == agency
    info = ok_json(get(cluster, agency, "/v1/cluster"))
    assert info["agency"] == agency
    leader = cluster.wait_leader()
    assert info["leader"] == leader
    assert info["role"] == ("leader" if agency == leader else "follower")
    assert info["leader_url"] == cluster.url(leader)
    assert isinstance(info["term"], int) and info["term"] >= 1
    assert 0 <= info["applied_index"] <= info["commit_index"]
    assert info["height"] >= 1 and info["tree_size"] >= 1
    members = {m["id"]: m for m in info["members"]}
    assert set(members) == set(AGENCIES)
    for member_id, member in members.items():
        assert member["voter"] is True
        assert member["api_url"] == cluster.url(member_id)


DESIGN_ROUTES: Final = (
    ("get", "/v1/trust"),
    ("get", "/v1/checkpoint"),
    ("get", "/v1/proofs/inclusion"),
    ("get", "/v1/proofs/consistency"),
    ("get", "/v1/leaves"),
    ("get", "/v1/blocks"),
    ("get", "/v1/blocks/{height}"),
    ("get", "/v1/documents/{doc_id}"),
    ("get", "/v1/documents/{doc_id}/bundle"),
    ("get", "/v1/documents/{doc_id}/qr.png"),
    ("get", "/v1/documents/{doc_id}/qr.svg"),
    ("get", "/v1/cluster"),
    ("post", "/v1/submissions"),
)


@pytest.mark.parametrize("agency", AGENCIES)
def test_openapi_document_and_docs_page(cluster: Cluster, agency: str) -> None:
    schema = ok_json(get(cluster, agency, "/openapi.json"))
    assert schema["openapi"].startswith("3.")
    for method, path in DESIGN_ROUTES:
        assert method in schema["paths"].get(path, {}), (method, path)
    page = get(cluster, agency, "/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text


LEDGER_SERIES: Final = (
    "ledger_submissions_total",
    "ledger_entries_total",
    "ledger_commit_latency_seconds",
    "ledger_apply_lag",
    "ledger_checkpoint_age_seconds",
    "ledger_tree_size",
    "ledger_height",
)
RAFT_SERIES: Final = (
    "raft_term",
    "raft_role",
    "raft_commit_index",
    "raft_applied_index",
)


@pytest.mark.parametrize("agency", AGENCIES)
def test_metrics_are_prometheus_text(cluster: Cluster, docs: Docs, agency: str) -> None:
    # The gauges are refreshed once a second.
    cluster.wait_converged(AGENCIES)
    height = int(cluster.cluster_info(agency)["height"])

    def scraped() -> dict[str, float]:
        response = get(cluster, agency, "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    cluster.wait_until(
        "ledger_height gauge", lambda: scraped().get("ledger_height{}") == height
    )
    samples = scraped()
    names = {key.split("{")[0] for key in samples}
    for series in (*LEDGER_SERIES, *RAFT_SERIES):
        assert any(n == series or n.startswith(series + "_") for n in names), series
    assert samples["ledger_entries_total{kind=anchor}"] >= 4
    assert samples["ledger_entries_total{kind=revoke}"] >= 1
    assert samples["ledger_entries_total{kind=supersede}"] >= 1
    assert samples["ledger_submissions_total{outcome=ok}"] >= 4
    role = "leader" if cluster.wait_leader() == agency else "follower"
    assert samples[f"raft_role{{raft_role={role}}}"] == 1
    assert samples["raft_applied_index{}"] <= samples["raft_commit_index{}"]
    assert any(n.startswith("http_request") for n in names)


# --- submissions ------------------------------------------------------------------


def _leader_and_follower(cluster: Cluster) -> tuple[str, str]:
    leader = cluster.wait_leader()
    follower = next(a for a in ("police", "justice", "health") if a != leader)
    return leader, follower


def _check_accepted(
    cluster: Cluster, answer: httpx.Response, doc_ids: list[bytes], *, final: bool
) -> Any:
    body = ok_json(answer)
    assert body["status"] == "accepted"
    receipts = body["receipts"]
    assert [r["doc_id"] for r in receipts] == [d.hex() for d in doc_ids]
    assert [r["leaf_index"] for r in receipts] == [
        body["first_leaf"] + i for i in range(len(doc_ids))
    ]
    assert {r["block_height"] for r in receipts} == {body["height"]}
    assert {r["kind"] for r in receipts} == {"anchor"}
    if final:
        cp = _verified(cluster.trust, body["checkpoint"])
        assert cp.height >= body["height"]
        assert cp.size >= body["first_leaf"] + len(doc_ids)
    else:
        assert body["checkpoint"] is None
    return body


def test_submit_msgpack_wait_final(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    raw, doc_ids = cluster.anchors("police", 3)
    answer = cluster.post_submission(leader, raw, wait="final")
    body = _check_accepted(cluster, answer, doc_ids, final=True)
    block = ok_json(get(cluster, leader, f"/v1/blocks/{body['height']}"))
    assert block["hash"] == body["block_hash"]
    # The checkpoint note covers the block, so a bundle is ready at once.
    trust = cluster.trust
    for doc_id in doc_ids:
        bundle = ok_json(get(cluster, leader, f"/v1/documents/{doc_id.hex()}/bundle"))
        assert verify_bundle(bundle, trust).status == "valid"


def _json_body(sub: Submission) -> dict[str, object]:
    return {
        "agency": sub.agency,
        "key_id": sub.key_id.hex(),
        "nonce": sub.nonce.hex(),
        "timestamp": sub.timestamp_ms,
        "entries": [base64.b64encode(e).decode() for e in sub.entries],
        "signature": sub.signature.hex(),
    }


def test_submit_json_body(cluster: Cluster) -> None:
    raw, doc_ids = cluster.anchors("justice", 2, doc_type="birth_registration")
    answer = cluster.http.post(
        f"{cluster.url('justice')}/v1/submissions",
        json=_json_body(decode_submission(raw)),
    )
    body = _check_accepted(cluster, answer, doc_ids, final=False)
    cluster.wait_height("health", body["height"])
    for doc_id in doc_ids:
        shown = ok_json(get(cluster, "health", f"/v1/documents/{doc_id.hex()}"))
        assert shown["status"] == "valid"
        assert shown["doc_type"] == "birth_registration"


@pytest.mark.parametrize("wait", ["applied", "final"])
def test_follower_forwards_to_the_leader(cluster: Cluster, wait: str) -> None:
    leader, follower = _leader_and_follower(cluster)
    raw, doc_ids = cluster.anchors("police", 1)
    answer = cluster.post_submission(follower, raw, wait=wait)
    body = _check_accepted(cluster, answer, doc_ids, final=wait == "final")
    cluster.wait_height(follower, body["height"])
    block = ok_json(get(cluster, follower, f"/v1/blocks/{body['height']}"))
    assert block["hash"] == body["block_hash"]
    assert cluster.has_document(leader, doc_ids[0])
    assert cluster.has_document(follower, doc_ids[0])


# --- every problem type --------------------------------------------------------


# Types no request can trigger on a healthy cluster, and why.
UNREACHABLE: Final = {
    "bad-request": "every 400 the routes answer has a type of its own",
    "not-leader": "a follower forwards writes to the leader instead",
    "timeout": "only a commit slower than submit_timeout_ms (10 s) answers it",
    "internal-error": "only a bug answers it",
}


def _problem(response: httpx.Response, slug: str) -> dict[str, Any]:
    ptype = PROBLEM_TYPES[slug]
    assert response.status_code == ptype.status, response.text
    assert response.headers["content-type"].split(";")[0] == MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["title"] == ptype.title
    assert body["status"] == ptype.status
    return body


def _post(
    cluster: Cluster, agency: str, content: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return cluster.http.post(
        f"{cluster.url(agency)}/v1/submissions", content=content, headers=headers
    )


def _forged(cluster: Cluster, agency: str) -> bytes:
    """A submission of one anchor whose signature does not hold."""
    raw, _ = cluster.anchors(agency, 1)
    sub = decode_submission(raw)
    flipped = bytes([sub.signature[0] ^ 1]) + sub.signature[1:]
    return encode_submission(replace(sub, signature=flipped))


def _anchor_entry(agency: str, doc_type: str = "criminal_record") -> bytes:
    anchor = Anchor(
        issuer=agency, doc_id=os.urandom(32), doc_type=doc_type, issued_at=now_ms()
    )
    return encode_entry(anchor)


Trigger = Callable[[Cluster, Docs], httpx.Response]
# name -> (problem slug, the request that must answer it)
TRIGGERS: dict[str, tuple[str, Trigger]] = {}


def trigger(name: str, slug: str) -> Callable[[Trigger], Trigger]:
    def register(fn: Trigger) -> Trigger:
        assert name not in TRIGGERS
        TRIGGERS[name] = (slug, fn)
        return fn

    return register


@trigger("upper-case doc id", "invalid-hex")
def _hex_upper(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", f"/v1/documents/{d.valid.doc_id.hex().upper()}")


@trigger("short doc id in bundle", "invalid-hex")
def _hex_short(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "justice", f"/v1/documents/{'ab' * 31}/bundle")


@trigger("non-hex doc id in qr", "invalid-hex")
def _hex_qr(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "health", f"/v1/documents/{'zz' * 32}/qr.png")


@trigger("leaves reversed", "invalid-range")
def _range_leaves(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", "/v1/leaves", start=3, end=1)


@trigger("leaves past the log", "invalid-range")
def _range_past(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", "/v1/leaves", start=0, end=999)


@trigger("more than 1,000 leaves", "invalid-range")
def _range_many(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", "/v1/leaves", start=0, end=1001)


@trigger("inclusion index == size", "invalid-range")
def _range_index(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "justice", "/v1/proofs/inclusion", index=2, size=2)


@trigger("inclusion size past the log", "invalid-range")
def _range_size(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "justice", "/v1/proofs/inclusion", index=0, size=10**9)


@trigger("consistency from 0", "invalid-range")
def _range_zero(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "health", "/v1/proofs/consistency", first=0, second=1)


@trigger("consistency reversed", "invalid-range")
def _range_reversed(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "health", "/v1/proofs/consistency", first=3, second=2)


@trigger("unknown document", "document-not-found")
def _unknown_doc(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", f"/v1/documents/{d.unknown.hex()}")


@trigger("block past the tip", "block-not-found")
def _block_past(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "justice", "/v1/blocks/1000000")


@trigger("block at height 0", "block-not-found")
def _block_zero(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "justice", "/v1/blocks/0")


@trigger("unknown route", "not-found")
def _unknown_route(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "health", "/v2/documents")


@trigger("DELETE the trust list", "method-not-allowed")
def _delete_trust(c: Cluster, d: Docs) -> httpx.Response:
    response = c.http.delete(f"{c.url('police')}/v1/trust")
    assert response.headers["allow"] == "GET"
    return response


@trigger("GET submissions", "method-not-allowed")
def _get_submissions(c: Cluster, d: Docs) -> httpx.Response:
    response = get(c, "police", "/v1/submissions")
    assert response.headers["allow"] == "POST"
    return response


@trigger("non-numeric index", "validation-error")
def _index_word(c: Cluster, d: Docs) -> httpx.Response:
    response = get(c, "police", "/v1/proofs/inclusion", index="one", size=2)
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "index"]]
    return response


@trigger("negative start", "validation-error")
def _negative_start(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", "/v1/leaves", start=-1, end=2)


@trigger("limit over 100", "validation-error")
def _limit_over(c: Cluster, d: Docs) -> httpx.Response:
    return get(c, "police", "/v1/blocks", start=1, limit=101)


@trigger("bad salt for a QR", "validation-error")
def _bad_salt(c: Cluster, d: Docs) -> httpx.Response:
    path = f"/v1/documents/{d.valid.doc_id.hex()}/qr.svg"
    return get(c, "justice", path, salt="00")


@trigger("unknown wait", "validation-error")
def _unknown_wait(c: Cluster, d: Docs) -> httpx.Response:
    raw, _ = c.anchors("police", 1)
    return c.post_submission("police", raw, wait="forever")


@trigger("text/plain body", "unsupported-media-type")
def _text_plain(c: Cluster, d: Docs) -> httpx.Response:
    raw, _ = c.anchors("police", 1)
    return _post(c, "police", raw, {"content-type": "text/plain"})


@trigger("no content type", "unsupported-media-type")
def _no_type(c: Cluster, d: Docs) -> httpx.Response:
    return _post(c, "justice", b"\x80")


@trigger("not msgpack", "malformed")
def _not_msgpack(c: Cluster, d: Docs) -> httpx.Response:
    return _post(c, "police", b"\xc1garbage", MSGPACK)


@trigger("JSON body with bad hex", "malformed")
def _json_bad_hex(c: Cluster, d: Docs) -> httpx.Response:
    raw, _ = c.anchors("police", 1)
    body = _json_body(decode_submission(raw))
    body["nonce"] = "xyz"
    return c.http.post(f"{c.url('police')}/v1/submissions", json=body)


@trigger("body over the limit, length declared", "payload-too-large")
def _large_declared(c: Cluster, d: Docs) -> httpx.Response:
    return _post(c, "police", b"\0" * (MAX_BODY_BYTES + 1), MSGPACK)


@trigger("body over the limit, chunked", "payload-too-large")
def _large_chunked(c: Cluster, d: Docs) -> httpx.Response:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"\0" * 65536

    return _post(c, "health", chunks(), MSGPACK)


@trigger("10,001 entries", "too-many-entries")
def _too_many(c: Cluster, d: Docs) -> httpx.Response:
    entries = [_anchor_entry("police") for _ in range(MAX_ENTRIES + 1)]
    raw = c.sign("police", entries)
    assert len(raw) < MAX_BODY_BYTES
    response = c.post_submission("justice", raw)
    assert response.json()["reason"] == "too_many_entries"
    return response


@trigger("signature does not hold", "bad-signature")
def _bad_signature(c: Cluster, d: Docs) -> httpx.Response:
    response = c.post_submission("justice", _forged(c, "justice"))
    assert response.json()["reason"] == "bad_signature"
    return response


@trigger("the same submission twice", "replay")
def _replay(c: Cluster, d: Docs) -> httpx.Response:
    raw, _ = c.anchors("police", 1)
    assert c.post_submission("police", raw).status_code == 200
    response = c.post_submission("justice", raw)
    assert response.json()["reason"] == "replay"
    return response


@trigger("timestamp out of the window", "replay")
def _stale_timestamp(c: Cluster, d: Docs) -> httpx.Response:
    sub = sign_submission(
        c.trust.origin,
        "police",
        [_anchor_entry("police")],
        c.issuer_key("police"),
        timestamp_ms=now_ms() - 2 * TIMESTAMP_WINDOW_MS,
    )
    response = c.post_submission("police", encode_submission(sub))
    assert response.json()["reason"] == "timestamp_window"
    return response


@trigger("revoking another agency's document", "invalid-submission")
def _not_owner(c: Cluster, d: Docs) -> httpx.Response:
    revoke = Revoke(
        issuer="justice", doc_id=d.valid.doc_id, reason="withdrawn", at=now_ms()
    )
    response = c.post_submission("health", c.sign("justice", [encode_entry(revoke)]))
    body = response.json()
    assert (body["reason"], body["entry"]) == ("not_owner", 0)
    # Refused whole: the document is still valid on every node.
    height = int(c.cluster_info(c.wait_leader())["height"])
    for agency in AGENCIES:
        c.wait_height(agency, height)
        assert c.has_document(agency, d.valid.doc_id)
    return response


@trigger("a forwarded write reaches a follower", "unavailable")
def _forwarded_twice(c: Cluster, d: Docs) -> httpx.Response:
    # What a forwarding loop would meet: a node never forwards twice.
    _, follower = _leader_and_follower(c)
    raw, _ = c.anchors("police", 1)
    response = _post(c, follower, raw, {**MSGPACK, "x-ledger-forwarded": "police"})
    assert response.headers["retry-after"] == "1"
    return response


@trigger("one agency, many requests at once", "rate-limited")
def _rate_limited(c: Cluster, d: Docs) -> httpx.Response:
    # Fresh, validly signed submissions, as fast as they go: only those the
    # ledger could apply are charged (a forgery or a replay is refused
    # first). Sent to the leader, so no request costs a forwarding hop,
    # until one is limited: how many that takes depends on how fast this
    # machine serves them, since the bucket refills while they run.
    leader, follower = _leader_and_follower(c)
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    limited = threading.Event()
    stop = threading.Event()
    deadline = time.monotonic() + RATE_LIMIT_TIMEOUT_S

    def hammer() -> None:
        # Keeps going after the first 429, so the leader's bucket stays empty.
        with httpx.Client(timeout=PAGE_TIMEOUT) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                got = _post_with(client, c.url(leader), c.anchors("health", 1)[0])
                with lock:
                    answers.append(got)
                if got.status_code == 429:
                    limited.set()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert limited.wait(RATE_LIMIT_TIMEOUT_S), f"{len(answers)} sent, none limited"
        # The follower's own bucket is full: its 429 is the leader's, relayed.
        with httpx.Client(timeout=PAGE_TIMEOUT) as client:
            relayed = [
                _post_with(client, c.url(follower), c.anchors("health", 1)[0])
                for _ in range(5)
            ]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with lock:
        codes = {a.status_code for a in answers}
        refused = [a for a in answers if a.status_code == 429]
        passed = len(answers) - len(refused)
    assert codes <= {200, 409, 429}, codes
    assert int(refused[0].headers["retry-after"]) >= 1
    # Not before the burst (twice the rate) was spent.
    assert passed >= 2 * RATE_PER_AGENCY
    relayed_429 = [a for a in relayed if a.status_code == 429]
    assert relayed_429, [a.status_code for a in relayed]
    _problem(relayed_429[0], "rate-limited")
    assert int(relayed_429[0].headers["retry-after"]) >= 1
    return refused[0]


def test_replays_do_not_spend_the_agency_quota(cluster: Cluster) -> None:
    """Every applied submission can be read back from /v1/blocks; posting
    one again many times is a replay each time (409), never a 429 that
    would lock the agency out of its own rate."""
    leader, _ = _leader_and_follower(cluster)
    body, _ = cluster.anchors("justice", 1)
    assert _post(cluster, leader, body, MSGPACK).status_code == 200
    with httpx.Client(timeout=PAGE_TIMEOUT) as client:
        codes = [
            _post_with(client, cluster.url(leader), body).status_code
            for _ in range(4 * RATE_PER_AGENCY)
        ]
    assert set(codes) == {409}, codes
    fresh, _ = cluster.anchors("justice", 1)
    assert _post(cluster, leader, fresh, MSGPACK).status_code == 200


def _post_with(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(f"{url}/v1/submissions", content=body, headers=MSGPACK)


@pytest.mark.parametrize("name", list(TRIGGERS))
def test_problem_types(cluster: Cluster, docs: Docs, name: str) -> None:
    slug, send = TRIGGERS[name]
    body = _problem(send(cluster, docs), slug)
    assert isinstance(body.get("detail", ""), str)


def test_every_problem_type_has_a_trigger() -> None:
    triggered = {slug for slug, _ in TRIGGERS.values()}
    assert triggered | set(UNREACHABLE) == set(PROBLEM_TYPES)
    assert not triggered & set(UNREACHABLE)


def test_registry_record_is_not_a_document(cluster: Cluster) -> None:
    """Regression: a registry record's key answered /bundle with 503."""
    record = Record(
        issuer="justice",
        registry="patients",
        record_id=b"p-0001",
        version=1,
        digest=os.urandom(32),
    )
    raw = cluster.sign("justice", [encode_entry(record)])
    answer = cluster.post_submission("health", raw, wait="final")
    assert answer.status_code == 200, answer.text
    key = record_key("patients", b"p-0001").hex()
    for path in (f"/v1/documents/{key}", f"/v1/documents/{key}/bundle"):
        _problem(get(cluster, "justice", path), "document-not-found")
    page = get(cluster, "justice", f"/v/{key}")
    assert 'data-status="not_found"' in page.text


def test_ids_match_the_files(docs: Docs) -> None:
    # The receipts are what the verify page and the QR codes rely on.
    for receipt, pdf in (
        (docs.valid, VALID_PDF),
        (docs.revoked, REVOKED_PDF),
        (docs.old, OLD_PDF),
        (docs.new, NEW_PDF),
    ):
        assert receipt.file_sha256 == hash_file(pdf)
        assert derive_doc_id(receipt.salt, receipt.file_sha256) == receipt.doc_id


def test_forged_submissions_spend_no_agency_quota(cluster: Cluster) -> None:
    # Anyone can name an agency in a submission; only its issuer keys can
    # sign one. Far more forged requests than the burst allows are all
    # refused for their signature, and none is rate limited.
    leader, _ = _leader_and_follower(cluster)
    body = _forged(cluster, "police")
    with httpx.Client(timeout=PAGE_TIMEOUT) as client:
        codes = [
            _post_with(client, cluster.url(leader), body).status_code
            for _ in range(4 * RATE_PER_AGENCY)
        ]
    assert set(codes) == {403}, codes
