"""Generate the sample certificates in examples/ (PDF, Vietnamese text).

    .venv/bin/python scripts/make_examples.py            # rewrite examples/
    .venv/bin/python scripts/make_examples.py --check    # exit 1 if stale
    .venv/bin/python scripts/make_examples.py --out DIR  # write elsewhere

The PDFs are committed, and anchoring them is how the demo and the tests
make documents whose ids are known in advance, so regenerating must give the
same bytes: the creation date, producer and file id are fixed, and nothing
reads the clock or a random source. (Another fpdf2 release may still lay text
out differently; the bytes are pinned per fpdf2 version, hence ``--check``.)

All people, numbers and agencies are made up ("tỉnh Sông Xanh" is not a real
province; identity numbers start with 099, a code no province has) and every
page says it is a specimen. The anchored PDF carries no QR code: the QR holds
the document id, which is a hash of this very file, so it is printed on the
paper copy or the holder's receipt instead.

Needs fpdf2 (in the ``dev`` extra) and the DejaVu fonts from Debian's
fonts-dejavu-core package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import fpdf
from fpdf import FPDF
from fpdf.enums import XPos, YPos

ROOT: Final = Path(__file__).resolve().parent.parent
FONT_DIR: Final = Path("/usr/share/fonts/truetype/dejavu")
FONTS: Final = {
    "": FONT_DIR / "DejaVuSans.ttf",
    "B": FONT_DIR / "DejaVuSans-Bold.ttf",
    "I": FONT_DIR / "DejaVuSans-Oblique.ttf",
}
FAMILY: Final = "DejaVu"
# Fixed so that regenerating gives identical bytes.
CREATED: Final = datetime(2025, 6, 1, 0, 0, 0, tzinfo=UTC)
PRODUCER: Final = "Agency Ledger scripts/make_examples.py"
# The fpdf2 release the committed PDFs were made with; another release may
# lay out text differently, so --check only compares bytes under this one.
FPDF2_VERSION: Final = "2.8.9"
MARGIN: Final = 20.0
PAGE_W: Final = 210.0
TEXT_W: Final = PAGE_W - 2 * MARGIN
PROVINCE: Final = "tỉnh Sông Xanh"
HOME: Final = "Số 27 đường Lê Lợi, phường Bến Đò, thành phố Sông Xanh, tỉnh Sông Xanh"

SPECIMEN_VI: Final = (
    "BẢN MẪU – KHÔNG CÓ GIÁ TRỊ PHÁP LÝ. Tài liệu mẫu của dự án Agency Ledger; "
    "mọi cá nhân, số hiệu và cơ quan trong tài liệu đều là hư cấu."
)
SPECIMEN_EN: Final = (
    "SPECIMEN – NO LEGAL VALUE. A sample document of the Agency Ledger project; "
    "every person, number and agency in it is fictional."
)


@dataclass(frozen=True, kw_only=True)
class Example:
    file: str
    agency: str  # the trust-list agency id: police | justice | health
    doc_type: str  # a doc type granted to that agency
    title: str  # the document's title as printed
    title_en: str
    issued_on: str  # ISO date
    valid_until: str | None = None  # ISO date, when the document expires
    supersedes: str | None = None  # file name of the version it replaces
    parent: str  # the authority above the issuing office (header, left)
    office: str  # the issuing office (header, left, bold)
    number: str
    place_date: str
    subtitle: str | None = None
    sections: tuple[tuple[str | None, tuple[tuple[str, str], ...]], ...]
    notes: tuple[str, ...] = ()
    signer_role: tuple[str, ...]
    signer_name: str


POLICE_PARENT: Final = "BỘ CÔNG AN"
POLICE: Final = "CÔNG AN TỈNH SÔNG XANH"
JUSTICE_PARENT: Final = "UBND TỈNH SÔNG XANH"
JUSTICE: Final = "SỞ TƯ PHÁP"
HEALTH_PARENT: Final = "SỞ Y TẾ TỈNH SÔNG XANH"
HEALTH: Final = "BỆNH VIỆN ĐA KHOA TỈNH"

NO_RECORD: Final = "Không có án tích"
NOT_BANNED: Final = (
    "Không bị cấm đảm nhiệm chức vụ, thành lập, quản lý doanh nghiệp, hợp tác xã"
)


def _inline(*pairs: tuple[str, str]) -> tuple[str, str]:
    """Short facts on one line: the first label, then "value · **label:** value"."""
    (label, value), rest = pairs[0], pairs[1:]
    return label, "   ".join([value, *(f"**{k}:** {v}" for k, v in rest)])


def _criminal_record(
    *, file: str, name: str, sex: str, born: str, birthplace: str, pid: str,
    number: str, day: int, month: int, issued_on: str, valid_until: str,
    purpose: str,
) -> Example:  # fmt: skip
    return Example(
        file=file,
        agency="police",
        doc_type="criminal_record",
        title="PHIẾU LÝ LỊCH TƯ PHÁP SỐ 1",
        title_en="Criminal record certificate No. 1",
        issued_on=issued_on,
        valid_until=valid_until,
        parent=POLICE_PARENT,
        office=POLICE,
        number=number,
        place_date=f"Sông Xanh, ngày {day} tháng {month} năm 2026",
        sections=(
            (
                None,
                (
                    ("Họ và tên", name),
                    ("Giới tính", sex),
                    ("Ngày, tháng, năm sinh", born),
                    ("Nơi sinh", birthplace),
                    ("Quốc tịch", "Việt Nam"),
                    ("Dân tộc", "Kinh"),
                    ("Nơi cư trú", HOME),
                    ("Số định danh cá nhân", pid),
                ),
            ),
            (
                "NỘI DUNG",
                (
                    ("Tình trạng án tích", NO_RECORD),
                    (
                        "Thông tin về việc cấm đảm nhiệm chức vụ, thành lập, "
                        "quản lý doanh nghiệp, hợp tác xã",
                        NOT_BANNED,
                    ),
                    ("Mục đích sử dụng", purpose),
                ),
            ),
        ),
        notes=(
            "Phiếu được cấp theo yêu cầu của đương sự, căn cứ Cơ sở dữ liệu "
            "lý lịch tư pháp tính đến ngày cấp.",
        ),
        signer_role=("KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"),
        signer_name="Đại tá Phạm Quang Vinh",
    )


def _birth(*, file: str, mother: str, amended: bool) -> Example:
    notes: tuple[str, ...] = ()
    if amended:
        notes = (
            "Cải chính hộ tịch: họ, chữ đệm, tên người mẹ được sửa từ "
            "“Nguyễn Thị Thu Hả” thành “Nguyễn Thị Thu Hà” theo Quyết định số "
            "57/QĐ-STP ngày 20/3/2024 của Sở Tư pháp tỉnh Sông Xanh.",
            "Bản cấp lại này thay thế Giấy khai sinh số 412/2024 cấp ngày 10/02/2024.",
        )
    return Example(
        file=file,
        agency="justice",
        doc_type="birth_registration",
        title="GIẤY KHAI SINH",
        title_en="Birth certificate"
        + (", reissued after correction" if amended else ""),
        issued_on="2024-03-25" if amended else "2024-02-10",
        supersedes="birth-certificate-tran-minh-khoi.pdf" if amended else None,
        parent=JUSTICE_PARENT,
        office=JUSTICE,
        number="Số: 412/2024"
        + (" (cấp lại)" if amended else "")
        + " · Quyển số: 01/2024",
        place_date=(
            "Sông Xanh, ngày 25 tháng 3 năm 2024"
            if amended
            else "Sông Xanh, ngày 10 tháng 02 năm 2024"
        ),
        subtitle="(Bản cấp lại sau cải chính hộ tịch)" if amended else None,
        sections=(
            (
                None,
                (
                    ("Họ, chữ đệm, tên", "TRẦN MINH KHÔI"),
                    ("Ngày, tháng, năm sinh", "03/02/2024"),
                    (
                        "Ghi bằng chữ",
                        "Ngày ba, tháng hai, năm hai nghìn không trăm hai mươi tư",
                    ),
                    _inline(
                        ("Giới tính", "Nam"),
                        ("Dân tộc", "Kinh"),
                        ("Quốc tịch", "Việt Nam"),
                    ),
                    ("Nơi sinh", "Bệnh viện Đa khoa tỉnh Sông Xanh"),
                    ("Quê quán", "Xã Tân Phú, huyện Hòa Bình, tỉnh Sông Xanh"),
                    ("Số định danh cá nhân", "099224001875"),
                ),
            ),
            (
                "NGƯỜI MẸ",
                (
                    ("Họ, chữ đệm, tên", mother),
                    _inline(
                        ("Năm sinh", "1995"),
                        ("Dân tộc", "Kinh"),
                        ("Quốc tịch", "Việt Nam"),
                    ),
                    ("Nơi cư trú", HOME),
                ),
            ),
            (
                "NGƯỜI CHA",
                (
                    ("Họ, chữ đệm, tên", "TRẦN VĂN NAM"),
                    _inline(
                        ("Năm sinh", "1993"),
                        ("Dân tộc", "Kinh"),
                        ("Quốc tịch", "Việt Nam"),
                    ),
                    ("Nơi cư trú", HOME),
                ),
            ),
            (
                None,
                (
                    ("Người đi khai sinh", "Trần Văn Nam (cha)"),
                    _inline(
                        ("Nơi đăng ký", "Sở Tư pháp tỉnh Sông Xanh"),
                        ("Ngày đăng ký", "10/02/2024"),
                    ),
                ),
            ),
        ),
        notes=notes,
        signer_role=("KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"),
        signer_name="Võ Thị Ngọc Lan",
    )


def _spouse(name: str, born: str, pid: str) -> tuple[tuple[str, str], ...]:
    return (
        ("Họ, chữ đệm, tên", name),
        _inline(
            ("Ngày, tháng, năm sinh", born),
            ("Dân tộc", "Kinh"),
            ("Quốc tịch", "Việt Nam"),
        ),
        ("Nơi cư trú", HOME),
        ("Số định danh cá nhân", pid),
    )


EXAMPLES: Final = (
    _criminal_record(
        file="criminal-record-1-nguyen-thi-hong-nhung.pdf",
        name="NGUYỄN THỊ HỒNG NHUNG",
        sex="Nữ",
        born="14/08/1996",
        birthplace="Xã Tân Phú, huyện Hòa Bình, tỉnh Sông Xanh",
        pid="099196004521",
        number="Số: 00125/2026/LLTP",
        day=12,
        month=11,
        issued_on="2026-11-12",
        valid_until="2027-05-12",
        purpose="Bổ sung hồ sơ xin việc",
    ),
    _criminal_record(
        file="criminal-record-1-tran-quoc-bao.pdf",
        name="TRẦN QUỐC BẢO",
        sex="Nam",
        born="02/11/1990",
        birthplace="Phường Bến Đò, thành phố Sông Xanh, tỉnh Sông Xanh",
        pid="099090011372",
        number="Số: 00131/2026/LLTP",
        day=14,
        month=11,
        issued_on="2026-11-14",
        valid_until="2027-05-14",
        purpose="Xin cấp giấy phép lao động ở nước ngoài",
    ),
    _birth(
        file="birth-certificate-tran-minh-khoi.pdf",
        mother="NGUYỄN THỊ THU HẢ",
        amended=False,
    ),
    _birth(
        file="birth-certificate-tran-minh-khoi-amended.pdf",
        mother="NGUYỄN THỊ THU HÀ",
        amended=True,
    ),
    Example(
        file="marriage-certificate-le-van-duc-pham-thi-thu-trang.pdf",
        agency="justice",
        doc_type="marriage_registration",
        title="GIẤY CHỨNG NHẬN KẾT HÔN",
        title_en="Marriage certificate",
        issued_on="2025-02-14",
        parent=JUSTICE_PARENT,
        office=JUSTICE,
        number="Số: 58/2025 · Quyển số: 01/2025",
        place_date="Sông Xanh, ngày 14 tháng 02 năm 2025",
        sections=(
            ("CHỒNG", _spouse("LÊ VĂN ĐỨC", "21/05/1992", "099092003318")),
            ("VỢ", _spouse("PHẠM THỊ THU TRANG", "09/09/1994", "099194007762")),
            (
                None,
                (
                    ("Nơi đăng ký kết hôn", "Sở Tư pháp tỉnh Sông Xanh"),
                    ("Ngày đăng ký", "14/02/2025"),
                ),
            ),
        ),
        notes=("Hai bên nam, nữ đã tự nguyện kết hôn và cùng ký vào Sổ hộ tịch.",),
        signer_role=("KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"),
        signer_name="Võ Thị Ngọc Lan",
    ),
    Example(
        file="health-certificate-hoang-thi-mai.pdf",
        agency="health",
        doc_type="health_record",
        title="GIẤY KHÁM SỨC KHỎE",
        title_en="Health certificate",
        issued_on="2026-10-08",
        valid_until="2027-10-08",
        parent=HEALTH_PARENT,
        office=HEALTH,
        number="Số: 2187/GKSK-BVĐK",
        place_date="Sông Xanh, ngày 08 tháng 10 năm 2026",
        sections=(
            (
                None,
                (
                    ("Họ và tên", "HOÀNG THỊ MAI"),
                    _inline(("Giới tính", "Nữ"), ("Ngày sinh", "30/06/1998")),
                    ("Số định danh cá nhân", "099198002640"),
                    ("Nơi cư trú", HOME),
                    ("Lý do khám sức khỏe", "Khám sức khỏe đi làm"),
                ),
            ),
            (
                "KẾT QUẢ KHÁM",
                (
                    (
                        "Thể lực",
                        "Chiều cao 158 cm, cân nặng 50 kg, huyết áp 110/70 mmHg",
                    ),
                    ("Nội khoa", "Bình thường"),
                    ("Ngoại khoa", "Bình thường"),
                    ("Mắt", "Thị lực mắt phải 10/10, mắt trái 10/10"),
                    ("Tai - Mũi - Họng", "Bình thường"),
                    ("Răng - Hàm - Mặt", "Bình thường"),
                    ("Da liễu", "Bình thường"),
                    ("Cận lâm sàng", "Công thức máu, X-quang tim phổi: bình thường"),
                ),
            ),
            (
                "KẾT LUẬN",
                (
                    ("Phân loại sức khỏe", "Loại I"),
                    ("Kết luận", "Đủ sức khỏe để làm việc"),
                ),
            ),
        ),
        notes=("Giấy khám sức khỏe có giá trị trong 12 tháng kể từ ngày ký.",),
        signer_role=("NGƯỜI KẾT LUẬN",),
        signer_name="BS.CKII Đỗ Thanh Tùng",
    ),
)


def _nfc(text: str) -> str:
    # Vietnamese typed on some keyboards arrives decomposed (base letter plus
    # combining marks); DejaVu has every precomposed letter, so compose first.
    return unicodedata.normalize("NFC", text)


class Certificate(FPDF):
    def __init__(self, example: Example) -> None:
        super().__init__(format="A4", unit="mm")
        self.example = example
        for style, path in FONTS.items():
            self.add_font(FAMILY, style, str(path))
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=28)
        self.set_creation_date(CREATED)
        self.set_producer(PRODUCER)
        self.set_creator(PRODUCER)
        self.set_title(_nfc(f"{example.title} – {example.title_en}"))
        self.set_author(_nfc(f"{example.parent} · {example.office}"))
        self.set_subject(SPECIMEN_EN)
        self.set_lang("vi-VN")

    def footer(self) -> None:
        self.set_y(-26)
        self.set_draw_color(150, 150, 150)
        self.line(MARGIN, self.get_y(), PAGE_W - MARGIN, self.get_y())
        self.ln(1.5)
        self.set_text_color(90, 90, 90)
        self.set_font(FAMILY, "", 7.5)
        for line in (SPECIMEN_VI, SPECIMEN_EN):
            self.multi_cell(TEXT_W, 3.6, _nfc(line), align="L",
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        self.set_text_color(0, 0, 0)


def _header(pdf: Certificate, ex: Example) -> None:
    left_w, right_w, top = 74.0, 96.0, MARGIN
    pdf.set_xy(MARGIN, top)
    pdf.set_font(FAMILY, "", 10)
    pdf.multi_cell(left_w, 5, _nfc(ex.parent), align="C", new_x=XPos.LMARGIN)
    pdf.set_font(FAMILY, "B", 10)
    pdf.multi_cell(left_w, 5, _nfc(ex.office), align="C", new_x=XPos.LMARGIN)
    y = pdf.get_y() + 1
    pdf.line(MARGIN + left_w / 2 - 12, y, MARGIN + left_w / 2 + 12, y)
    pdf.set_xy(MARGIN, y + 2)
    pdf.set_font(FAMILY, "", 9)
    pdf.multi_cell(left_w, 5, _nfc(ex.number), align="C", new_x=XPos.LMARGIN)
    left_bottom = pdf.get_y()

    right_x = PAGE_W - MARGIN - right_w
    pdf.set_xy(right_x, top)
    pdf.set_font(FAMILY, "B", 10)
    pdf.cell(right_w, 5, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", align="C",
             new_x=XPos.LEFT, new_y=YPos.NEXT)  # fmt: skip
    motto = _nfc("Độc lập - Tự do - Hạnh phúc")
    pdf.cell(right_w, 5.5, motto, align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
    half = pdf.get_string_width(motto) / 2
    centre = right_x + right_w / 2
    pdf.line(centre - half, pdf.get_y() + 0.3, centre + half, pdf.get_y() + 0.3)
    pdf.ln(3)
    pdf.set_x(right_x)
    pdf.set_font(FAMILY, "I", 9.5)
    pdf.cell(
        right_w, 5, _nfc(ex.place_date), align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
    )
    pdf.set_y(max(left_bottom, pdf.get_y()) + 9)


def _watermark(pdf: Certificate) -> None:
    pdf.set_text_color(232, 232, 232)
    pdf.set_font(FAMILY, "B", 54)
    with pdf.rotation(35, x=PAGE_W / 2, y=150):
        pdf.text(PAGE_W / 2 - pdf.get_string_width("BẢN MẪU") / 2, 160, "BẢN MẪU")
    pdf.set_text_color(0, 0, 0)


def _fields(pdf: Certificate, rows: Sequence[tuple[str, str]]) -> None:
    pdf.set_font(FAMILY, "", 10.5)
    for label, value in rows:
        # fpdf2's markdown: **bold** label, plain value, wrapped as one block.
        pdf.multi_cell(TEXT_W, 5.6, _nfc(f"**{label}:** {value}"), markdown=True,
                       align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        pdf.ln(0.6)


def _signature(pdf: Certificate, ex: Example) -> None:
    pdf.ln(6)
    x, w = PAGE_W - MARGIN - 80, 80.0
    pdf.set_x(x)
    pdf.set_font(FAMILY, "B", 10.5)
    for line in ex.signer_role:
        pdf.cell(w, 5.5, _nfc(line), align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FAMILY, "I", 9)
    pdf.cell(
        w, 5, _nfc("(Đã ký và đóng dấu)"), align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
    )
    pdf.ln(14)
    pdf.set_x(x)
    pdf.set_font(FAMILY, "B", 10.5)
    pdf.cell(w, 5.5, _nfc(ex.signer_name), align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)


def render(ex: Example) -> bytes:
    """The PDF bytes of one example; the same bytes on every run."""
    pdf = Certificate(ex)
    pdf.add_page()
    _watermark(pdf)
    _header(pdf, ex)
    pdf.set_font(FAMILY, "B", 16)
    pdf.cell(TEXT_W, 9, _nfc(ex.title), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if ex.subtitle:
        pdf.set_font(FAMILY, "I", 10)
        pdf.cell(TEXT_W, 6, _nfc(ex.subtitle), align="C",
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    pdf.ln(4)
    for heading, rows in ex.sections:
        if heading:
            pdf.ln(1.5)
            pdf.set_font(FAMILY, "B", 11)
            pdf.cell(TEXT_W, 7, _nfc(heading), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        _fields(pdf, rows)
    if ex.notes:
        pdf.ln(2)
        pdf.set_font(FAMILY, "I", 9.5)
        for note in ex.notes:
            pdf.multi_cell(TEXT_W, 5, _nfc(note), align="L",
                           new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    _signature(pdf, ex)
    if pdf.page != 1:
        raise SystemExit(f"{ex.file} does not fit on one page")
    return bytes(pdf.output())


def manifest(outputs: dict[str, bytes]) -> list[dict[str, str]]:
    entries = []
    for ex in EXAMPLES:
        entry = {
            "file": ex.file,
            "agency": ex.agency,
            "doc_type": ex.doc_type,
            "title": _nfc(ex.title),
            "title_en": ex.title_en,
            "issued_on": ex.issued_on,
        }
        if ex.valid_until is not None:
            entry["valid_until"] = ex.valid_until
        if ex.supersedes is not None:
            entry["supersedes"] = ex.supersedes
        entry["sha256"] = hashlib.sha256(outputs[ex.file]).hexdigest()
        entries.append(entry)
    return entries


AGENCY_NAMES: Final = {
    "police": "Công an tỉnh Sông Xanh (provincial police)",
    "justice": "Sở Tư pháp tỉnh Sông Xanh (department of justice)",
    "health": "Sở Y tế tỉnh Sông Xanh (department of health)",
}


def readme(entries: Sequence[dict[str, str]]) -> str:
    lines = [
        "# Sample certificates",
        "",
        "Made-up certificates for demos and tests, in Vietnamese with full",
        "diacritics, from the three agencies of the sample trust list. Every",
        "person, number and agency is fictional (*tỉnh Sông Xanh* is not a real",
        "province) and every page is marked *BẢN MẪU – KHÔNG CÓ GIÁ TRỊ PHÁP LÝ*",
        "(specimen, no legal value).",
        "",
        "Generated by `scripts/make_examples.py` with a fixed creation date, so",
        f"regenerating with fpdf2 {FPDF2_VERSION} gives identical bytes (`--check`",
        "verifies this). Do not edit the PDFs by hand: their SHA-256 is what gets",
        "anchored.",
        "",
        "| file | agency | doc_type | title | supersedes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        supersedes = f"`{e['supersedes']}`" if "supersedes" in e else ""
        lines.append(
            f"| `{e['file']}` | `{e['agency']}` | `{e['doc_type']}` | "
            f"{e['title']} ({e['title_en']}) | {supersedes} |"
        )
    lines += [
        "",
        "Agencies (their trust-list ids):",
        "",
        *(f"- `{k}`: {v}" for k, v in AGENCY_NAMES.items()),
        "",
        "`manifest.json` holds the same list for programs: per file `file`,",
        "`agency`, `doc_type`, `title` (as printed), `title_en`, `issued_on`",
        "(ISO date), `valid_until` (ISO date, when the document expires),",
        "`supersedes` (the file an amended version replaces: anchor both, then",
        "supersede the old one) and `sha256` (of the file).",
        "",
        "The PDFs carry no QR code on purpose: the QR holds the document id,",
        "which is a hash of the file itself, so it goes on the paper copy or the",
        "holder's receipt, not into the anchored file.",
        "",
    ]
    return "\n".join(lines)


def build() -> dict[str, bytes]:
    """Every file of examples/: the PDFs, manifest.json and README.md."""
    outputs = {ex.file: render(ex) for ex in EXAMPLES}
    entries = manifest(outputs)
    text = json.dumps(entries, ensure_ascii=False, indent=2) + "\n"
    outputs["manifest.json"] = text.encode("utf-8")
    outputs["README.md"] = readme(entries).encode("utf-8")
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples")
    parser.add_argument(
        "--check", action="store_true", help="compare with --out instead of writing"
    )
    args = parser.parse_args(argv)
    if fpdf.__version__ != FPDF2_VERSION:
        print(
            f"warning: fpdf2 {fpdf.__version__} is not {FPDF2_VERSION}, which made "
            "the committed PDFs; the bytes may differ",
            file=sys.stderr,
        )
    outputs = build()
    if args.check:
        stale = [
            name
            for name, data in outputs.items()
            if not (args.out / name).is_file() or (args.out / name).read_bytes() != data
        ]
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in outputs.items():
        # Write then rename, so an interrupted run leaves no half-written PDF.
        with tempfile.NamedTemporaryFile(dir=args.out, delete=False) as tmp:
            tmp.write(data)
        Path(tmp.name).chmod(0o644)
        Path(tmp.name).replace(args.out / name)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
