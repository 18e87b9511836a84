"""The verify page as HTML: translations (the verifier's detail line
included), dates, escaping, links, what is shown when; and how the page and
its static files may be cached."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.i18n import (
    DETAIL_LEADS,
    DETAIL_TEXT,
    DOC_TYPE_NAMES,
    LANGS,
    MAX_SHOWN_MS,
    MESSAGES,
    REVOKE_REASON_NAMES,
    STATUS_TEXT,
    detail_text,
    doc_type_name,
    format_count,
    format_time,
    normalize_lang,
    revoke_reason_name,
    text,
)
from api.verify_page import (
    PAGE_CSP,
    STATIC_DIR,
    STATIC_IMMUTABLE,
    STATIC_REVALIDATE,
    VERIFY_PAGE_HEADERS,
    VerifyView,
    render_verify_page,
    static_version,
)
from ledger.bundle import build_bundle
from ledger.domains import DOC_ID
from ledger.errors import STATUSES, StorageError, VerificationError
from ledger.note import format_note, parse_note
from ledger.store import LedgerStore
from ledger.verify import verify_bundle
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import LocalChain
from tests.ledger import store_helpers as ledger

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")

DOC = "0f" * 32
NEW_DOC = "a1" * 32
# 2025-03-05 07:30 UTC = 14:30 in Vietnam.
ISSUED_MS = 1_741_159_800_000
NAMES = {"vi": "Công an tỉnh Sông Xanh", "en": "Song Xanh Provincial Police"}
VOID = frozenset({"meta", "link", "input", "br", "img", "path", "circle"})


class Page(HTMLParser):
    """Element text and attributes by id, plus a nesting check."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.texts: dict[str, list[str]] = {}
        self.stack: list[tuple[str, str | None]] = []
        self.feed(source)
        self.close()
        assert self.stack == [], f"unclosed elements: {self.stack}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element_id = dict(attrs).get("id")
        if element_id is not None:
            assert element_id not in self.attrs, f"duplicate id {element_id}"
            self.attrs[element_id] = dict(attrs)
            self.texts[element_id] = []
        if tag not in VOID:
            self.stack.append((tag, element_id))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        open_tag, _ = self.stack.pop()
        assert open_tag == tag, f"</{tag}> closes <{open_tag}>"

    def handle_data(self, data: str) -> None:
        for _, element_id in self.stack:
            if element_id is not None:
                self.texts[element_id].append(data)

    def text(self, element_id: str) -> str:
        return " ".join(" ".join(self.texts[element_id]).split())


def view(status: str = "valid", **fields: object) -> VerifyView:
    base: dict[str, object] = {
        "doc_id_hex": DOC,
        "status": status,
        "issuer_id": "police",
        "issuer_names": NAMES,
        "doc_type": "criminal_record",
        "issued_at_ms": ISSUED_MS,
        "checkpoint_time_ms": ISSUED_MS + 3_600_000,
        "tree_size": 12_345,
        "height": 42,
    }
    base.update(fields)
    return VerifyView(**base)  # type: ignore[arg-type]


def test_every_message_exists_in_both_languages() -> None:
    for key, pair in MESSAGES.items():
        assert len(pair) == len(LANGS) and all(pair), key
    assert set(STATUS_TEXT) == set(STATUSES)
    for pairs in STATUS_TEXT.values():
        assert all(title and body for title, body in pairs)


def test_doc_types_and_reasons_are_translated() -> None:
    assert doc_type_name("criminal_record", "vi") == "Phiếu lý lịch tư pháp"
    assert doc_type_name("criminal_record", "en") == "Criminal record certificate"
    assert doc_type_name("birth_registration", "vi") == "Giấy khai sinh"
    assert doc_type_name("marriage_registration", "vi") == "Giấy chứng nhận kết hôn"
    assert doc_type_name("land_use", "vi") == "Giấy chứng nhận quyền sử dụng đất"
    assert doc_type_name("land_use", "en") == "Land use right certificate"
    assert doc_type_name("health_record", "vi") == "Hồ sơ sức khỏe"
    assert doc_type_name("fishing_licence", "en") == "fishing_licence"
    # The sample types and reason codes of docs/internals.md (ledger.entries).
    assert set(DOC_TYPE_NAMES) == {
        "criminal_record",
        "birth_registration",
        "marriage_registration",
        "land_use",
        "health_record",
    }
    assert set(REVOKE_REASON_NAMES) == {
        "issued_in_error",
        "withdrawn",
        "court_order",
        "holder_request",
        "key_compromise",
        "other",
    }
    assert revoke_reason_name("court_order", "vi") == "Theo quyết định của tòa án"
    assert revoke_reason_name("court_order", "en") == "By court order"


