"""POST /v1/submissions answers (api/routes_write.py) for what the node
reports, with a stub node that hands back a real applied block."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.limits import SMALL_BODY_BYTES, BodyBudget
from api.problems import ProblemError
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
        checked: Callable[[], None] | None = None,
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
    return chain.signed("police", [_anchor_entry(chain)])


def _anchor_entry(chain: LocalChain, n: int | None = None) -> Anchor:
    doc_id = b"\x42" * 32 if n is None else hashlib.sha256(b"%d" % n).digest()
    return Anchor(
        issuer="police",
        doc_id=doc_id,
        doc_type="criminal_record",
        issued_at=chain.time_ms,
    )


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
        (b'{"entries": [], "entries": ["AA=="]}', "a member is given twice"),
        (b'{"entries": ["AA=="], "extra": 1}', "unknown ['extra']"),
        (
            b'{"entries": ["AA=="], "agency": "police", "key_id": "ABCD"}',
            "'key_id' must be hex",
        ),
        ('{"entries": []}'.encode("utf-16"), "bad JSON submission"),
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


def test_large_bodies_over_the_budget_in_flight_are_told_to_come_back(
    chain: LocalChain,
) -> None:
    """While other submissions' bytes fill the body budget, a large one is
    refused with 503 and Retry-After as its bytes arrive, before it is
    parsed; a small one still goes through; once they are done, so does
    the large one."""
    from starlette.testclient import TestClient

    app = create_app(AppliedNode(chain, final=True), public_url=BASE)
    small = _anchor(chain)
    large = chain.signed("police", [_anchor_entry(chain, n) for n in range(3_000)])
    assert len(small) <= SMALL_BODY_BYTES < len(large)
    budget: BodyBudget = app.state.body_budget
    with TestClient(app) as client:
        with budget.hold() as others:  # bytes of requests in flight
            others.grow(budget.limit)
            busy = client.post("/v1/submissions", content=large, headers=MSGPACK)
            assert chain.store.height == 0
            let_in = client.post("/v1/submissions", content=small, headers=MSGPACK)
            assert budget.used == budget.limit
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["type"].endswith("/unavailable")
        assert let_in.status_code == 200, let_in.text
        done = client.post("/v1/submissions", content=large, headers=MSGPACK)
        assert done.status_code == 200, done.text
        assert budget.used == 0  # given back


def test_the_budget_counts_bytes_that_came_and_lets_one_body_in() -> None:
    big = SMALL_BODY_BYTES + 1
    budget = BodyBudget(2 * big)
    with budget.hold() as one:
        one.grow(5 * big)  # the size limit, not the budget, bounds one body
        assert budget.used == 5 * big
        with pytest.raises(ProblemError), budget.hold() as two:
            two.grow(big)
        with budget.hold() as small:
            small.grow(SMALL_BODY_BYTES)  # always let in
        one.release()  # checked: it waits for its block outside the budget
        one.release()
        assert budget.used == 0
    with budget.hold() as a, budget.hold() as b:
        a.grow(big)
        b.grow(big)
        assert budget.used == budget.limit
        with pytest.raises(ProblemError):
            b.grow(1)
    assert budget.used == 0


def test_a_large_submission_is_parsed_off_the_event_loop(
    chain: LocalChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Megabytes of msgpack hold the loop (and Raft with it) for milliseconds.
    import threading

    from starlette.testclient import TestClient

    import api.routes_write

    threads: list[str] = []
    real = api.routes_write._parse

    def parse(body: bytes, ctype: str) -> object:
        threads.append(threading.current_thread().name)
        return real(body, ctype)

    monkeypatch.setattr(api.routes_write, "_parse", parse)
    monkeypatch.setattr(api.routes_write, "OFF_LOOP_BYTES", 10)
    app = create_app(AppliedNode(chain, final=True), public_url=BASE)
    with TestClient(app) as client:
        assert client.portal is not None
        loop_thread = client.portal.call(lambda: threading.current_thread().name)
        answer = client.post("/v1/submissions", content=_anchor(chain), headers=MSGPACK)
    assert answer.status_code == 200, answer.text
    assert threads and threads[0] != loop_thread


def test_a_checked_submission_leaves_the_budget_while_it_waits(
    chain: LocalChain,
) -> None:
    # A checked submission is the agency's own: waiting for its block (up to
    # the submit timeout) must not keep others out.
    from starlette.testclient import TestClient

    seen: list[int] = []

    class Waiting(AppliedNode):
        async def submit(
            self, raw: bytes, *, checked: Callable[[], None] | None = None, **kw: Any
        ) -> object:
            seen.append(budget.used)
            assert checked is not None
            checked()
            seen.append(budget.used)
            return await super().submit(raw, **kw)

    app = create_app(Waiting(chain, final=True), public_url=BASE)
    budget: BodyBudget = app.state.body_budget
    raw = _anchor(chain)
    with TestClient(app) as client:
        answer = client.post("/v1/submissions", content=raw, headers=MSGPACK)
    assert answer.status_code == 200, answer.text
    assert seen == [len(raw), 0]
