"""Receipt file names: a receipt holds the only copy of a document's salt."""

from __future__ import annotations

from pathlib import Path

from cli.documents import AnchorReceipt, output_names


def _receipt(name: str, n: int) -> AnchorReceipt:
    return AnchorReceipt(
        doc_id=bytes([n]) * 32,
        salt=bytes(16),
        file_sha256=bytes(32),
        file_name=name,
        doc_type="criminal_record",
        issuer="police",
        leaf_index=n,
        block_height=1,
    )


def test_two_files_of_one_name_in_one_run_get_numbered_names() -> None:
    names = output_names([_receipt("cert.pdf", 1), _receipt("cert.pdf", 2)])
    assert names == ["cert.pdf", "cert.pdf-2"]


def test_a_later_run_never_overwrites_an_earlier_receipt(tmp_path: Path) -> None:
    (tmp_path / "cert.pdf.receipt.json").write_text("{}", encoding="utf-8")
    (tmp_path / "cert.pdf-2.receipt.json").write_text("{}", encoding="utf-8")
    names = output_names([_receipt("cert.pdf", 3)], tmp_path)
    assert names == ["cert.pdf-3"]
