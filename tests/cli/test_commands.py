"""The write, proof, audit and status commands end to end, over a fake node."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pyzbar import pyzbar
from rich.console import Console
from typer.testing import CliRunner

import cli.common
import cli.documents
import cli.writes
import tests.cli.fakenode
from cli import render
from cli.client import LedgerClient
from cli.main import app
from cli.sources import store_document
from ledger.bundle_binary import decode_bundle, is_binary_bundle
from ledger.entries import derive_doc_id
from ledger.keys import SigningKey
from ledger.store import LedgerStore
from ledger.trust import TrustList
from tests.cli.chain import LocalChain
from tests.cli.fakenode import NODE, FakeNode, problem


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNode]:
    chain = LocalChain.create(tmp_path / "store")
    fake = FakeNode(chain)
    transport = fake.transport()

    def make_client(url: str, *, timeout: float, retries: int = 6) -> LedgerClient:
        return LedgerClient(url, transport=transport, retries=retries)

    monkeypatch.setattr(cli.common, "make_client", make_client)
    # Wide consoles, so tables are not folded in the captured output.
    monkeypatch.setattr(render, "out", Console(width=250, highlight=False))
    monkeypatch.setattr(render, "err", Console(width=250, stderr=True))
    for agency, keys in chain.keys.items():
        (tmp_path / "cluster" / agency).mkdir(parents=True)
        keys.issuer.save(tmp_path / "cluster" / agency / "issuer.key")
    chain.trust.save(tmp_path / "cluster" / "genesis.json")
    yield fake
    chain.close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), terminal_width=250)
    return result.exit_code, result.output


def key(tmp_path: Path, agency: str) -> str:
    return str(tmp_path / "cluster" / agency / "issuer.key")


def _anchor_args(
    tmp_path: Path,
    out: Path,
    *files: Path,
    agency: str = "police",
    doc_type: str = "criminal_record",
) -> list[str]:
    return [
        "anchor",
        "--node",
        NODE,
        "--key",
        key(tmp_path, agency),
        "--type",
        doc_type,
        "--out",
        str(out),
        *map(str, files),
    ]


def anchor(
    tmp_path: Path, agency: str, *files: Path, doc_type: str
) -> list[dict[str, str]]:
    out = tmp_path / "receipts"
    args = _anchor_args(tmp_path, out, *files, agency=agency, doc_type=doc_type)
    code, output = run(*args)
    assert code == 0, output
    return [json.loads((out / f"{f.name}.receipt.json").read_text()) for f in files]


def test_anchor_writes_receipts_and_qr_codes(node: FakeNode, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.pdf", "b.pdf"):
        (docs / name).write_bytes(name.encode() * 10)
    (docs / ".hidden").write_bytes(b"skip me")
    receipts = anchor(
        tmp_path, "police", docs / "a.pdf", docs / "b.pdf", doc_type="criminal_record"
    )
    for receipt, name in zip(receipts, ("a.pdf", "b.pdf"), strict=True):
        assert set(receipt) == {
            "doc_id",
            "salt",
            "file_sha256",
            "file_name",
            "doc_type",
            "issuer",
            "leaf_index",
            "block_height",
            "verify_url",
        }
        assert receipt["issuer"] == "police"
        assert (
            receipt["verify_url"] == f"{NODE}/v/{receipt['doc_id']}#{receipt['salt']}"
        )
        image = Image.open(tmp_path / "receipts" / f"{name}.qr.png")
        assert [d.data.decode() for d in pyzbar.decode(image)] == [
            receipt["verify_url"]
        ]

    # A folder: every file in it but hidden ones and our own outputs.
    code, output = run(*_anchor_args(tmp_path, docs, docs))
    assert code == 0, output
    assert len(node.submissions) == 2
    code, output = run(
        "anchor",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "police"),
        "--type",
        "criminal_record",
        "--out",
        str(docs),
        str(docs),
    )
    assert code == 0
    # The receipts and QR images in the folder are not anchored themselves,
    # and the first run's receipts (the only copies of their salts) are kept.
    assert sorted(p.name for p in docs.glob("*.receipt.json")) == [
        "a.pdf-2.receipt.json",
        "a.pdf.receipt.json",
        "b.pdf-2.receipt.json",
        "b.pdf.receipt.json",
    ]


def test_a_dry_run_lists_what_a_folder_would_anchor_and_sends_nothing(
    node: FakeNode, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    long = "a-rather-long-name-for-a-scanned-certificate-" * 3 + ":warning:.pdf"
    for name in (long, "sub/b.pdf", ".hidden", ".git/config", "c.pdf.receipt.json"):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_bytes(b"x")
    out = tmp_path / "out"
    # The folder, and a file in it again: each file once.
    args = _anchor_args(tmp_path, out, docs, docs / "sub" / "b.pdf")
    code, output = run(*args, "--dry-run")
    assert code == 0, output
    assert output.splitlines() == [  # as they are: no wrapping, no markup
        str(docs / long),
        str(docs / "sub" / "b.pdf"),
        "2 file(s) for police as 'criminal_record'; --dry-run: nothing sent",
    ]
    assert node.submissions == []
    assert not out.exists()  # nothing written, not even the folder
    # What the real run would refuse, the dry run refuses too (exit 2).
    for extra in (
        ["--type", "land_use"],  # not granted
        ["--agency", "justice"],  # police's key is no issuer key of justice
        ["--valid-from", "someday"],
        ["--valid-from", "2030-01-01", "--valid-until", "2020-01-01"],
    ):
        code, output = run(*args, "--dry-run", *extra)
        assert code == 2, (extra, output)
    assert node.submissions == []


def test_anchor_of_a_type_not_granted_is_refused_before_sending(
    node: FakeNode, tmp_path: Path
) -> None:
    (tmp_path / "x.pdf").write_bytes(b"x")
    code, output = run(
        "anchor",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "police"),
        "--type",
        "land_use",
        str(tmp_path / "x.pdf"),
    )
    assert code == 2
    assert "police may not anchor 'land_use'; granted: criminal_record" in output
    assert node.submissions == []


@pytest.mark.parametrize(
    "command", ["anchor", "revoke", "supersede", "record", "governance submit"]
)
def test_a_key_not_the_agencys_is_the_same_usage_error_for_every_write(
    node: FakeNode, tmp_path: Path, command: str
) -> None:
    # Regression: anchor said exit 2 for a key the trust list does not name,
    # the other write commands sent it and exited 1 with the refusal.
    doc = tmp_path / "x.pdf"
    doc.write_bytes(b"x")
    doc_id = "ab" * 32
    trust = node.chain.trust
    proposal = tmp_path / "proposal.json"
    proposal.write_text(
        json.dumps(
            {
                "origin": trust.origin,
                "action": "grant_doc_types",
                "params": {"id": "justice", "doc_types": ["land_use"]},
                "version": trust.version + 1,
                "approvals": [],
            }
        )
    )
    args = {
        "anchor": ["--type", "criminal_record", str(doc)],
        "revoke": [doc_id, "--reason", "issued_in_error"],
        "supersede": [doc_id, str(doc), "--type", "criminal_record"],
        "record": ["--registry", "r", "--record-id", "1", "--version", "1", str(doc)],
        "governance submit": [str(proposal)],
    }[command]
    # police's issuer key, said to be justice's.
    wrong = ["--key", key(tmp_path, "police"), "--agency", "justice"]
    code, output = run(*command.split(), "--node", NODE, *wrong, *args)
    assert code == 2, output
    assert "the key is not an issuer key of justice" in output
    assert node.submissions == []


def test_a_retired_key_is_named_so(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The node's trust list has retired police's key for a new one.
    served = LedgerClient.trust_list

    def retired(client: LedgerClient) -> TrustList:
        trust = served(client)
        police = trust.agency("police")
        rotated = replace(
            police,
            issuer_keys=(SigningKey.generate().public_key,),
            retired_issuer_keys=police.issuer_keys,
        )
        agencies = tuple(rotated if a.id == "police" else a for a in trust.agencies)
        return replace(trust, agencies=agencies)

    monkeypatch.setattr(LedgerClient, "trust_list", retired)
    code, output = run(
        "revoke", "--node", NODE, "--key", key(tmp_path, "police"), "ab" * 32,
        "--reason", "issued_in_error",
    )  # fmt: skip
    assert code == 2, output
    assert "the key is a retired issuer key of police" in output
    assert node.submissions == []


def test_agency_from_folder_or_option(node: FakeNode, tmp_path: Path) -> None:
    (tmp_path / "x.pdf").write_bytes(b"x")
    odd = tmp_path / "Keys_Folder"
    odd.mkdir()
    node.chain.keys["health"].issuer.save(odd / "issuer.key")
    args = [
        "anchor",
        "--node",
        NODE,
        "--key",
        str(odd / "issuer.key"),
        "--type",
        "health_record",
        "--out",
        str(tmp_path / "o"),
        str(tmp_path / "x.pdf"),
    ]
    code, output = run(*args)
    assert code == 2 and "--agency" in output
    code, output = run(*args, "--agency", "health")
    assert code == 0, output


def test_revoke_then_verify_online(node: FakeNode, tmp_path: Path) -> None:
    doc = tmp_path / "cert.pdf"
    doc.write_bytes(b"certificate")
    (receipt,) = anchor(tmp_path, "police", doc, doc_type="criminal_record")
    code, _ = run(
        "revoke",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "police"),
        receipt["doc_id"],
        "--reason",
        "bogus",
    )
    assert code == 2
    code, output = run(
        "revoke",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "police"),
        receipt["doc_id"],
        "--reason",
        "holder_request",
    )
    assert code == 0, output
    receipt_path = tmp_path / "receipts" / "cert.pdf.receipt.json"
    code, output = run(
        "verify",
        "--node",
        NODE,
        "--trust",
        str(tmp_path / "cluster" / "genesis.json"),
        "--receipt",
        str(receipt_path),
        str(doc),
        "--json",
    )
    assert code == 10, output
    assert json.loads(output)["reason"] == "holder_request"
    # Revoking twice is refused by the ledger's rules.
    code, output = run(
        "revoke",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "police"),
        str(receipt_path),
        "--reason",
        "other",
    )
    assert code == 1 and "already_revoked" in output


def test_supersede_with_a_file_and_with_a_receipt(
    node: FakeNode, tmp_path: Path
) -> None:
    old, new, newer = (tmp_path / f"{n}.pdf" for n in ("old", "new", "newer"))
    for path in (old, new, newer):
        path.write_bytes(path.name.encode())
    (first,) = anchor(tmp_path, "justice", old, doc_type="birth_registration")
    code, output = run(
        "supersede",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "justice"),
        first["doc_id"],
        str(new),
        "--type",
        "birth_registration",
        "--out",
        str(tmp_path / "receipts"),
    )
    assert code == 0, output
    second = json.loads((tmp_path / "receipts" / "new.pdf.receipt.json").read_text())
    (third,) = anchor(tmp_path, "justice", newer, doc_type="birth_registration")
    code, output = run(
        "supersede",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "justice"),
        second["doc_id"],
        "--receipt",
        str(tmp_path / "receipts" / "newer.pdf.receipt.json"),
    )
    assert code == 0, output
    status = node.chain.store.status(bytes.fromhex(second["doc_id"]))
    assert status is not None and status.superseded_by == bytes.fromhex(third["doc_id"])
    code, output = run(
        "supersede", "--node", NODE, "--key", key(tmp_path, "justice"), second["doc_id"]
    )
    assert code == 2


def test_record_and_proof(node: FakeNode, tmp_path: Path) -> None:
    content = tmp_path / "record.json"
    content.write_text('{"owner": "x"}')
    for version, expected in ((1, 0), (2, 0), (2, 1)):
        code, output = run(
            "record",
            "--node",
            NODE,
            "--key",
            key(tmp_path, "health"),
            "--registry",
            "vaccination",
            "--record-id",
            "patient-42",
            "--version",
            str(version),
            str(content),
        )
        assert code == expected, output

    doc = tmp_path / "cert.pdf"
    doc.write_bytes(b"certificate")
    (receipt,) = anchor(tmp_path, "health", doc, doc_type="health_record")
    code, output = run("proof", "--node", NODE, receipt["doc_id"])
    assert code == 0
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(output)
    assert json.loads(output)["doc_id"] == receipt["doc_id"]
    code, output = run(
        "verify",
        "--trust",
        str(tmp_path / "cluster" / "genesis.json"),
        "--bundle",
        str(bundle_path),
        "--receipt",
        str(tmp_path / "receipts" / "cert.pdf.receipt.json"),
        str(doc),
    )
    assert code == 0, output


def test_proof_in_binary_verifies_as_the_json_one(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "cert.pdf"
    doc.write_bytes(b"certificate")
    (receipt,) = anchor(tmp_path, "health", doc, doc_type="health_record")
    args = ["proof", "--node", NODE, "--format", "binary", receipt["doc_id"]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = result.stdout_bytes
    assert is_binary_bundle(data)
    code, output = run("proof", "--node", NODE, receipt["doc_id"])
    assert code == 0
    assert decode_bundle(data) == json.loads(output)
    bundle_path = tmp_path / "bundle.bin"
    bundle_path.write_bytes(data)
    code, output = run(
        "verify",
        "--trust",
        str(tmp_path / "cluster" / "genesis.json"),
        "--bundle",
        str(bundle_path),
        "--receipt",
        str(tmp_path / "receipts" / "cert.pdf.receipt.json"),
        str(doc),
    )
    assert code == 0, output
    code, output = run("proof", "--node", NODE, "--format", "xml", receipt["doc_id"])
    assert code == 2, output
    # Raw bytes are not for a terminal: refused before the node is asked.
    monkeypatch.setattr(cli.writes, "_stdout_is_terminal", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr(cli.common, "make_client", lambda *a, **k: asked.append("x"))
    code, output = run(*args)
    assert code == 2
    assert "not written to a terminal" in output and "> bundle.bin" in output
    assert asked == []


def test_audit_and_status_over_http(node: FakeNode, tmp_path: Path) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"d{i}.pdf"
        path.write_bytes(b"doc %d" % i)
        files.append(path)
    receipts = anchor(tmp_path, "police", *files, doc_type="criminal_record")
    run(
        "revoke",
        "--node",
        NODE,
        "--key",
        key(tmp_path, "police"),
        receipts[0]["doc_id"],
        "--reason",
        "withdrawn",
    )
    keep = tmp_path / "kept.json"
    genesis = str(tmp_path / "cluster" / "genesis.json")
    code, output = run("audit", "--node", NODE, "--trust", genesis, "--keep", str(keep))
    assert code == 0, output
    assert "Audit passed" in output
    kept = json.loads(keep.read_text())
    assert kept["height"] >= 1
    code, output = run(
        "audit", "--node", NODE, "--keep", str(keep), "--json", "--documents", "1"
    )
    assert code == 0, output
    body = json.loads(output[output.index("{") :])
    assert body["result"] == "ok" and body["documents"] == 1
    assert body["kept_height"] == kept["height"]

    code, output = run("status", "--node", NODE)
    assert code == 0, output
    assert "police" in output and "leader" in output


def test_audit_of_an_unreachable_node_exits_3(tmp_path: Path) -> None:
    code, _ = run("audit", "--node", "http://127.0.0.1:9", "--timeout", "1")
    assert code == 3


def test_audit_of_a_tampered_leaf_exits_20_naming_block_and_leaf(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"t{i}.pdf"
        path.write_bytes(b"tampered doc %d" % i)
        files.append(path)
    receipts = anchor(tmp_path, "police", *files, doc_type="criminal_record")
    victim = receipts[1]
    leaf_index = int(victim["leaf_index"])
    store = node.chain.store
    honest = store.leaves

    def lying(start: int, end: int) -> list[bytes]:
        # The node serves one leaf with one byte flipped.
        leaves = list(honest(start, end))
        if start <= leaf_index < end:
            raw = bytearray(leaves[leaf_index - start])
            raw[-3] ^= 0x01
            leaves[leaf_index - start] = bytes(raw)
        return leaves

    monkeypatch.setattr(store, "leaves", lying)
    genesis = str(tmp_path / "cluster" / "genesis.json")
    code, output = run("audit", "--node", NODE, "--trust", genesis, "--json")
    assert code == 20, output
    body = json.loads(output[output.index("{") :])
    assert body["result"] == "tampered"
    assert (body["height"], body["leaf"]) == (int(victim["block_height"]), leaf_index)
    code, output = run("audit", "--node", NODE, "--trust", genesis)
    assert code == 20, output
    assert "AUDIT FAILED" in output
    assert f"block height: {victim['block_height']}" in output
    assert f"leaf index:   {leaf_index}" in output


def _docs(tmp_path: Path, count: int) -> list[Path]:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    paths = [folder / f"c{i}.pdf" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(b"certificate %d" % i)
    return paths


def test_an_answer_lost_after_apply_still_gives_every_receipt(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node applied the batch, then the answer was lost: the documents
    are found on the ledger by doc id and their receipts written."""
    applied = node.submit

    def apply_then_time_out(request: httpx.Request) -> httpx.Response:
        applied(request)
        raise httpx.ReadTimeout("the answer was lost", request=request)

    monkeypatch.setattr(node, "submit", apply_then_time_out)
    out = tmp_path / "receipts"
    files = _docs(tmp_path, 3)
    code, output = run(*_anchor_args(tmp_path, out, *files))
    assert code == 0, output
    assert "on the ledger after all" in output
    store = node.chain.store
    for path in files:
        receipt = json.loads((out / f"{path.name}.receipt.json").read_text())
        rec = store.status(bytes.fromhex(receipt["doc_id"]))
        assert rec is not None and rec.anchor_leaf == receipt["leaf_index"]
    assert not list(out.glob(".anchor-*"))  # the salts live in the receipts


