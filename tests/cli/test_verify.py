"""``ledger verify``: one exit status per verdict, offline and online, with QR codes.

Bundles come from a real local store (``tests/cli/chain.py``); no node runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.qr import qr_png, qr_url
from cli.client import AnchorReceipt, LedgerClient
from cli.main import app
from cli.verifying import (
    EXIT_CODES,
    UsageError,
    VerifyRequest,
    decode_qr,
    parse_verify_url,
    run_verify,
)
from ledger.bundle import build_bundle
from ledger.bundle_binary import encode_bundle
from ledger.entries import derive_doc_id
from ledger.keys import SigningKey, verifier_key_string
from ledger.trust import TrustList
from tests.cli.chain import Document, LocalChain

NODE = "http://node.test:7200"
DAY_MS = 86_400_000


@dataclasses.dataclass
class Fixture:
    root: Path
    chain: LocalChain
    docs: dict[str, Document]
    trust_file: Path

    def files(self, name: str) -> tuple[Path, Path, Path]:
        """Bundle, receipt and document files of the document ``name``."""
        return (
            self.root / f"{name}.bundle.json",
            self.root / f"{name}.receipt.json",
            self.root / f"{name}.pdf",
        )


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    root = tmp_path_factory.mktemp("verify")
    # An hour in the past, so that checkpoints can be stale for --max-age.
    start = time.time_ns() // 1_000_000 - 3_600_000
    chain = LocalChain.create(root / "store", time_ms=start)
    docs: dict[str, Document] = {}
    docs["valid"], docs["revoked"], docs["superseded"] = chain.anchor("police", 3)
    (docs["health"],) = chain.anchor("health", doc_type="health_record")
    (docs["expired"],) = chain.anchor("justice", valid_until=start + 10_000)
    (docs["not_yet_valid"],) = chain.anchor("justice", valid_from=start + 30 * DAY_MS)
    chain.finalize()
    chain.revoke(docs["revoked"])
    docs["amended"] = chain.supersede(docs["superseded"])
    chain.finalize()
    salt = os.urandom(16)
    missing = derive_doc_id(salt, hashlib.sha256(b"never anchored").digest())
    docs["not_found"] = Document(missing, salt, b"never anchored", "police")
    trust_file = root / "genesis.json"
    chain.trust.save(trust_file)
    fixture = Fixture(root, chain, docs, trust_file)
    for name, doc in docs.items():
        bundle, receipt, document = fixture.files(name)
        bundle.write_text(json.dumps(build_bundle(chain.store, doc.doc_id)))
        document.write_bytes(doc.content)
        receipt.write_text(json.dumps(_receipt(doc, name).to_json()))
    yield fixture
    chain.close()


def _receipt(doc: Document, name: str) -> AnchorReceipt:
    return AnchorReceipt(
        doc_id=doc.doc_id,
        salt=doc.salt,
        file_sha256=hashlib.sha256(doc.content).digest(),
        file_name=f"{name}.pdf",
        doc_type="criminal_record",
        issuer=doc.issuer,
        leaf_index=0,
        block_height=1,
        verify_url=qr_url(NODE, doc.doc_id, doc.salt),
    )


def _verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", *args])
    return result.exit_code, result.output


def _offline(fx: Fixture, name: str, *extra: str, document: str | None = None) -> int:
    bundle, receipt, doc = fx.files(name)
    code, _ = _verify(
        "--trust",
        str(fx.trust_file),
        "--bundle",
        str(bundle),
        "--receipt",
        str(receipt),
        *extra,
        document or str(doc),
    )
    return code


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("valid", "valid"),
        ("health", "valid"),
        ("amended", "valid"),
        ("revoked", "revoked"),
        ("superseded", "superseded"),
        ("expired", "expired"),
        ("not_yet_valid", "not_yet_valid"),
        ("not_found", "not_found"),
    ],
)
def test_offline_exit_code_per_status(fx: Fixture, name: str, status: str) -> None:
    assert _offline(fx, name) == EXIT_CODES[status]


def test_exit_codes_are_the_documented_ones() -> None:
    assert dict(EXIT_CODES) == {
        "valid": 0,
        "revoked": 10,
        "superseded": 11,
        "expired": 12,
        "not_yet_valid": 13,
        "not_found": 14,
        "tampered": 20,
        "unknown_issuer": 21,
        "stale": 22,
        "malformed": 23,
    }
    result = CliRunner().invoke(app, ["verify", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for status, code in EXIT_CODES.items():
        assert f"{code} {status}" in text
    assert "2 usage" in text and "3 network" in text


def test_altered_file_is_tampered(fx: Fixture) -> None:
    altered = fx.root / "altered.pdf"
    altered.write_bytes(fx.docs["valid"].content + b"\x00")
    assert _offline(fx, "valid", document=str(altered)) == EXIT_CODES["tampered"]


def test_bundle_of_another_document_is_tampered(fx: Fixture) -> None:
    _, receipt, doc = fx.files("valid")
    other, _, _ = fx.files("revoked")
    code, _ = _verify(
        "--trust",
        str(fx.trust_file),
        "--bundle",
        str(other),
        "--receipt",
        str(receipt),
        str(doc),
    )
    assert code == EXIT_CODES["tampered"]


def test_unknown_issuer_key(fx: Fixture) -> None:
    # The same agencies and node keys, but health's issuer key is another one.
    trust = fx.chain.trust
    health = trust.agency("health")
    other = dataclasses.replace(health, issuer_keys=(SigningKey.generate().public_key,))
    changed = dataclasses.replace(
        trust,
        agencies=tuple(other if a.id == "health" else a for a in trust.agencies),
    )
    path = fx.root / "other-trust.json"
    changed.save(path)
    bundle, receipt, doc = fx.files("health")
    code, _ = _verify(
        "--trust",
        str(path),
        "--bundle",
        str(bundle),
        "--receipt",
        str(receipt),
        str(doc),
    )
    assert code == EXIT_CODES["unknown_issuer"]


def test_old_checkpoint_is_stale(fx: Fixture) -> None:
    assert _offline(fx, "valid", "--max-age", "60") == EXIT_CODES["stale"]
    assert _offline(fx, "valid", "--max-age", str(30 * 86400)) == 0


def test_mangled_bundle_is_malformed(fx: Fixture) -> None:
    bundle, _, _ = fx.files("valid")
    data = json.loads(bundle.read_text())
    del data["state"]
    broken = fx.root / "broken.bundle.json"
    broken.write_text(json.dumps(data))
    code, _ = _verify("--trust", str(fx.trust_file), "--bundle", str(broken))
    assert code == EXIT_CODES["malformed"]


def _binary_copy(fx: Fixture, name: str) -> Path:
    """The binary form of ``name``'s bundle file, beside it."""
    bundle, _, _ = fx.files(name)
    binary = fx.root / f"{name}.bundle.bin"
    binary.write_bytes(encode_bundle(json.loads(bundle.read_text())))
    return binary


