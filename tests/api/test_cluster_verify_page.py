"""The verify page of a running 3-node cluster, in headless Chromium (issue #5).

The sample PDFs are anchored through ``LedgerClient`` (one stays valid, one
is revoked, one superseded by its amended version) and the browser opens the
verify links from the receipts, exactly what a phone opens after scanning
the QR: ``{node}/v/{doc_id}#{salt}``. For each status the banner is read in
Vietnamese (the default) and, after following the language link, in
English. The file check gets the original PDF (it must match) and a PDF
changed by one byte (it must not), with the salt taken from the fragment
only. Screenshots go to a temporary folder named at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TypeVar

import pytest

from api.qr import qr_url
from cli.client import LedgerClient
from cli.cluster import SAMPLE_NAMES
from cli.documents import AnchorReceipt
from tests.api.browser import (
    PHONE,
    Browser,
    banner,
    requires_chromium,
    save,
    settled,
)
from tests.node.harness import Cluster, running_cluster

pytestmark = requires_chromium

ROOT: Final = Path(__file__).resolve().parents[2]
EXAMPLES: Final = ROOT / "examples"
VALID_PDF: Final = EXAMPLES / "criminal-record-1-nguyen-thi-hong-nhung.pdf"
REVOKED_PDF: Final = EXAMPLES / "criminal-record-1-tran-quoc-bao.pdf"
OLD_PDF: Final = EXAMPLES / "birth-certificate-tran-minh-khoi.pdf"
NEW_PDF: Final = EXAMPLES / "birth-certificate-tran-minh-khoi-amended.pdf"
AGENCIES: Final = ("police", "justice", "health")
# Written out rather than read from api.i18n, so a changed translation shows.
BANNERS: Final = {
    "valid": ("Hợp lệ", "Valid"),
    "revoked": ("Đã bị thu hồi", "Revoked"),
    "superseded": ("Đã được thay thế", "Superseded"),
    "not_found": ("Không tìm thấy", "Not found"),
}
FILE_RESULTS: Final = {
    ("vi", "match"): "✓ Tệp khớp",
    ("en", "match"): "✓ File matches",
    ("vi", "mismatch"): "✗ Tệp KHÔNG khớp",
    ("en", "mismatch"): "✗ File does NOT match (tampered",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Site:
    cluster: Cluster
    receipts: dict[str, AnchorReceipt]  # by status
    pdfs: dict[str, Path]  # the file of each receipt, by status

    def link(self, status: str) -> str:
        return str(self.receipts[status].verify_url)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("cluster-verify")
    with running_cluster(directory, AGENCIES) as cluster:
        with LedgerClient(cluster.url("police")) as police:
            key = cluster.issuer_key("police")
            valid, revoked = police.anchor_files(
                [VALID_PDF, REVOKED_PDF], key, "police", "criminal_record"
            )
            police.revoke([revoked.doc_id], key, "police", "court_order", wait="final")
        # The justice node's own links, to check a second node's pages.
        with LedgerClient(cluster.url("justice")) as justice:
            key = cluster.issuer_key("justice")
            (old,) = justice.anchor_files(
                [OLD_PDF], key, "justice", "birth_registration"
            )
            new, _ = justice.supersede_with_file(
                old.doc_id, NEW_PDF, key, "justice", "birth_registration", wait="final"
            )
        cluster.wait_converged(AGENCIES)
        # Unknown: a real-looking link whose document was never anchored.
        missing = AnchorReceipt(
            doc_id=os.urandom(32),
            salt=os.urandom(16),
            file_sha256=os.urandom(32),
            file_name="missing.pdf",
            doc_type="criminal_record",
            issuer="police",
            leaf_index=0,
            block_height=0,
        )
        missing = replace(
            missing,
            verify_url=qr_url(cluster.url("health"), missing.doc_id, missing.salt),
        )
        yield Site(
            cluster=cluster,
            receipts={
                "valid": valid,
                "revoked": revoked,
                "superseded": old,
                "new": new,
                "not_found": missing,
            },
            pdfs={
                "valid": VALID_PDF,
                "revoked": REVOKED_PDF,
                "superseded": OLD_PDF,
                "new": NEW_PDF,
            },
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(window=PHONE) as session:
        yield session


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster-verify-screenshots")


def requested(browser: Browser) -> list[str]:
    """Every URL the page fetched after the document itself."""
    names = browser.execute(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert isinstance(names, list)
    return [str(name) for name in names]


@pytest.mark.parametrize("status", list(BANNERS))
def test_banner_in_both_languages(
    site: Site, browser: Browser, shots: Path, status: str
) -> None:
    link = site.link(status)
    receipt = site.receipts[status]
    page, fragment = link.split("#")
    assert fragment == receipt.salt.hex()
    browser.get(link)
    assert banner(browser) == BANNERS[status][0]
    assert browser.execute("return document.documentElement.lang") == "vi"
    assert browser.execute("return location.hash") == f"#{receipt.salt.hex()}"
    # The salt stayed on the device: no request carried it.
    assert receipt.salt.hex() not in " ".join(requested(browser))
    save(browser, shots / f"{status}-vi.png")

    link_switch = browser.find("#lang-switch")
    href = settled(
        browser,
        lambda: browser.attribute(link_switch, "href") == f"?lang=en#{fragment}",
        "language link keeps the fragment",
    )
    assert href
    browser.click(link_switch)
    settled(browser, lambda: banner(browser) == BANNERS[status][1], "English page")
    assert browser.url == f"{page}?lang=en#{fragment}"
    assert browser.execute("return document.documentElement.lang") == "en"
    explanation = browser.text(browser.find("#status-text"))
    assert explanation and explanation != BANNERS[status][1]
    save(browser, shots / f"{status}-en.png")


def test_details_come_from_the_ledger(site: Site, browser: Browser) -> None:
    browser.get(site.link("revoked").replace("#", "?lang=en#"))
    police_vi, police_en = SAMPLE_NAMES["police"]
    assert browser.text(browser.find("#row-issuer")).endswith(police_en)
    reason = browser.text(browser.find("#row-revoke-reason"))
    assert reason == "Reason for revocation\nBy court order"
    assert browser.text(browser.find("#as-of")).startswith("Status as of ")
    browser.get(site.link("valid"))
    assert browser.text(browser.find("#row-issuer")).endswith(police_vi)
    doc_id = browser.text(browser.find("#row-doc-id"))
    assert doc_id.endswith(site.receipts["valid"].doc_id.hex())


def _check_file(browser: Browser, url: str, document: Path) -> tuple[str, str]:
    browser.get(url)
    field = browser.find("#file-input")
    settled(browser, lambda: browser.enabled(field), "file input enabled")
    before = requested(browser)
    browser.upload(field, document)
    result = browser.find("#file-result")
    outcome = settled(
        browser,
        lambda: (
            browser.attribute(result, "data-outcome") in ("match", "mismatch")
            and browser.attribute(result, "data-outcome")
        ),
        "file check result",
    )
    assert isinstance(outcome, str)
    # The file was checked on the device: the page fetched nothing more.
    assert requested(browser) == before
    browser.scroll_to(result)
    return outcome, browser.text(result)


@pytest.mark.parametrize(
    ("status", "lang", "tamper", "outcome"),
    [
        ("valid", "vi", False, "match"),
        ("valid", "en", False, "match"),
        ("valid", "vi", True, "mismatch"),
        ("valid", "en", True, "mismatch"),
        ("revoked", "en", False, "match"),
        ("superseded", "vi", False, "match"),
        ("new", "en", False, "match"),
        ("new", "en", True, "mismatch"),
    ],
)
def test_file_check(
    site: Site,
    browser: Browser,
    shots: Path,
    tmp_path: Path,
    status: str,
    lang: str,
    tamper: bool,
    outcome: str,
) -> None:
    data = bytearray(site.pdfs[status].read_bytes())
    if tamper:
        # One changed byte deep inside, as an edited PDF would have.
        data[len(data) // 2] ^= 0x01
    document = tmp_path / ("tampered.pdf" if tamper else "original.pdf")
    document.write_bytes(bytes(data))
    url = site.link(status).replace("#", f"?lang={lang}#")
    got, shown = _check_file(browser, url, document)
    assert got == outcome
    assert shown.startswith(FILE_RESULTS[(lang, outcome)])
    kind = "tampered" if tamper else "original"
    save(browser, shots / f"file-{status}-{kind}-{lang}.png")


def test_amended_file_does_not_match_the_old_document(
    site: Site, browser: Browser, shots: Path
) -> None:
    url = site.link("superseded").replace("#", "?lang=en#")
    got, shown = _check_file(browser, url, NEW_PDF)
    assert got == "mismatch"
    assert shown.startswith(FILE_RESULTS[("en", "mismatch")])
    save(browser, shots / "file-superseded-amended-en.png")


def test_superseded_links_to_the_new_document(site: Site, browser: Browser) -> None:
    browser.get(site.link("superseded").replace("#", "?lang=en#"))
    new = site.receipts["new"].doc_id.hex()
    link = browser.find("#superseded-link")
    assert browser.text(link) == new
    browser.click(link)
    settled(browser, lambda: browser.url.endswith(f"/v/{new}?lang=en"), "new doc")
    assert banner(browser) == "Valid"
    # The new document's salt is not in the link: its file cannot be checked
    # from here, and the page says why.
    notice = browser.text(browser.find("#salt-missing"))
    assert notice.startswith("The QR link is incomplete")
    assert not browser.enabled(browser.find("#file-input"))


def test_not_found_offers_no_file_check(site: Site, browser: Browser) -> None:
    browser.get(site.link("not_found"))
    assert banner(browser) == BANNERS["not_found"][0]
    assert browser.find_all("#file-check") == []