def test_time_and_numbers() -> None:
    assert format_time(0) == "01/01/1970 07:00 UTC+7"
    assert format_time(ISSUED_MS) == "05/03/2025 14:30 UTC+7"
    # 23:59:59.999 UTC is already the next day in Vietnam.
    assert format_time(1_735_689_599_999) == "01/01/2025 06:59 UTC+7"
    assert format_count(1_234_567, "vi") == "1.234.567"
    assert format_count(1_234_567, "en") == "1,234,567"


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (0, "1 January 1970, 07:00 UTC+7"),
        (ISSUED_MS, "5 March 2025, 14:30 UTC+7"),
        # 4 December, which dd/mm and mm/dd readers took for different days.
        (1_796_362_200_000, "4 December 2026, 12:30 UTC+7"),
        (1_735_689_599_999, "1 January 2025, 06:59 UTC+7"),
    ],
)
def test_english_times_name_the_month_and_the_zone(ms: int, shown: str) -> None:
    """Regression: English showed 05/03/2025, the 3rd of May to an American
    reader, and no zone in the rows; Vietnamese keeps dd/mm/yyyy."""
    assert format_time(ms, "en") == shown


def test_every_time_on_the_page_states_its_zone() -> None:
    revoked = view(
        "revoked",
        valid_from_ms=ISSUED_MS,
        valid_until_ms=ISSUED_MS,
        revoked_at_ms=ISSUED_MS,
    )
    for lang, shown in [
        ("vi", "05/03/2025 14:30 UTC+7"),
        ("en", "5 March 2025, 14:30 UTC+7"),
    ]:
        page = Page(render_verify_page(revoked, lang))
        for row in ("issued-at", "valid-from", "valid-until", "revoked-at"):
            assert page.text(f"row-{row}").endswith(shown), (lang, row)


def test_the_last_time_datetime_holds_is_shown_as_a_date() -> None:
    assert format_time(MAX_SHOWN_MS) == "31/12/9999 23:59 UTC+7"
    assert format_time(MAX_SHOWN_MS, "en") == "31 December 9999, 23:59 UTC+7"
    page = Page(render_verify_page(view(valid_until_ms=MAX_SHOWN_MS), "en"))
    assert page.text("row-valid-until") == ("Valid until 31 December 9999, 23:59 UTC+7")


# The ledger takes any u64 millisecond time; datetime stops at the year 9999.
BEYOND_9999 = [MAX_SHOWN_MS + 1, ISSUED_MS * 1000, 2**64 - 1]


@pytest.mark.parametrize("ms", BEYOND_9999)
def test_a_time_after_the_year_9999_is_words_and_its_raw_value(ms: int) -> None:
    assert format_time(ms, "vi") == (
        f"sau năm 9999 ({format_count(ms, 'vi')} mili giây kể từ 01/01/1970 UTC)"
    )
    assert format_time(ms, "en") == (
        f"after the year 9999 ({ms:,} milliseconds since 1 January 1970 UTC)"
    )


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("ms", BEYOND_9999)
def test_the_page_renders_every_time_after_the_year_9999(ms: int, lang: str) -> None:
    """Each time the page shows (issued, valid from/until, revoked, the
    checkpoint's) in words rather than a 500."""
    far = view(
        "revoked",
        issued_at_ms=ms,
        valid_from_ms=ms,
        valid_until_ms=ms,
        revoked_at_ms=ms,
        revoke_reason="other",
        checkpoint_time_ms=ms,
    )
    source = render_verify_page(far, lang)
    page = Page(source)
    words = format_time(ms, lang)
    for row, key in [
        ("issued-at", "issued_at"),
        ("valid-from", "valid_from"),
        ("valid-until", "valid_until"),
        ("revoked-at", "revoked_at"),
    ]:
        assert page.text(f"row-{row}") == f"{text(key, lang)} {words}"
    assert words in page.text("as-of")
    assert "<time" not in source  # no datetime attribute to compute


