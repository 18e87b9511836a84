"""``api.routes_documents``: the verify page of a document whose times are
past the year 9999 (the ledger takes any u64 millisecond time) renders, in
both languages, instead of answering 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.i18n import format_count
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import LocalChain

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[LocalChain]:
    chain = LocalChain.create(tmp_path / "store")
    yield chain
    chain.close()


def _words(ms: int, lang: str) -> str:
    """How the page says a time after the year 9999 (spelt out here, so that a
    changed translation shows)."""
    if lang == "vi":
        return f"sau năm 9999 ({format_count(ms, 'vi')} mili giây"
    return f"after the year 9999 ({ms:,} milliseconds"


@pytest.mark.parametrize(
    ("from_far", "status"), [(False, "valid"), (True, "not_yet_valid")]
)
def test_verify_page_of_a_document_dated_past_the_year_9999(
    chain: LocalChain, from_far: bool, status: str
) -> None:
    far = chain.time_ms * 1000  # around the year 58,000
    until = 2**64 - 1  # the largest time the ledger takes
    (doc,) = chain.anchor(
        "police", valid_from=far if from_far else None, valid_until=until
    )
    chain.finalize()
    with TestClient(create_app(StubNode(chain.store), public_url=BASE)) as client:
        for lang in ("vi", "en"):
            page = client.get(f"/v/{doc.doc_id.hex()}?lang={lang}")
            assert page.status_code == 200, page.text
            assert f'data-status="{status}"' in page.text
            assert _words(until, lang) in page.text
            assert (_words(far, lang) in page.text) == from_far
