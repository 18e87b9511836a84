"""POST /v1/submissions answers (api/routes_write.py) for what the node
reports, with a stub node that hands back a real applied block."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.app import create_app
from ledger.entries import Anchor
from ledger.submission import Submission
from node.batcher import first_leaves
from node.server import Accepted
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import LocalChain

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")
MSGPACK = {"content-type": "application/msgpack"}
JSON = {"content-type": "application/json"}


class AppliedNode(StubNode):
    """Applies each submission to a local chain; ``final`` is what it says
    of finality when asked to wait for it."""

    def __init__(self, chain: LocalChain, *, final: bool) -> None:
        super().__init__(chain.store)
        self.chain = chain
        self.final = final

    async def submit(
        self,
        raw: bytes,
        *,
        wait_final: bool = False,
        admit: Callable[[str], None] | None = None,
        decoded: Submission | None = None,
    ) -> object:
        block = self.chain.block([raw])
        if self.final:
            self.chain.finalize()
        return Accepted(block, 0, first_leaves(block)[0], self.final or not wait_final)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[LocalChain]:
    chain = LocalChain.create(tmp_path / "store")
    yield chain
    chain.close()


def _anchor(chain: LocalChain) -> bytes:
    entry = Anchor(
        issuer="police",
        doc_id=b"\x42" * 32,
        doc_type="criminal_record",
        issued_at=chain.time_ms,
    )
    return chain.signed("police", [entry])


@pytest.mark.parametrize(("final", "status"), [(True, 200), (False, 202)])
def test_wait_final_that_timed_out_after_apply_is_202_with_the_receipts(
    chain: LocalChain, final: bool, status: int
) -> None:
    """Committed and applied is an acknowledgement; a 504 there would invite
    a retry that can only be refused as a replay."""
    from starlette.testclient import TestClient

    app = create_app(AppliedNode(chain, final=final), public_url=BASE)
    with TestClient(app) as client:
        answer = client.post(
            "/v1/submissions?wait=final", content=_anchor(chain), headers=MSGPACK
        )
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == "accepted"
    assert [r["doc_id"] for r in body["receipts"]] == ["42" * 32]
    assert body["receipts"][0]["leaf_index"] == 0
    assert (body["checkpoint"] is None) is (not final)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[1, 2]", "expected an object"),
        (b"{}", "no 'entries'"),
        (b'{"entries": "x"}', "'entries' must be a list of base64"),
        (b'{"entries": ["!!"]}', "an entry is not base64"),
        (b'{"entries": ["AA=="], "agency": 1}', "'agency' is text"),
        (b'{"entries": ["AA=="], "agency": "police"}', "no 'key_id'"),
        (
            b'{"entries": ["AA=="], "agency": "police", "key_id": "zz"}',
            "'key_id' must be hex",
        ),
        (
            b'{"entries": ["AA=="], "agency": "police", "key_id": "00000000",'
            b' "nonce": "' + b"00" * 16 + b'", "timestamp": 1e999}',
            "'timestamp' must be an integer",
        ),
    ],
)
def test_a_bad_json_submission_names_what_is_wrong(
    chain: LocalChain, body: bytes, says: str
) -> None:
    from starlette.testclient import TestClient

    app = create_app(AppliedNode(chain, final=True), public_url=BASE)
    with TestClient(app) as client:
        answer = client.post("/v1/submissions", content=body, headers=JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"].endswith("/malformed")
    assert says in answer.json()["detail"]
    assert chain.store.height == 0