def test_lang_handling() -> None:
    assert normalize_lang(None) == "vi"
    assert normalize_lang("EN") == "en"
    assert normalize_lang("fr") == "vi"
    with pytest.raises(ValueError):
        render_verify_page(view(), "fr")
    with pytest.raises(ValueError):
        text("heading", "fr")
    with pytest.raises(ValueError, match="unknown status"):
        view("ok")


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("status", STATUSES)
def test_every_status_renders_well_formed(status: str, lang: str) -> None:
    page = Page(render_verify_page(view(status), lang))
    title, body = STATUS_TEXT[status][LANGS.index(lang)]
    assert page.text("status-title") == title
    assert page.text("status-text") == body
    assert page.attrs["status"]["data-status"] == status
    assert page.text("row-doc-id") == text("doc_id", lang) + " " + DOC


def test_valid_page_in_vietnamese() -> None:
    source = render_verify_page(view(valid_until_ms=ISSUED_MS + 86_400_000 * 180))
    assert source.startswith('<!doctype html>\n<html lang="vi">')
    assert (
        '<meta name="viewport" content="width=device-width, initial-scale=1">' in source
    )
    page = Page(source)
    assert page.text("row-issuer") == "Cơ quan cấp Công an tỉnh Sông Xanh"
    assert page.text("row-doc-type") == "Loại văn bản Phiếu lý lịch tư pháp"
    assert page.text("row-issued-at") == "Ngày cấp 05/03/2025 14:30 UTC+7"
    assert page.text("row-valid-until") == "Có hiệu lực đến 01/09/2025 14:30 UTC+7"
    assert page.text("as-of") == (
        "Trạng thái tính đến 05/03/2025 15:30 UTC+7 (giờ Việt Nam). "
        "Sổ cái: khối 42, 12.345 bản ghi."
    )
    switch = page.attrs["lang-switch"]
    assert switch["href"] == "?lang=en"
    assert switch["hreflang"] == "en"
    assert "data-keep-hash" in switch
    assert page.text("lang-switch") == "English"


def test_valid_page_in_english() -> None:
    page = Page(render_verify_page(view(), "en"))
    assert page.text("row-issuer") == "Issued by Song Xanh Provincial Police"
    assert page.text("row-doc-type") == "Document type Criminal record certificate"
    assert page.text("row-valid-until") == "Valid until No expiry date"
    assert page.text("row-issued-at") == "Issued on 5 March 2025, 14:30 UTC+7"
    assert page.text("as-of") == (
        "Status as of 5 March 2025, 15:30 UTC+7 (Vietnam time). "
        "Ledger: block 42, 12,345 entries."
    )
    assert page.attrs["lang-switch"]["href"] == "?lang=vi"
    assert page.text("lang-switch") == "Tiếng Việt"


def test_file_check_carries_what_the_script_needs() -> None:
    source = render_verify_page(view(), "en")
    page = Page(source)
    box = page.attrs["file-check"]
    assert box["data-doc-id"] == DOC
    assert box["data-domain"] == DOC_ID.decode("ascii")
    assert box["data-msg-match"] == text("file_match", "en")
    assert box["data-msg-mismatch"] == text("file_mismatch", "en")
    assert "disabled" in page.attrs["file-input"]
    assert page.attrs["file-input"]["type"] == "file"
    # The label is the button (the input's own is in the browser's language)
    # and comes after the input, which its CSS state selectors need.
    assert source.index('id="file-input"') < source.index('for="file-input"')
    assert "hidden" in page.attrs["file-name"]
    assert "hidden" in page.attrs["salt-missing"]
    assert page.text("salt-missing") == text("no_salt", "en")


@pytest.mark.parametrize(
    "status", ["not_found", "malformed", "tampered", "unknown_issuer"]
)
def test_no_file_check_without_a_recorded_document(status: str) -> None:
    page = Page(render_verify_page(view(status)))
    assert "file-check" not in page.attrs


