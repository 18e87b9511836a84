"""The verify page in Debian's headless Chromium.

A test-local app serves ``render_verify_page`` for real ``VerifyView`` values
(valid, revoked, superseded, not found, tampered) and the static files; the
browser reads the banners in both languages, switches language keeping the
salt fragment, and checks a PDF with WebCrypto, first chosen in the file
input, then dropped on the drop zone. Screenshots go to a temporary folder
named at the end of the run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.middleware.base import RequestResponseEndpoint

from api.i18n import normalize_lang, text
from api.verify_page import (
    STATIC_DIR,
    VERIFY_PAGE_HEADERS,
    VerifyView,
    render_verify_page,
)
from ledger.domains import DOC_ID
from tests.api.browser import (
    SMALL_PHONE,
    Browser,
    banner,
    dump_dom,
    requires_chromium,
    save,
    screenshot,
    serve,
    settled,
)

pytestmark = requires_chromium

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "criminal-record-1-nguyen-thi-hong-nhung.pdf"
SALT = bytes.fromhex("7f3a9c0e5b21d4486e0f9a1c2b3d4e5f")
CHECKPOINT_MS = 1_741_170_600_000  # 05/03/2025 17:30 in Vietnam
POLICE = {"vi": "Công an tỉnh Sông Xanh", "en": "Song Xanh Provincial Police"}
JUSTICE = {"vi": "Sở Tư pháp tỉnh Sông Xanh", "en": "Song Xanh Department of Justice"}

T = TypeVar("T")
MISMATCH = f"expected {'ab' * 32}, computed {'cd' * 32}"


def doc_id(salt: bytes, document: bytes) -> str:
    return hashlib.sha256(DOC_ID + salt + hashlib.sha256(document).digest()).hexdigest()


VALID = doc_id(SALT, EXAMPLE.read_bytes())
REVOKED = "11" * 32
SUPERSEDED = "22" * 32
NEW = "33" * 32
TAMPERED = "44" * 32
MISSING = "55" * 32
IDS = {
    "valid": VALID,
    "revoked": REVOKED,
    "superseded": SUPERSEDED,
    "not_found": MISSING,
    "tampered": TAMPERED,
}
# Written out rather than read from api.i18n, so a changed translation shows.
BANNERS = {
    "valid": ("Hợp lệ", "Valid"),
    "revoked": ("Đã bị thu hồi", "Revoked"),
    "superseded": ("Đã được thay thế", "Superseded"),
    "not_found": ("Không tìm thấy", "Not found"),
    "tampered": ("Dữ liệu bị sửa đổi", "Tampered"),
}
BACKGROUNDS = {
    "valid": "rgb(231, 245, 236)",
    "revoked": "rgb(253, 236, 236)",
    "superseded": "rgb(232, 240, 254)",
    "not_found": "rgb(253, 236, 236)",
    "tampered": "rgb(253, 236, 236)",
}


def _view(doc: str, status: str, **fields: object) -> VerifyView:
    common: dict[str, object] = {
        "doc_id_hex": doc,
        "status": status,
        "checkpoint_time_ms": CHECKPOINT_MS,
        "tree_size": 1_024,
        "height": 12,
    }
    return VerifyView(**common, **fields)  # type: ignore[arg-type]


POLICE_DOC: dict[str, object] = {
    "issuer_id": "police",
    "issuer_names": POLICE,
    "doc_type": "criminal_record",
    "issued_at_ms": 1_741_745_000_000,
    "valid_until_ms": 1_757_643_000_000,
}
JUSTICE_DOC: dict[str, object] = {
    "issuer_id": "justice",
    "issuer_names": JUSTICE,
    "doc_type": "birth_registration",
    "issued_at_ms": 1_707_530_000_000,
}
VIEWS = {
    VALID: _view(VALID, "valid", **POLICE_DOC),
    REVOKED: _view(
        REVOKED,
        "revoked",
        revoked_at_ms=1_742_000_000_000,
        revoke_reason="issued_in_error",
        **POLICE_DOC,
    ),
    SUPERSEDED: _view(SUPERSEDED, "superseded", superseded_by_hex=NEW, **JUSTICE_DOC),
    NEW: _view(NEW, "valid", **JUSTICE_DOC),
    # A real message of the verifier, with two 64-digit hashes a phone
    # screen must wrap.
    TAMPERED: _view(TAMPERED, "tampered", detail=f"inclusion proof: {MISMATCH}"),
}


@dataclass
class Site:
    url: str
    # Paths the server was asked for, in order (the favicon left out).
    requests: list[str] = field(default_factory=list)


def make_app(site_requests: list[str]) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path != "/favicon.ico":
            site_requests.append(request.url.path)
        return await call_next(request)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/v/{doc}")
    def verify(doc: str, lang: str | None = None) -> HTMLResponse:
        view = VIEWS.get(doc) or _view(doc, "not_found")
        page = render_verify_page(view, normalize_lang(lang))
        return HTMLResponse(page, headers=dict(VERIFY_PAGE_HEADERS))

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    requests: list[str] = []
    with serve(make_app(requests)) as url:
        yield Site(url=url, requests=requests)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(window=SMALL_PHONE) as session:
        yield session


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("verify-page-screenshots")


@pytest.mark.parametrize("status", list(IDS))
def test_banner_in_both_languages(
    site: Site, browser: Browser, shots: Path, status: str
) -> None:
    for index, lang in enumerate(("vi", "en")):
        browser.get(f"{site.url}/v/{IDS[status]}?lang={lang}#{SALT.hex()}")
        assert banner(browser) == BANNERS[status][index]
        assert browser.execute("return document.documentElement.lang") == lang
        explanation = browser.text(browser.find("#status-text"))
        assert explanation and explanation != banner(browser)
        # The stylesheet loaded under the page's CSP and tints the banner.
        background = browser.execute(
            "return getComputedStyle(document.getElementById('status')).backgroundColor"
        )
        assert background == BACKGROUNDS[status]
        assert browser.find_all("#status .icon svg")
        # Readable on a 360 px phone: nothing wider than the screen. Against
        # clientWidth: a phone widens innerWidth to fit a page too wide
        # (zoomed out), so that comparison missed a detail line's 64-digit
        # hash running off the card.
        overflow = browser.execute(
            "return document.documentElement.scrollWidth"
            " - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        save(browser, shots / f"{status}-{lang}.png")


def test_details_are_translated(site: Site, browser: Browser) -> None:
    browser.get(f"{site.url}/v/{REVOKED}#{SALT.hex()}")
    reason = browser.text(browser.find("#row-revoke-reason"))
    assert reason == "Lý do thu hồi\nCấp nhầm"
    assert browser.text(browser.find("#row-issuer")).endswith("Công an tỉnh Sông Xanh")
    assert "Phiếu lý lịch tư pháp" in browser.text(browser.find("#row-doc-type"))
    browser.get(f"{site.url}/v/{REVOKED}?lang=en")
    reason = browser.text(browser.find("#row-revoke-reason"))
    assert reason == "Reason for revocation\nIssued in error"
    as_of = browser.text(browser.find("#as-of"))
    assert as_of.startswith("Status as of 5 March 2025, 17:30 UTC+7 (Vietnam time).")
    assert browser.text(browser.find("#row-revoked-at")).endswith(
        "15 March 2025, 07:53 UTC+7"
    )


def test_the_detail_line_is_in_the_pages_language(site: Site, browser: Browser) -> None:
    browser.get(f"{site.url}/v/{TAMPERED}")
    detail = browser.text(browser.find("#row-detail"))
    assert detail == (
        "Chi tiết\nBằng chứng ghi nhận không dẫn tới mã băm gốc của điểm kiểm "
        f"tra: cần {'ab' * 32}, tính được {'cd' * 32}."
    )
    browser.get(f"{site.url}/v/{TAMPERED}?lang=en")
    detail = browser.text(browser.find("#row-detail"))
    assert detail == f"Details\ninclusion proof: {MISMATCH}"


def test_language_link_keeps_the_salt_fragment(site: Site, browser: Browser) -> None:
    page = f"{site.url}/v/{VALID}"
    browser.get(f"{page}#{SALT.hex()}")
    assert banner(browser) == "Hợp lệ"
    link = browser.find("#lang-switch")
    assert browser.attribute(link, "href") == f"?lang=en#{SALT.hex()}"
    browser.click(link)
    settled(browser, lambda: banner(browser) == "Valid", "English page")
    assert browser.url == f"{page}?lang=en#{SALT.hex()}"
    browser.click(browser.find("#lang-switch"))
    settled(browser, lambda: banner(browser) == "Hợp lệ", "Vietnamese page")
    assert browser.url == f"{page}?lang=vi#{SALT.hex()}"


def _check_file(
    site: Site, browser: Browser, url: str, choose: Callable[[], None]
) -> tuple[str, str]:
    browser.get(url)
    field_ = browser.find("#file-input")
    settled(browser, lambda: browser.enabled(field_), "file input enabled")
    before = list(site.requests)
    choose()
    result = browser.find("#file-result")
    outcome = settled(
        browser,
        lambda: (
            browser.attribute(result, "data-outcome") in ("match", "mismatch")
            and browser.attribute(result, "data-outcome")
        ),
        "file check result",
    )
    # The file never left the device: the server saw no request at all.
    assert site.requests == before
    assert isinstance(outcome, str)
    # So the screenshot shows the verdict, not the top of the page.
    browser.scroll_to(result)
    return outcome, browser.text(result)


@pytest.mark.parametrize(
    ("lang", "salt", "tamper", "outcome"),
    [
        ("vi", SALT, False, "match"),
        ("en", SALT, False, "match"),
        ("en", SALT, True, "mismatch"),
        ("vi", SALT, True, "mismatch"),
        ("en", bytes(16), False, "mismatch"),
    ],
)
def test_file_input_checks_the_pdf_in_the_browser(
    site: Site,
    browser: Browser,
    shots: Path,
    tmp_path: Path,
    lang: str,
    salt: bytes,
    tamper: bool,
    outcome: str,
) -> None:
    data = bytearray(EXAMPLE.read_bytes())
    if tamper:
        # One changed byte deep inside the file, as an edited PDF would have.
        data[len(data) // 2] ^= 0x01
    document = tmp_path / "certificate.pdf"
    document.write_bytes(bytes(data))
    url = f"{site.url}/v/{VALID}?lang={lang}#{salt.hex()}"

    def choose() -> None:
        browser.upload(browser.find("#file-input"), document)

    got, shown = _check_file(site, browser, url, choose)
    assert got == outcome
    mark = "✓" if outcome == "match" else "✗"
    key = "file_match" if outcome == "match" else "file_mismatch"
    assert shown == f"{mark} {text(key, lang)}"
    expected = {
        ("vi", "match"): "Tệp khớp",
        ("en", "match"): "File matches",
        ("vi", "mismatch"): "Tệp KHÔNG khớp",
        ("en", "mismatch"): "File does NOT match (tampered",
    }[(lang, outcome)]
    assert expected in shown
    name = f"file-{outcome}-{lang}-{'tampered' if tamper else 'original'}"
    save(browser, shots / f"{name}-{salt.hex()[:4]}.png")


@pytest.mark.parametrize(("tamper", "outcome"), [(False, "match"), (True, "mismatch")])
def test_dropping_the_pdf_checks_it(
    site: Site, browser: Browser, shots: Path, tamper: bool, outcome: str
) -> None:
    data = bytearray(EXAMPLE.read_bytes())
    if tamper:
        data[-100] ^= 0x20
    payload = base64.b64encode(bytes(data)).decode("ascii")

    def drop() -> None:
        # WebDriver cannot drag a file from the desktop; dispatch the same
        # drop event a browser would, carrying a real File.
        browser.execute(
            "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
            "const dt = new DataTransfer();"
            "dt.items.add(new File([bytes], 'certificate.pdf',"
            " {type: 'application/pdf'}));"
            "const zone = document.getElementById('drop-zone');"
            "zone.dispatchEvent(new DragEvent('dragover',"
            " {dataTransfer: dt, bubbles: true, cancelable: true}));"
            "zone.dispatchEvent(new DragEvent('drop',"
            " {dataTransfer: dt, bubbles: true, cancelable: true}));",
            payload,
        )

    url = f"{site.url}/v/{VALID}?lang=en#{SALT.hex()}"
    got, shown = _check_file(site, browser, url, drop)
    assert got == outcome
    assert text("file_match" if outcome == "match" else "file_mismatch", "en") in shown
    save(browser, shots / f"drop-{outcome}-en.png")


def test_the_file_button_is_in_the_pages_language(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    """Regression: the native file input showed the browser's "Choose File"
    and "No file chosen" on a Vietnamese page; its label is the button now,
    and the page names the file chosen."""
    browser.get(f"{site.url}/v/{VALID}#{SALT.hex()}")
    field_ = browser.find("#file-input")
    settled(browser, lambda: browser.enabled(field_), "file input enabled")
    box = browser.execute(
        "const r = document.getElementById('file-input').getBoundingClientRect();"
        "return [r.width, r.height]"
    )
    assert max(box) <= 1  # out of sight, still in the page and the tab order
    assert browser.text(browser.find("#drop-zone label")) == "Chọn tệp PDF"
    assert browser.text(browser.find("#file-name")) == ""  # hidden until chosen
    document = tmp_path / "giay-chung-nhan.pdf"
    document.write_bytes(EXAMPLE.read_bytes())
    browser.upload(field_, document)
    name = settled(browser, lambda: browser.text(browser.find("#file-name")), "name")
    assert name == "giay-chung-nhan.pdf"


@pytest.mark.parametrize("fragment", ["", "#", "#not-a-salt", "#" + "ab" * 15])
def test_missing_salt_says_the_link_is_incomplete(
    site: Site, browser: Browser, fragment: str
) -> None:
    browser.get(f"{site.url}/v/{VALID}?lang=en{fragment}")
    notice = settled(
        browser, lambda: browser.text(browser.find("#salt-missing")), "notice"
    )
    assert notice == text("no_salt", "en")
    assert notice.startswith("The QR link is incomplete")
    assert not browser.enabled(browser.find("#file-input"))


def test_superseded_links_to_the_new_document(
    site: Site, browser: Browser, shots: Path
) -> None:
    browser.get(f"{site.url}/v/{SUPERSEDED}?lang=en#{SALT.hex()}")
    note = browser.text(browser.find("#superseded-note"))
    assert "salt" in note
    browser.click(browser.find("#superseded-link"))
    settled(browser, lambda: browser.url.endswith(f"/v/{NEW}?lang=en"), "new doc")
    assert banner(browser) == "Valid"
    # The new document's salt is not in the link, so its file cannot be
    # checked from here, and the page says why.
    assert browser.text(browser.find("#salt-missing")).startswith(
        "The QR link is incomplete"
    )
    save(browser, shots / "superseded-followed-en.png")


def test_one_shot_helpers(site: Site, shots: Path) -> None:
    url = f"{site.url}/v/{MISSING}?lang=en"
    dom = dump_dom(url)
    assert '<h2 id="status-title">Not found</h2>' in dom
    assert 'id="file-check"' not in dom
    path = screenshot(f"{site.url}/v/{VALID}#{SALT.hex()}", shots / "cli-valid-vi.png")
    with Image.open(path) as image:
        assert image.size == (412, 915)


def test_the_skip_link_moves_the_focus_and_keeps_the_salt(
    site: Site, browser: Browser
) -> None:
    """Going to #main would replace the salt in the fragment, and with it
    the keyboard user's file check."""
    browser.get(f"{site.url}/v/{VALID}#{SALT.hex()}")
    field_ = browser.find("#file-input")
    settled(browser, lambda: browser.enabled(field_), "file input enabled")
    # Shown only when it has the focus, as a keyboard user meets it.
    browser.execute("document.querySelector('a.skip').focus()")
    browser.click(browser.find("a.skip"))
    focused = settled(
        browser, lambda: browser.execute("return document.activeElement.id"), "focus"
    )
    assert focused == "main"
    assert browser.execute("return location.hash") == f"#{SALT.hex()}"
    assert browser.enabled(field_)


def test_a_result_goes_when_the_salt_it_was_made_with_does(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    document = tmp_path / "certificate.pdf"
    document.write_bytes(EXAMPLE.read_bytes())
    url = f"{site.url}/v/{VALID}?lang=en#{SALT.hex()}"

    def choose() -> None:
        browser.upload(browser.find("#file-input"), document)

    assert _check_file(site, browser, url, choose)[0] == "match"
    result = browser.find("#file-result")
    browser.execute(f"location.hash = '#{bytes(16).hex()}'")
    settled(browser, lambda: browser.text(result) == "", "result cleared")
    assert browser.attribute(result, "data-outcome") is None