@pytest.mark.parametrize("name", ["valid", "revoked", "superseded", "not_found"])
def test_a_binary_bundle_file_verifies_as_its_json_file(fx: Fixture, name: str) -> None:
    bundle, receipt, document = fx.files(name)
    binary = _binary_copy(fx, name)
    answers = []
    for path in (bundle, binary):
        code, output = _verify(
            "--trust", str(fx.trust_file), "--bundle", str(path), "--json"
        )
        answers.append((code, json.loads(output)))
        with_file = _verify(
            "--trust",
            str(fx.trust_file),
            "--bundle",
            str(path),
            "--receipt",
            str(receipt),
            str(document),
        )
        assert with_file[0] == code
    assert answers[0] == answers[1]
    assert answers[0][1]["status"] == name  # each file is named by its status
    assert answers[0][0] == EXIT_CODES[name]


def test_a_binary_bundle_is_stale_as_its_json_file_is(fx: Fixture) -> None:
    binary = _binary_copy(fx, "valid")
    code, _ = _verify(
        "--trust", str(fx.trust_file), "--bundle", str(binary), "--max-age", "60"
    )
    assert code == EXIT_CODES["stale"]


def test_a_mangled_binary_bundle_is_malformed(fx: Fixture) -> None:
    data = _binary_copy(fx, "valid").read_bytes()
    broken = fx.root / "broken.bundle.bin"
    for mangled in (data[:-1], data + b"\x00", data[:1]):
        broken.write_bytes(mangled)
        code, output = _verify("--trust", str(fx.trust_file), "--bundle", str(broken))
        assert code == EXIT_CODES["malformed"], output


def test_a_json_bundle_with_leading_whitespace_is_still_json(fx: Fixture) -> None:
    bundle, _, _ = fx.files("valid")
    spaced = fx.root / "spaced.bundle.json"
    spaced.write_text("\n  " + bundle.read_text())
    code, _ = _verify("--trust", str(fx.trust_file), "--bundle", str(spaced))
    assert code == 0
    # Neither form (an empty file, a msgpack array, cut JSON): malformed, as
    # a binary bundle that does not decode is; only a file that cannot be
    # read at all is a file error.
    for junk in (b"", b"\x92\x01\x02", bundle.read_bytes()[:-20]):
        spaced.write_bytes(junk)
        code, out = _verify("--trust", str(fx.trust_file), "--bundle", str(spaced))
        assert code == 23, out
    absent = str(fx.root / "absent.json")
    code, _ = _verify("--trust", str(fx.trust_file), "--bundle", absent)
    assert code == 2


