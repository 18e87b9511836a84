"""The sample certificates: manifest, reproducible bytes, Vietnamese text."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from api.i18n import DOC_TYPE_NAMES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCRIPT = ROOT / "scripts" / "make_examples.py"
REQUIRED = {"file", "agency", "doc_type", "title"}
OPTIONAL = {"supersedes", "title_en", "issued_on", "valid_until", "sha256"}


def load_manifest() -> list[dict[str, str]]:
    entries = json.loads((EXAMPLES / "manifest.json").read_text(encoding="utf-8"))
    assert isinstance(entries, list)
    return entries


def test_manifest_lists_every_pdf() -> None:
    entries = load_manifest()
    assert 5 <= len(entries) <= 6
    files = [e["file"] for e in entries]
    assert sorted(files) == sorted(p.name for p in EXAMPLES.glob("*.pdf"))
    for entry in entries:
        assert REQUIRED <= set(entry) <= REQUIRED | OPTIONAL, entry
        assert entry["agency"] in {"police", "justice", "health"}
        assert entry["doc_type"] in DOC_TYPE_NAMES
        data = (EXAMPLES / entry["file"]).read_bytes()
        assert data.startswith(b"%PDF-")
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["file"] in (EXAMPLES / "README.md").read_text(encoding="utf-8")
    agencies = {e["agency"]: e["doc_type"] for e in entries}
    assert agencies["health"] == "health_record"
    kinds = {(e["agency"], e["doc_type"]) for e in entries}
    assert ("police", "criminal_record") in kinds
    assert ("justice", "birth_registration") in kinds
    assert ("justice", "marriage_registration") in kinds


def test_one_amended_version_supersedes_an_earlier_one() -> None:
    entries = {e["file"]: e for e in load_manifest()}
    amended = [e for e in entries.values() if "supersedes" in e]
    assert len(amended) == 1
    old = entries[amended[0]["supersedes"]]
    assert (old["agency"], old["doc_type"]) == (
        amended[0]["agency"],
        amended[0]["doc_type"],
    )
    assert old["issued_on"] < amended[0]["issued_on"]


def _generate(out: Path) -> None:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_regenerating_gives_identical_bytes(tmp_path: Path) -> None:
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (dev extra) is not installed")
    _generate(tmp_path / "a")
    made_with = re.search(
        r"fpdf2 (\S+) gives", (EXAMPLES / "README.md").read_text("utf-8")
    )
    assert made_with is not None
    if fpdf.__version__ == made_with.group(1):
        reference = EXAMPLES
    else:
        # Another fpdf2 may lay text out differently; still, two runs (in two
        # processes) must agree byte for byte.
        _generate(tmp_path / "b")
        reference = tmp_path / "b"
    for path in sorted(reference.iterdir()):
        assert (tmp_path / "a" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.skipif(shutil.which("gs") is None, reason="ghostscript (gs) not installed")
def test_pdf_text_keeps_vietnamese_diacritics() -> None:
    path = EXAMPLES / "criminal-record-1-nguyen-thi-hong-nhung.pdf"
    out = subprocess.run(
        ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite", "-o", "-", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    text = unicodedata.normalize("NFC", out.stdout.decode("utf-8"))
    for phrase in (
        "PHIẾU LÝ LỊCH TƯ PHÁP SỐ 1",
        "CÔNG AN TỈNH SÔNG XANH",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "NGUYỄN THỊ HỒNG NHUNG",
        "Không có án tích",
        "BẢN MẪU",
    ):
        assert phrase in text, phrase