def test_not_found_shows_no_document_details() -> None:
    page = Page(render_verify_page(view("not_found")))
    assert "row-issuer" not in page.attrs
    assert "row-valid-until" not in page.attrs


def test_revoked_shows_date_and_translated_reason() -> None:
    revoked = view("revoked", revoked_at_ms=ISSUED_MS, revoke_reason="issued_in_error")
    page = Page(render_verify_page(revoked, "vi"))
    assert page.text("row-revoked-at") == "Ngày thu hồi 05/03/2025 14:30 UTC+7"
    assert page.text("row-revoke-reason") == "Lý do thu hồi Cấp nhầm"
    page = Page(render_verify_page(revoked, "en"))
    assert page.text("row-revoke-reason") == "Reason for revocation Issued in error"


def test_superseded_links_to_new_document_and_explains_salt() -> None:
    superseded = view("superseded", superseded_by_hex=NEW_DOC)
    page = Page(render_verify_page(superseded, "vi"))
    assert page.attrs["superseded-link"]["href"] == f"/v/{NEW_DOC}"
    assert "salt" in page.text("superseded-note")
    page = Page(render_verify_page(superseded, "en"))
    assert page.attrs["superseded-link"]["href"] == f"/v/{NEW_DOC}?lang=en"
    assert page.text("superseded-note") == text("superseded_note", "en")
    odd = Page(render_verify_page(view("superseded", superseded_by_hex="zz")))
    assert "superseded-link" not in odd.attrs


def test_untrusted_values_are_escaped() -> None:
    evil = '"><script>alert(1)</script>'
    source = render_verify_page(
        view(
            "malformed",
            doc_id_hex=evil + "x" * 500,
            detail=evil,
        )
    )
    assert "<script>alert" not in source
    page = Page(source)
    # An unknown message: the Vietnamese lead-in, then the message as it came.
    assert page.text("row-detail") == (
        f"{text('detail', 'vi')} Dữ liệu không đúng định dạng. "
        f"Chi tiết kỹ thuật (tiếng Anh): {evil}"
    )
    english = Page(render_verify_page(view("malformed", detail=evil), "en"))
    assert english.text("row-detail") == f"{text('detail', 'en')} {evil}"
    # The echoed id is capped.
    assert len(page.text("row-doc-id")) < 200
    source = render_verify_page(
        view(issuer_names={"vi": evil, "en": evil}, doc_type=evil)
    )
    assert "<script>alert" not in source
    Page(source)


# --- the detail line ----------------------------------------------------------

DETAILS = json.loads(
    (Path(__file__).parent / "data" / "verify_details.json").read_text("utf-8")
)["vectors"]


@pytest.mark.parametrize("case", DETAILS, ids=[case["desc"] for case in DETAILS])
def test_the_detail_line_in_each_language(case: dict[str, str]) -> None:
    assert detail_text(case["detail"], case["status"], "vi") == case["vi"]
    assert detail_text(case["detail"], case["status"], "en") == case["detail"]


def test_every_known_message_and_lead_in_has_a_vector() -> None:
    for pattern, _ in DETAIL_TEXT:
        hits = [c for c in DETAILS if pattern.fullmatch(c["detail"])]
        assert hits, f"no vector for {pattern.pattern!r}"
    unknown = {
        c["status"]
        for c in DETAILS
        if not any(p.fullmatch(c["detail"]) for p, _ in DETAIL_TEXT)
    }
    assert set(DETAIL_LEADS) < unknown  # and one status without a lead-in


def test_a_failed_check_explains_itself_in_the_pages_language() -> None:
    """Regression: the detail line stayed in English on a Vietnamese page."""
    message = "quorum not met: 1 of 2 required distinct keys signed (1 signature lines)"
    failed = view("tampered", detail=message)
    page = Page(render_verify_page(failed, "vi"))
    assert page.text("row-detail") == (
        "Chi tiết Điểm kiểm tra chưa đủ chữ ký: mới có 1 trong số 2 khóa bắt "
        "buộc đã ký (1 dòng chữ ký)."
    )
    page = Page(render_verify_page(failed, "en"))
    assert page.text("row-detail") == f"Details {message}"