def test_bundle_alone_reports_status_without_a_file(fx: Fixture) -> None:
    bundle, _, _ = fx.files("revoked")
    code, output = _verify(
        "--trust", str(fx.trust_file), "--bundle", str(bundle), "--json"
    )
    assert code == 10
    body = json.loads(output)
    assert body["status"] == "revoked"
    assert body["reason"] == "holder_request"
    assert body["issuer"] == "police"
    assert body["issuer_names"]["en"] == "City Police Department"
    assert body["doc_id"] == fx.docs["revoked"].doc_id.hex()


def test_superseded_names_its_successor(fx: Fixture) -> None:
    bundle, _, _ = fx.files("superseded")
    code, output = _verify(
        "--trust", str(fx.trust_file), "--bundle", str(bundle), "--json"
    )
    assert code == 11
    assert json.loads(output)["superseded_by"] == fx.docs["amended"].doc_id.hex()


def test_human_output_names_status_and_issuer(fx: Fixture) -> None:
    bundle, receipt, doc = fx.files("valid")
    result = CliRunner().invoke(
        app,
        [
            "verify",
            "--trust",
            str(fx.trust_file),
            "--bundle",
            str(bundle),
            "--receipt",
            str(receipt),
            str(doc),
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0
    assert "valid" in result.output
    assert "City Police Department" in result.output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--bundle", "missing.json", "--trust", "missing.json"],
        ["--bundle", "x.json"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    code, _ = _verify(*args)
    assert code == 2


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--max-age", "-5"], "--max-age"),
        (["--timeout", "0"], "--timeout"),
        (["--node", "notaurl"], "not an http(s) URL"),
        (["--node", "http://[::1"], "not a URL"),
        (["--node", "http://127.0.0.1:99999"], "not a URL"),
    ],
)
def test_bad_option_values_exit_2(fx: Fixture, extra: list[str], says: str) -> None:
    _, receipt, document = fx.files("valid")
    code, output = _verify("--receipt", str(receipt), *extra, str(document))
    assert code == 2, output
    assert says in output


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("salt", "zz", "bad 'salt'"),
        ("leaf_index", "7", "bad 'leaf_index'"),
        ("issuer", None, "no 'issuer'"),
    ],
)
def test_a_bad_receipt_names_its_field(
    fx: Fixture, tmp_path: Path, field: str, value: str | None, says: str
) -> None:
    _, receipt, _ = fx.files("valid")
    obj = json.loads(receipt.read_text())
    if value is None:
        del obj[field]
    else:
        obj[field] = value
    bad = tmp_path / "bad.receipt.json"
    bad.write_text(json.dumps(obj))
    code, output = _verify("--trust", str(fx.trust_file), "--receipt", str(bad))
    assert code == 2, output
    assert says in output


def test_trust_file_must_exist(fx: Fixture) -> None:
    bundle, _, _ = fx.files("valid")
    code, _ = _verify("--trust", str(fx.root / "nope.json"), "--bundle", str(bundle))
    assert code == 2


# --- QR codes ------------------------------------------------------------------


def _qr_image(fx: Fixture, name: str) -> Path:
    doc = fx.docs[name]
    path = fx.root / f"{name}.qr.png"
    path.write_bytes(qr_png(qr_url(NODE, doc.doc_id, doc.salt)))
    return path


def test_qr_decoded_by_zbar_gives_doc_id_salt_and_node(fx: Fixture) -> None:
    doc = fx.docs["valid"]
    link = parse_verify_url(decode_qr(_qr_image(fx, "valid")))
    assert (link.node_url, link.doc_id, link.salt) == (NODE, doc.doc_id, doc.salt)


@pytest.mark.parametrize(
    ("name", "status"), [("valid", "valid"), ("revoked", "revoked")]
)
def test_qr_with_document_offline(fx: Fixture, name: str, status: str) -> None:
    bundle, _, doc = fx.files(name)
    code, _ = _verify(
        "--trust",
        str(fx.trust_file),
        "--bundle",
        str(bundle),
        "--qr",
        str(_qr_image(fx, name)),
        str(doc),
    )
    assert code == EXIT_CODES[status]


def _other_issuer_trust(fx: Fixture, agency: str) -> Path:
    """The trust list with ``agency``'s issuer key replaced by another one."""
    trust = fx.chain.trust
    info = trust.agency(agency)
    other = dataclasses.replace(info, issuer_keys=(SigningKey.generate().public_key,))
    changed = dataclasses.replace(
        trust,
        agencies=tuple(other if a.id == agency else a for a in trust.agencies),
    )
    path = fx.root / f"other-{agency}-trust.json"
    changed.save(path)
    return path