def test_salts_of_documents_that_may_still_land_are_kept(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer and nothing on the ledger yet: the submission may still
    commit, so the salts stay."""

    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    monkeypatch.setattr(node, "submit", time_out)
    out = tmp_path / "receipts"
    files = _docs(tmp_path, 2)
    code, output = run(*_anchor_args(tmp_path, out, *files))
    assert code == 3, output
    assert "0 of 2 on the ledger (receipts written); 2 not on the ledger (yet)" in (
        output
    )
    (journal,) = out.glob(".anchor-*.salts.json")
    kept = json.loads(journal.read_text())
    assert [k["file_name"] for k in kept] == ["c0.pdf", "c1.pdf"]
    assert all(len(bytes.fromhex(k["salt"])) == 16 for k in kept)
    assert journal.stat().st_mode & 0o077 == 0


def test_a_refused_submission_leaves_no_salts_behind(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = problem(422, "invalid-submission", "refused", reason="other")
    monkeypatch.setattr(node, "submit", lambda request: refused)
    out = tmp_path / "receipts"
    code, output = run(*_anchor_args(tmp_path, out, *_docs(tmp_path, 2)))
    assert code == 1, output
    assert "refused by the node" in output
    assert not list(out.glob(".anchor-*"))


def test_found_receipts_are_kept_when_other_lookups_fail(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch was applied and its answer lost; then the node fails to
    answer for one document: the others get their receipts, and the one
    that could not be checked is said so."""
    applied = node.submit
    files = _docs(tmp_path, 3)
    failed: list[bytes] = []

    def apply_then_time_out(request: httpx.Request) -> httpx.Response:
        applied(request)
        raise httpx.ReadTimeout("the answer was lost", request=request)

    def flaky(store: LedgerStore, doc_id: bytes) -> dict[str, Any] | None:
        if not failed:
            failed.append(doc_id)
            raise httpx.ReadTimeout("no answer for a moment")
        return store_document(store, doc_id)

    monkeypatch.setattr(node, "submit", apply_then_time_out)
    monkeypatch.setattr(tests.cli.fakenode, "store_document", flaky)
    out = tmp_path / "receipts"
    code, output = run(*_anchor_args(tmp_path, out, *files))
    assert code == 3, output
    assert "2 of 3 on the ledger (receipts written); 1 could not be checked" in (output)
    assert len(list(out.glob("*.receipt.json"))) == 2
    assert len(list(out.glob(".anchor-*.salts.json"))) == 1


def _interrupt_after_apply(node: FakeNode, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the node's submit apply, then Ctrl-C; return the real one."""
    applied = node.submit

    def apply_then_ctrl_c(request: httpx.Request) -> httpx.Response:
        applied(request)
        raise KeyboardInterrupt

    monkeypatch.setattr(node, "submit", apply_then_ctrl_c)
    return applied


def _recover(out: Path) -> tuple[int, str, Path]:
    (journal,) = out.glob(".anchor-*.salts.json")
    code, output = run("recover", "--node", NODE, str(journal))
    return code, output, journal


def test_ctrl_c_after_sending_keeps_the_salts_and_recover_writes_the_receipts(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted once the documents reached the ledger: the command says
    where their salts are, and ``ledger recover`` writes every receipt."""
    applied = _interrupt_after_apply(node, monkeypatch)
    out = tmp_path / "receipts"
    files = _docs(tmp_path, 3)
    code, output = run(*_anchor_args(tmp_path, out, *files))
    assert code == 130, output
    assert "up to 3 document(s) may be on the ledger" in output
    assert "ledger recover --node" in output
    assert not list(out.glob("*.receipt.json"))
    monkeypatch.setattr(node, "submit", applied)
    # The next anchor into that folder points at the unfinished one.
    other = tmp_path / "other.pdf"
    other.write_bytes(b"another certificate")
    code, output = run(*_anchor_args(tmp_path, out, other))
    assert code == 0, output
    assert "did not finish; `ledger recover" in output.replace("\n", "")
    code, output, journal = _recover(out)
    assert code == 0, output
    assert "3 found on the ledger (receipts written)" in output
    assert re.search(r"looking up.*3/3", output)  # the progress bar's end
    assert not journal.exists()
    store = node.chain.store
    for path in files:
        receipt = json.loads((out / f"{path.name}.receipt.json").read_text())
        rec = store.status(bytes.fromhex(receipt["doc_id"]))
        assert rec is not None and rec.anchor_leaf == receipt["leaf_index"]
        assert (out / f"{path.name}.qr.png").is_file()


def test_recover_skips_receipts_already_written_and_names_the_unsent(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut short while receipts were written: the ones written stay as they
    are (no second copy); a document never sent is named, not invented."""
    out = tmp_path / "receipts"
    files = _docs(tmp_path, 3)
    real_write = cli.documents.write_receipts  # what cli.writes calls

    def write_one_then_ctrl_c(receipts: Any, folder: Path, **kw: Any) -> Any:
        real_write(receipts[:1], folder, qr=False)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.writes, "write_receipts", write_one_then_ctrl_c)
    code, output = run(*_anchor_args(tmp_path, out, *files))
    assert code == 130, output
    assert "all 3 document(s) are on the ledger, 1 receipt(s) written" in (
        output.replace("\n", " ")
    )
    monkeypatch.setattr(cli.writes, "write_receipts", real_write)
    (journal,) = out.glob(".anchor-*.salts.json")
    rows = json.loads(journal.read_text())
    extra = dict(rows[0], file_name="never-sent.pdf")
    extra["salt"] = "00" * 16
    extra["doc_id"] = derive_doc_id(
        bytes(16), bytes.fromhex(extra["file_sha256"])
    ).hex()
    journal.write_text(json.dumps([*rows, extra]))
    # Right after the anchor stopped, a document not found may still land
    # (a batch signed before the stop, within its time window): kept.
    code, output, _ = _recover(out)
    assert code == 75, output
    assert "4 document(s): 1 had a receipt" in output
    assert "2 found on the ledger (receipts written), 1 not on the ledger" in output
    assert "may still land" in output and journal.exists()
    # Once the window has passed, it was never anchored.
    past = time.time() - 7 * 60
    os.utime(journal, (past, past))
    code, output, _ = _recover(out)
    assert code == 0, output
    assert "3 had a receipt" in output and "1 not on the ledger" in output
    assert "never anchored (anchor these files again): never-sent.pdf" in output
    assert not journal.exists()
    assert sorted(p.name for p in out.glob("*.receipt.json")) == [
        f"{p.name}.receipt.json" for p in files
    ]


def test_ctrl_c_while_looking_up_a_lost_answer_keeps_the_salts(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied = node.submit

    def apply_then_time_out(request: httpx.Request) -> httpx.Response:
        applied(request)
        raise httpx.ReadTimeout("the answer was lost", request=request)

    def ctrl_c(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(node, "submit", apply_then_time_out)
    monkeypatch.setattr(LedgerClient, "recover_receipts", ctrl_c)
    out = tmp_path / "receipts"
    code, output = run(*_anchor_args(tmp_path, out, *_docs(tmp_path, 2)))
    assert code == 130, output
    assert "may be on the ledger" in output and "ledger recover" in output
    assert len(list(out.glob(".anchor-*.salts.json"))) == 1


def test_recover_leaves_alone_a_file_a_running_anchor_writes(
    node: FakeNode, tmp_path: Path
) -> None:
    out = tmp_path / "receipts"
    out.mkdir()
    with subprocess.Popen(["sleep", "30"]) as other:
        try:
            journal = out / f".anchor-20261204T000000Z-{other.pid}-00ff00ff.salts.json"
            journal.write_text("[]")
            code, output = run("recover", "--node", NODE, str(journal))
            assert code == 2, output
            assert f"running anchor (process {other.pid})" in output
            code, output = run("recover", "--node", NODE, "--force", str(journal))
            assert code == 0, output
        finally:
            other.kill()


def test_recover_reads_salts_files_that_kept_no_anchor_times(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files written before the anchor's times were kept: the anchor is
    read off the ledger, tied to the row by its doc id."""
    applied = _interrupt_after_apply(node, monkeypatch)
    out = tmp_path / "receipts"
    files = _docs(tmp_path, 2)
    code, output = run(*_anchor_args(tmp_path, out, *files))
    assert code == 130, output
    monkeypatch.setattr(node, "submit", applied)
    (journal,) = out.glob(".anchor-*.salts.json")
    rows = json.loads(journal.read_text())
    for row in rows:
        for name in ("issued_at", "valid_from", "valid_until"):
            del row[name]
    journal.write_text(json.dumps(rows))
    code, output, _ = _recover(out)
    assert code == 0, output
    assert "2 found on the ledger (receipts written)" in output
    assert len(list(out.glob("*.receipt.json"))) == 2


def test_recover_refuses_a_file_that_is_not_a_salts_file(
    node: FakeNode, tmp_path: Path
) -> None:
    bad = tmp_path / ".anchor-x.salts.json"
    bad.write_text(json.dumps([{"salt": "zz"}]))
    code, output = run("recover", "--node", NODE, str(bad))
    assert code == 2, output
    assert "row 0" in output and bad.exists()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "http(s) URL"),
        # Its QR codes would not fit version 10: found before, not after,
        # the documents are on the ledger.
        ("https://verify." + "x" * 120 + ".gov.vn", "version 11"),
    ],
)
def test_a_bad_public_url_is_refused_before_sending(
    node: FakeNode, tmp_path: Path, url: str, says: str
) -> None:
    out = tmp_path / "receipts"
    size = node.chain.store.tree_size
    args = _anchor_args(tmp_path, out, *_docs(tmp_path, 1))
    code, output = run(*args, "--public-url", url)
    assert code == 2, output
    assert "cannot make verify links" in output
    assert says in output.replace("\n", "")
    assert node.chain.store.tree_size == size
    assert not list(out.glob(".anchor-*"))


def test_an_unwritable_receipts_folder_is_refused_before_sending(
    node: FakeNode, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, output = run(*_anchor_args(tmp_path, blocker / "out", *_docs(tmp_path, 1)))
    assert code == 2, output
    assert "cannot write receipts" in output
    assert node.submissions == []