def _verifier_messages(path: Path) -> list[tuple[str, str]]:
    """(status, message) as ledger/ words them today, for the failures a
    node's verify page can meet, made by the real verifier and store."""
    agencies = ledger.make_agencies()
    trust = ledger.make_genesis(agencies)
    out: list[tuple[str, str]] = []

    def refused(bundle: object, against: object = trust, **kw: int) -> None:
        kw.setdefault("now_ms", ledger.T0 + 60_000)
        with pytest.raises(VerificationError) as err:
            verify_bundle(bundle, against, **kw)  # type: ignore[arg-type]
        out.append((err.value.reason, err.value.message))

    with LedgerStore.open(path / "pending", trust) as store:
        chain = ledger.Chain(store, agencies)
        chain.apply(("moj", [ledger.anchor("moj", 1)]), final=False)
        with pytest.raises(StorageError) as stored:
            build_bundle(store, ledger.doc_id(1))
        out.append(("stale", str(stored.value)))
    with LedgerStore.open(path / "ledger", trust) as store:
        chain = ledger.Chain(store, agencies)
        chain.apply(
            ("moj", [ledger.anchor("moj", 1), ledger.anchor("moj", 2)]),
            ("moh", [ledger.anchor("moh", 3)]),
        )
        before = build_bundle(store, ledger.doc_id(1))
        chain.apply(("moj", [ledger.revoke("moj", 1)]))

        def bundle(n: int) -> dict[str, object]:
            return build_bundle(store, ledger.doc_id(n))

        def anchor_part(of: dict[str, object]) -> dict[str, object]:
            part = of["anchor"]
            assert isinstance(part, dict)
            return part

        one = bundle(1)
        note = parse_note(str(one["checkpoint"]))
        refused({**one, "checkpoint": format_note(note.text, note.signatures[:1])})
        refused(bundle(2), max_age_ms=1000, now_ms=ledger.T0 + 10**7)
        without_moh = tuple(a for a in trust.agencies if a.id != "moh")
        refused(bundle(3), dataclasses.replace(trust, agencies=without_moh))
        refused(bundle(2), dataclasses.replace(trust, origin="other.example/log"))
        refused({**bundle(1), "changes": []})  # the revocation withheld
        refused({**bundle(1), "state": before["state"]})  # an older state
        refused({**bundle(2), "anchor": anchor_part(bundle(1))})
        swapped = copy.deepcopy(bundle(2))
        anchor_part(swapped)["inclusion"] = ["00" * 32]
        refused(swapped)
        forged = copy.deepcopy(bundle(2))
        signed = anchor_part(forged)["submission"]
        assert isinstance(signed, dict)
        signature = str(signed["signature"])
        signed["signature"] = ("B" if signature[0] != "B" else "C") + signature[1:]
        refused(forged)
    return out


def test_the_messages_the_verifier_raises_today_are_all_known(
    tmp_path: Path,
) -> None:
    """A message reworded in ledger/ shows up here, not as English on a
    Vietnamese page."""
    messages = _verifier_messages(tmp_path)
    assert {status for status, _ in messages} == {
        "tampered",
        "stale",
        "unknown_issuer",
    }
    for status, message in messages:
        known = [vi for p, vi in DETAIL_TEXT if p.fullmatch(message)]
        assert known, f"{status}: {message!r} is not in api.i18n.DETAIL_TEXT"
        page = Page(render_verify_page(view(status, detail=message), "vi"))
        assert "tiếng Anh" not in page.text("row-detail"), message


def test_issuer_name_falls_back() -> None:
    page = Page(render_verify_page(view(issuer_names={"vi": "Sở Y tế"}), "en"))
    assert page.text("row-issuer") == "Issued by Sở Y tế"
    page = Page(render_verify_page(view("unknown_issuer", issuer_names=None), "en"))
    assert page.text("row-issuer") == "Issued by police"


def test_security_headers_and_static_files() -> None:
    source = render_verify_page(view())
    assert f'content="{PAGE_CSP}"' in source
    assert "connect-src 'none'" in PAGE_CSP
    assert VERIFY_PAGE_HEADERS["Content-Security-Policy"].startswith(PAGE_CSP)
    for name in ("verify.css", "verify.js"):
        assert (STATIC_DIR / name).is_file()
        assert f"/static/{name}?v=" in source
    # No inline script or style: the CSP would block it.
    assert "<script>" not in source
    assert "style=" not in source


