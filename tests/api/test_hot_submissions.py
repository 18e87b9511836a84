"""``api.app.HotSubmissions``: ``POST /v1/submissions`` answered before
FastAPI's routing must answer exactly what the route answers there, for
every outcome: accepted, each refusal the route or the node raises, an
unexpected error, and queries it leaves to FastAPI."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import api.app
from ledger.entries import Anchor
from ledger.errors import CommitTimeoutError, NotLeaderError, RuleViolation
from ledger.submission import Submission
from node.batcher import first_leaves
from node.server import Accepted
from tests.api.stubnode import BASE, StubNode
from tests.cli.chain import LocalChain

# Starlette asks for httpx2 in its test client; httpx is what we ship.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")
MSGPACK = "application/msgpack"
MAX_BODY = 4096


class ScriptedNode(StubNode):
    """Answers every submission with ``outcome``: an Accepted to return, or
    an exception to raise; ``leader`` is the leader it knows of."""

    def __init__(self, chain: LocalChain, outcome: object, leader: str | None) -> None:
        super().__init__(chain.store)
        self.outcome = outcome
        self.leader = leader

    def leader_url(self) -> str | None:
        return self.leader

    async def submit(
        self,
        raw: bytes,
        *,
        wait_final: bool = False,
        admit: Callable[[str], None] | None = None,
        decoded: Submission | None = None,
        checked: Callable[[], None] | None = None,
    ) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[LocalChain]:
    chain = LocalChain.create(tmp_path / "store")
    yield chain
    chain.close()


def _signed(chain: LocalChain, n: int) -> bytes:
    doc_id = hashlib.sha256(b"%d" % n).digest()
    entry = Anchor(
        issuer="police",
        doc_id=doc_id,
        doc_type="criminal_record",
        issued_at=chain.time_ms,
    )
    return chain.signed("police", [entry])


Case = tuple[str, str, bytes, object, str | None]


def _cases(chain: LocalChain) -> list[Case]:
    """(query, content type, body, the node's outcome, its leader)."""
    body = _signed(chain, 1)
    block = chain.block([body])
    chain.finalize()
    first = first_leaves(block)[0]
    done = Accepted(block, 0, first, True)
    pending = Accepted(block, 0, first, False)
    return [
        ("", MSGPACK, body, done, BASE),
        ("?wait=applied", MSGPACK, body, done, BASE),
        ("?wait=final", MSGPACK, body, done, BASE),
        ("?wait=final", MSGPACK, body, pending, BASE),
        ("", "text/plain", body, done, BASE),
        ("", MSGPACK, b"\x00not msgpack", done, BASE),
        ("", "application/json", b"{}", done, BASE),
        ("", "application/json; charset=utf-8", b"[1]", done, BASE),
        ("", MSGPACK, b"x" * (MAX_BODY + 1), done, BASE),
        ("", MSGPACK, body, RuleViolation("not_owner", "not yours", entry=0), BASE),
        ("", MSGPACK, body, RuleViolation("replay", "seen before"), BASE),
        ("", MSGPACK, body, CommitTimeoutError("not committed in time"), BASE),
        ("", MSGPACK, body, TimeoutError(), BASE),
        # Not the leader, and none known: nowhere to forward it.
        ("", MSGPACK, body, NotLeaderError(None), None),
        ("", MSGPACK, body, RuntimeError("a bug"), BASE),
        # Left to FastAPI either way: it validates the query (and takes the
        # last of two).
        ("?wait=soon", MSGPACK, body, done, BASE),
        ("?wait=final&wait=applied", MSGPACK, body, done, BASE),
    ]


Answer = tuple[int, str | None, object]


def _answers(chain: LocalChain, cases: list[Case]) -> tuple[list[Answer], list[str]]:
    answers: list[Answer] = []
    counts: list[str] = []
    for query, ctype, body, outcome, leader in cases:
        node = ScriptedNode(chain, outcome, leader)
        app = api.app.create_app(node, public_url=BASE, max_body_bytes=MAX_BODY)
        with TestClient(app, raise_server_exceptions=False) as client:
            r = client.post(
                f"/v1/submissions{query}", content=body, headers={"content-type": ctype}
            )
            payload: object = r.json()
            if isinstance(payload, dict):
                payload.pop("instance", None)  # a fresh id per 500
            answers.append((r.status_code, r.headers.get("content-type"), payload))
            text = client.get("/metrics").text
        counts += [
            line
            for line in text.splitlines()
            if line.startswith("http_requests_total") and "/v1/submissions" in line
        ]
    return answers, counts


def test_hot_submissions_answer_what_the_route_answers(
    chain: LocalChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = _cases(chain)
    taken: list[str] = []
    real_take = api.app.HotSubmissions._take

    async def counting(self: api.app.HotSubmissions, *args: object) -> None:
        taken.append("hot")
        await real_take(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(api.app.HotSubmissions, "_take", counting)
    hot = _answers(chain, cases)
    # Every case but the two queries left to FastAPI went the hot way.
    assert len(taken) == len(cases) - 2
    monkeypatch.setattr(api.app, "HOT_WAITS", {})  # nothing is hot
    assert _answers(chain, cases) == hot
    statuses = [status for status, _, _ in hot[0]]
    assert statuses == [
        200, 200, 200, 202, 415, 400, 400, 400, 413,
        422, 409, 504, 504, 503, 500, 422, 200,
    ]  # fmt: skip
    problems = [a for a in hot[0] if a[0] >= 400]
    assert all(ctype == "application/problem+json" for _, ctype, _ in problems)
