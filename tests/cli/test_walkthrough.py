"""The README's five-minute walk-through, on real node processes.

Every step is the `ledger` command a new user types (run as a subprocess),
against a 3-agency cluster of real nodes on loopback: anchor, scan the QR,
verify online and offline, revoke, supersede, audit and status. Each
verification is checked by its documented exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.node.harness import ROOT, Cluster, running_cluster

VALID, REVOKED, SUPERSEDED, NOT_FOUND, TAMPERED, UNKNOWN_ISSUER = 0, 10, 11, 14, 20, 21


def ledger(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=timeout,
        check=False,
    )


def ok(*args: str | Path) -> str:
    done = ledger(*args)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("walkthrough")) as c:
        yield c


def _document(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def _anchor(cluster: Cluster, tmp: Path, doc: Path, *extra: str) -> dict[str, str]:
    out = tmp / "receipts"
    ok(
        "anchor",
        "--node",
        cluster.url("justice"),  # a follower or the leader: either forwards
        "--key",
        cluster.dir / "police" / "issuer.key",
        "--type",
        "criminal_record",
        "--out",
        out,
        "--wait",
        "final",
        *extra,
        doc,
    )
    receipt: dict[str, str] = json.loads(
        (out / f"{doc.name}.receipt.json").read_text(encoding="utf-8")
    )
    assert (out / f"{doc.name}.qr.png").is_file()
    return receipt


def test_anchor_scan_verify_revoke_audit(cluster: Cluster, tmp_path: Path) -> None:
    genesis = cluster.dir / "genesis.json"
    doc = _document(tmp_path, "certificate.pdf", "Phiếu lý lịch tư pháp số 1\n")
    receipt = _anchor(cluster, tmp_path, doc)
    receipts = tmp_path / "receipts"
    qr = receipts / "certificate.pdf.qr.png"

    # Scan: the QR holds the node URL, the doc id and (in the fragment) the salt.
    assert ledger("verify", "--qr", qr, doc).returncode == VALID
    assert ledger("verify", "--qr", qr).returncode == VALID
    # Online with the receipt, and with a file that is not the one anchored.
    node = cluster.url("health")
    rec = receipts / "certificate.pdf.receipt.json"
    assert ledger("verify", "--node", node, "--receipt", rec, doc).returncode == VALID
    forged = _document(tmp_path, "forged.pdf", "Phiếu lý lịch tư pháp số 2\n")
    assert ledger("verify", "--node", node, "--receipt", rec, forged).returncode == (
        TAMPERED
    )

    # Offline: the bundle and the pinned trust list, no node.
    bundle = tmp_path / "bundle.json"
    bundle.write_text(ok("proof", "--node", node, receipt["doc_id"]), encoding="utf-8")
    offline = ledger("verify", "--trust", genesis, "--bundle", bundle)
    assert offline.returncode == VALID, offline.stdout + offline.stderr
    # The same bundle against another cluster's trust list: unknown issuer.
    other = Cluster(tmp_path / "other", ("police", "justice", "health"))
    foreign = ledger(
        "verify", "--trust", other.dir / "genesis.json", "--bundle", bundle
    )
    assert foreign.returncode in (TAMPERED, UNKNOWN_ISSUER)

    # Revoke, then every way of verifying says so.
    ok(
        "revoke",
        "--node",
        cluster.url("police"),
        "--key",
        cluster.dir / "police" / "issuer.key",
        receipt["doc_id"],
        "--reason",
        "issued_in_error",
    )
    assert ledger("verify", "--qr", qr, doc).returncode == REVOKED
    assert ledger("verify", "--node", node, "--receipt", rec, doc).returncode == REVOKED

    # An unknown document.
    unknown = "ab" * 32
    bundle.write_text(ok("proof", "--node", node, unknown), encoding="utf-8")
    assert ledger("verify", "--trust", genesis, "--bundle", bundle).returncode == (
        NOT_FOUND
    )

    # Audit from a follower, keeping the checkpoint; a second audit checks the
    # new checkpoint is consistent with the kept one.
    keep = tmp_path / "audit.json"
    ok("audit", "--node", cluster.url("justice"), "--trust", genesis, "--keep", keep)
    assert keep.is_file()
    ok("audit", "--node", cluster.url("health"), "--trust", genesis, "--keep", keep)
    status = ok("status", "--node", cluster.url("police"))
    assert "police" in status and "justice" in status and "health" in status


def test_supersede_points_to_the_new_document(cluster: Cluster, tmp_path: Path) -> None:
    old = _document(tmp_path, "birth.pdf", "Giấy khai sinh: Trần Minh Khôi\n")
    receipt = _anchor(cluster, tmp_path, old)
    new = _document(tmp_path, "birth-amended.pdf", "Giấy khai sinh (cấp lại)\n")
    ok(
        "supersede",
        "--node",
        cluster.url("police"),
        "--key",
        cluster.dir / "police" / "issuer.key",
        receipt["doc_id"],
        new,
        "--type",
        "criminal_record",
        "--out",
        tmp_path / "receipts",
    )
    assert (tmp_path / "receipts" / "birth-amended.pdf.receipt.json").is_file()
    qr = tmp_path / "receipts" / "birth.pdf.qr.png"
    done = ledger("verify", "--qr", qr, old, "--json")
    assert done.returncode == SUPERSEDED, done.stdout + done.stderr


def test_governance_grants_a_document_type_with_a_majority(
    cluster: Cluster, tmp_path: Path
) -> None:
    # An agency may anchor only the types granted to it: first refused...
    doc = _document(tmp_path, "land.pdf", "Giấy chứng nhận quyền sử dụng đất\n")
    key = cluster.dir / "health" / "issuer.key"

    def anchor_land() -> subprocess.CompletedProcess[str]:
        return ledger(
            "anchor", "--node", cluster.url("health"), "--key", key,
            "--type", "land_survey", "--out", tmp_path / "receipts", doc,
        )  # fmt: skip

    assert anchor_land().returncode != 0

    # ...then proposed, approved by two of three agencies, submitted...
    params = tmp_path / "params.json"
    params.write_text(
        json.dumps({"id": "health", "doc_types": ["land_survey"]}), encoding="utf-8"
    )
    proposal = tmp_path / "proposal.json"
    node = cluster.url("justice")
    ok("governance", "propose", "--node", node, "grant_doc_types",
       "--params", params, "--out", proposal)  # fmt: skip
    # An approval made with the wrong key (police's issuer key, not its
    # admin key) is named and refused before it costs a round of consensus.
    ok("governance", "approve", proposal,
       "--key", cluster.dir / "police" / "issuer.key")  # fmt: skip
    ok("governance", "approve", proposal,
       "--key", cluster.dir / "justice" / "admin.key")  # fmt: skip
    refused = ledger("governance", "submit", proposal, "--node", node, "--key", key)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "police (not signed with its admin key)" in refused.stderr
    for agency in ("police", "justice"):
        ok("governance", "approve", proposal,
           "--key", cluster.dir / agency / "admin.key")  # fmt: skip
    # One agency twice still counts once: a second approval by police adds
    # nothing, and two of three is the quorum.
    ok("governance", "approve", proposal, "--key", cluster.dir / "police" / "admin.key")
    approvals = json.loads(proposal.read_text(encoding="utf-8"))["approvals"]
    assert sorted(a["agency"] for a in approvals) == ["justice", "police"]
    ok("governance", "submit", proposal, "--node", node, "--key", key)

    # ...and in force: the trust list says so, and the anchor goes through.
    trust = httpx.get(f"{cluster.url('police')}/v1/trust", timeout=10).json()
    assert trust["version"] == 2
    health = next(a for a in trust["agencies"] if a["id"] == "health")
    assert "land_survey" in health["doc_types"]
    done = anchor_land()
    assert done.returncode == 0, done.stdout + done.stderr