# --- caching -------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """A node's app on a chain with one document; its doc id."""
    chain = LocalChain.create(tmp_path / "store")
    (doc,) = chain.anchor("police", 1)
    chain.finalize()
    with TestClient(create_app(StubNode(chain.store), public_url=BASE)) as client:
        yield client, doc.doc_id.hex()
    chain.close()


def test_the_page_is_never_shown_from_a_cache_without_asking(
    served: tuple[TestClient, str],
) -> None:
    """A revocation must show at the next scan: every answer of the page,
    found or not, tells caches (shared ones included) to revalidate."""
    client, doc = served
    for path, code in [(f"/v/{doc}", 200), (f"/v/{'00' * 32}", 404), ("/v/zz", 400)]:
        answer = client.get(path)
        assert answer.status_code == code, path
        assert answer.headers["cache-control"] == "no-cache", path


def test_static_files_linked_by_the_page_are_kept_for_a_year(
    served: tuple[TestClient, str],
) -> None:
    """Regression: CSS and JS went out with no Cache-Control at all."""
    client, doc = served
    page = client.get(f"/v/{doc}").text
    linked = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert len(linked) == 2
    for url in linked:
        name = url.split("?")[0].rsplit("/", 1)[1]
        assert url.endswith(f"?v={static_version(STATIC_DIR / name)}")
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["cache-control"] == STATIC_IMMUTABLE
        assert STATIC_IMMUTABLE == "public, max-age=31536000, immutable"
        # Revalidated anyway (a forced reload): the 304 keeps the policy.
        again = client.get(url, headers={"if-none-match": answer.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["cache-control"] == STATIC_IMMUTABLE


@pytest.mark.parametrize("query", ["", "?v=", "?v=000000000000", "?x=1"])
def test_a_static_file_asked_for_by_another_version_is_revalidated(
    served: tuple[TestClient, str], query: str
) -> None:
    """Only the hash of the bytes served earns the long policy: a page of
    another release asking here must not pin these bytes under its URL."""
    client, _ = served
    answer = client.get(f"/static/verify.css{query}")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == STATIC_REVALIDATE == "no-cache"


def test_a_changed_static_file_gets_a_new_version(tmp_path: Path) -> None:
    path = tmp_path / "verify.css"
    path.write_text("body { color: black; }")
    first = static_version(path)
    assert static_version(path) == first
    path.write_text("body { color: navy; }")
    os.utime(path, ns=(1, 2))  # a new mtime even on a coarse clock
    assert static_version(path) != first


def test_a_same_size_edit_keeping_the_old_mtime_gets_a_new_version(
    tmp_path: Path,
) -> None:
    # Regression: the version was cached by mtime and size alone, so bytes
    # copied in with the old mtime (as archives and reproducible builds set
    # them) were served for a year under the old version's URL.
    path = tmp_path / "verify.css"
    path.write_text("body { color: black; }")
    os.utime(path, ns=(10**18, 10**18))
    first = static_version(path)
    path.write_text("body { color: white; }")  # the same size
    os.utime(path, ns=(10**18, 10**18))
    assert static_version(path) != first


def test_a_count_too_long_for_a_u64_is_shown_as_it_came() -> None:
    # int() of thousands of digits raises; the page must not.
    digits = "9" * 5000
    text = detail_text(f"batch of {digits} entries", "malformed", "vi")
    assert text == f"Lô ký có số bản ghi không hợp lệ: {digits}."
    assert detail_text("batch of 12345 entries", "malformed", "vi").endswith(
        ": 12.345."
    )


@pytest.mark.parametrize(
    ("age_ms", "says"),
    [(500, "500 ms"), (90_000, "1 phút 30 giây"), (3 * 86_400_000, "3 ngày")],
)
def test_a_stale_checkpoints_age_reads_in_units_a_person_weighs(
    age_ms: int, says: str
) -> None:
    detail = f"checkpoint is {age_ms} ms old, limit 1000"
    text = detail_text(detail, "stale", "vi")
    assert (
        text
        == f"Điểm kiểm tra mới nhất đã được lập cách đây {says}, quá giới hạn 1 giây."
    )