@pytest.mark.parametrize(
    ("name", "case"),
    [
        ("valid", "valid"),
        ("revoked", "revoked"),
        ("superseded", "superseded"),
        ("not_found", "not_found"),
        ("valid", "tampered"),
        ("health", "unknown_issuer"),
    ],
)
def test_qr_exit_code_per_status(fx: Fixture, name: str, case: str) -> None:
    # Each verdict the issue names, through `ledger verify --qr IMAGE FILE`
    # (offline: the bundle and the pinned trust list), by its exit status.
    bundle, _, doc = fx.files(name)
    trust = fx.trust_file
    if case == "tampered":
        doc = fx.root / "qr-tampered.pdf"
        doc.write_bytes(fx.docs[name].content + b"\x00")
    elif case == "unknown_issuer":
        trust = _other_issuer_trust(fx, fx.docs[name].issuer)
    code, output = _verify(
        "--trust",
        str(trust),
        "--bundle",
        str(bundle),
        "--qr",
        str(_qr_image(fx, name)),
        str(doc),
    )
    assert code == EXIT_CODES[case], output


def test_qr_with_altered_document_is_tampered(fx: Fixture) -> None:
    bundle, _, _ = fx.files("valid")
    altered = fx.root / "qr-altered.pdf"
    altered.write_bytes(b"not the certificate")
    code, _ = _verify(
        "--trust",
        str(fx.trust_file),
        "--bundle",
        str(bundle),
        "--qr",
        str(_qr_image(fx, "valid")),
        str(altered),
    )
    assert code == EXIT_CODES["tampered"]


def test_image_without_qr_is_a_usage_error(fx: Fixture, tmp_path: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    code, _ = _verify("--trust", str(fx.trust_file), "--qr", str(blank))
    assert code == 2


def test_a_machine_without_zbar_gets_a_message_not_a_traceback(
    fx: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What pyzbar raises on import when the libzbar0 package is missing.
    import sys

    monkeypatch.setitem(sys.modules, "pyzbar", None)
    image = tmp_path / "qr.png"
    image.write_bytes(qr_png(qr_url("http://x", bytes(32), bytes(16))))
    code, output = _verify("--trust", str(fx.trust_file), "--qr", str(image))
    assert code == 2
    assert "needs the zbar library" in output and "Traceback" not in output


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/v/" + "00" * 32,
        "http://x/d/" + "00" * 32,
        "http://x/v/" + "00" * 31,
        "http://x/v/" + "00" * 32 + "#zz",
    ],
)
def test_bad_verify_urls(url: str) -> None:
    with pytest.raises(UsageError):
        parse_verify_url(url)


# --- online: the node supplies material, the verdict is computed here ------------


def _api_trust(trust: TrustList) -> dict[str, object]:
    """``GET /v1/trust`` in the DESIGN form (no full trust list inside)."""
    return {
        "origin": trust.origin,
        "version": trust.version,
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


def _fake_node(fx: Fixture, *, lie: str | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/trust":
            return httpx.Response(200, json=_api_trust(fx.chain.trust))
        if path.startswith("/v1/documents/") and path.endswith("/bundle"):
            doc_id = bytes.fromhex(path.split("/")[3])
            bundle = build_bundle(fx.chain.store, doc_id)
            if lie is not None:
                # A node that swaps in another document's proofs.
                bundle = build_bundle(fx.chain.store, fx.docs[lie].doc_id)
            return httpx.Response(200, json=bundle)
        return httpx.Response(404, json={"type": "about:blank", "title": "nope"})

    return httpx.MockTransport(handler)


def _factory(transport: httpx.MockTransport) -> object:
    return lambda url: LedgerClient(url, transport=transport, retries=0)


def test_online_with_qr_and_trust_from_node(fx: Fixture) -> None:
    _, _, doc = fx.files("revoked")
    req = VerifyRequest(qr=_qr_image(fx, "revoked"), document=doc)
    outcome = run_verify(req, client_factory=_factory(_fake_node(fx)))
    assert outcome.status == "revoked"
    assert outcome.trust_from_node


def test_online_with_pinned_trust(fx: Fixture) -> None:
    _, receipt, doc = fx.files("valid")
    req = VerifyRequest(node=NODE, trust=fx.trust_file, receipt=receipt, document=doc)
    outcome = run_verify(req, client_factory=_factory(_fake_node(fx)))
    assert outcome.status == "valid"
    assert not outcome.trust_from_node


def test_online_node_cannot_substitute_a_valid_bundle(fx: Fixture) -> None:
    _, receipt, doc = fx.files("revoked")
    req = VerifyRequest(node=NODE, trust=fx.trust_file, receipt=receipt, document=doc)
    outcome = run_verify(req, client_factory=_factory(_fake_node(fx, lie="valid")))
    assert outcome.status == "tampered"


def test_unreachable_node_exits_3(fx: Fixture) -> None:
    code, _ = _verify(
        "--node", "http://127.0.0.1:9", "--qr", str(_qr_image(fx, "valid"))
    )
    assert code == 3
