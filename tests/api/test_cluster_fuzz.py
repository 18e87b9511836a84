"""Fuzzing one node of a running 3-node cluster (issue #5).

Two parts, against the same cluster:

- schemathesis generates requests for every operation of the node's live
  ``/openapi.json``, valid and invalid ones (25 of each per operation at
  most, and a time budget for the whole run). No answer may be a 5xx, every
  error answer must be ``application/problem+json`` with a type, and no
  request may hang.
- hand-written probes: malformed bodies (msgpack and JSON), bad hex, sizes
  and pagination (negative, huge, reversed, non-numeric) must answer 4xx.

Neither can sign a submission, so afterwards the ledger is exactly as it was
on every node: height, tree size, final checkpoint and block hashes.

The live document does not declare the body of ``POST /v1/submissions`` (the
route reads the raw body itself), so schemathesis would only ever send it an
empty one; the test adds the body the route takes (docs/internals.md, "HTTP
details") to the document it hands to schemathesis, and the 64-hex-digit
form of a doc id, which the document leaves unsaid.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import msgpack
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from api.problems import ABOUT_BLANK, MEDIA_TYPE, PROBLEM_BASE
from ledger.submission import decode_submission, encode_submission
from tests.node.harness import Cluster, running_cluster

AGENCIES: Final = ("police", "justice", "health")
MAX_EXAMPLES: Final = 25  # per operation and generation mode
BUDGET_S: Final = 30.0  # the whole schemathesis run
REQUEST_TIMEOUT_S: Final = 10.0  # "no hang": no answer takes longer
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024  # node.toml [limits] default
HEX64: Final = "^[0-9a-f]{64}$"
# The body POST /v1/submissions reads, as JSON (docs/internals.md).
SUBMISSION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["agency", "key_id", "nonce", "timestamp", "entries", "signature"],
    "properties": {
        "agency": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,39}$"},
        "key_id": {"type": "string", "pattern": "^[0-9a-f]{8}$"},
        "nonce": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "timestamp": {"type": "integer", "minimum": 0},
        "entries": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {"type": "string", "format": "byte"},
        },
        "signature": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
    },
}


@dataclass(frozen=True)
class LedgerState:
    """What no unsigned request may change, as each node reports it."""

    heights: dict[str, int]
    tree_sizes: dict[str, int]
    finals: dict[str, tuple[object, ...] | None]
    block_hashes: dict[str, list[str]]


def ledger_state(cluster: Cluster) -> LedgerState:
    height = cluster.wait_converged(AGENCIES)
    infos = {a: cluster.cluster_info(a) for a in AGENCIES}
    assert {int(i["height"]) for i in infos.values()} == {height}
    return LedgerState(
        heights={a: int(i["height"]) for a, i in infos.items()},
        tree_sizes={a: int(i["tree_size"]) for a, i in infos.items()},
        finals={a: cluster.final(a) for a in AGENCIES},
        block_hashes={a: cluster.block_hashes(a) for a in AGENCIES},
    )


@dataclass
class Target:
    cluster: Cluster
    agency: str  # the node under fuzz
    url: str
    before: LedgerState
    doc_id: str  # a document on the ledger
    seen: dict[int, int] = field(default_factory=dict)  # status -> count

    def assert_unchanged(self) -> None:
        after = ledger_state(self.cluster)
        assert after == self.before


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("cluster-fuzz")
    with running_cluster(directory, AGENCIES) as cluster:
        # Something to read: documents, proofs, blocks and a final checkpoint.
        raw, doc_ids = cluster.anchors("police", 4)
        answer = cluster.post_submission("police", raw, wait="final")
        assert answer.status_code == 200, answer.text
        # Fuzz a follower: writes it cannot take are forwarded, so the
        # leader's intake is fuzzed too.
        leader = cluster.wait_leader()
        agency = next(a for a in AGENCIES if a != leader)
        yield Target(
            cluster=cluster,
            agency=agency,
            url=cluster.url(agency),
            before=ledger_state(cluster),
            doc_id=doc_ids[0].hex(),
        )


# --- the answers every request must give -------------------------------------


def problem_failure(
    status: int, content_type: str, body: bytes, *, page: bool = False
) -> str | None:
    """Why an answer breaks the contract, or None if it keeps it.

    ``page``: the verify page, which answers people in HTML, with 404 for an
    unknown document and 400 for a malformed id.
    """
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status < 400:
        return None
    if page and status in (400, 404) and content_type.startswith("text/html"):
        return None
    if content_type.split(";")[0].strip() != MEDIA_TYPE:
        return f"{status} answered as {content_type!r}"
    try:
        problem = httpx.Response(status, content=body).json()
    except ValueError:
        return f"{status} problem is not JSON: {body[:200]!r}"
    if not isinstance(problem, dict):
        return f"{status} problem is not an object"
    type_ = problem.get("type")
    if not isinstance(type_, str) or not (
        type_.startswith(PROBLEM_BASE) or type_ == ABOUT_BLANK
    ):
        return f"{status} problem type {type_!r}"
    if problem.get("status") != status or not isinstance(problem.get("title"), str):
        return f"{status} problem members {problem!r}"
    return None


# --- schemathesis -------------------------------------------------------------


def live_schema(url: str) -> dict[str, Any]:
    """The node's /openapi.json with what it leaves unsaid made explicit.

    Doc ids are documented as any string; the routes answer invalid-hex for
    anything but 64 lowercase hex digits. Saying so makes positive cases
    reach the lookups (and negative ones the hex check).
    """
    document: dict[str, Any] = httpx.get(f"{url}/openapi.json", timeout=10).json()
    for item in document["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] == "doc_id":
                    param["schema"]["pattern"] = HEX64
    operation = document["paths"]["/v1/submissions"]["post"]
    assert "requestBody" not in operation, "the route declares its body now"
    operation["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {"schema": SUBMISSION_SCHEMA},
            "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return document


class OutOfTimeError(Exception):
    """The slice of the time budget for one operation and mode is spent."""


@dataclass
class FuzzRun:
    target: Target
    session: requests.Session
    calls: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fuzz(self, operation: Any, mode: GenerationMode, until: float) -> None:
        """Up to MAX_EXAMPLES cases of ``operation`` until ``until`` (monotonic)."""

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            if time.monotonic() > until:
                raise OutOfTimeError
            self.send(operation.label, case)

        try:
            run()
        except OutOfTimeError:
            pass
        except Unsatisfiable:
            # Nothing to make invalid (an operation without parameters).
            assert mode is GenerationMode.NEGATIVE, operation.label

    def send(self, label: str, case: Any) -> None:
        started = time.monotonic()
        try:
            response = case.call(
                base_url=self.target.url,
                session=self.session,
                timeout=REQUEST_TIMEOUT_S,
            )
        except requests.Timeout:
            self.failures.append(f"hang: {case.as_curl_command()}")
            return
        self.calls[label] = self.calls.get(label, 0) + 1
        seconds = time.monotonic() - started
        status = int(response.status_code)
        self.target.seen[status] = self.target.seen.get(status, 0) + 1
        content_type = (response.headers.get("content-type") or [""])[0]
        why = problem_failure(
            status,
            content_type,
            response.content,
            page=urlsplit(case.formatted_path).path.startswith("/v/"),
        )
        if why is not None:
            curl = case.as_curl_command()
            self.failures.append(f"{why} ({seconds:.2f}s): {curl}")


def test_schemathesis_finds_no_server_error(target: Target) -> None:
    schema = schemathesis.openapi.from_dict(live_schema(target.url))
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 16
    runs = [
        (operation, mode)
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    deadline = time.monotonic() + BUDGET_S
    with requests.Session() as session:
        fuzz = FuzzRun(target, session)
        for done, (operation, mode) in enumerate(runs):
            # The time left is shared among the runs still to go, so a slow
            # operation cannot starve the ones after it.
            left = deadline - time.monotonic()
            fuzz.fuzz(
                operation, mode, time.monotonic() + max(0.5, left / (len(runs) - done))
            )

    # Shown with -s or on failure: how much the budget allowed.
    print(f"schemathesis calls={fuzz.calls} statuses={target.seen}")
    assert not fuzz.failures, "\n".join(fuzz.failures[:20])
    # Every operation was called, and errors were produced, not only 200s.
    assert set(fuzz.calls) == {op.label for op in operations}, fuzz.calls
    assert any(400 <= s < 500 for s in target.seen), target.seen
    target.assert_unchanged()


# --- hand-written probes ---------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    desc: str
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    content_type: str | None = None


def _submission() -> dict[str, Any]:
    """A well-formed but unsigned submission's JSON fields."""
    return {
        "agency": "police",
        "key_id": "00112233",
        "nonce": "ab" * 16,
        "timestamp": 1_700_000_000_000,
        "entries": [base64.b64encode(b"\x81\xa4kind\xa6anchor").decode()],
        "signature": "00" * 64,
    }


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _msgpack_submission(**changes: object) -> bytes:
    fields = {
        "agency": "police",
        "key_id": b"\0" * 4,
        "nonce": b"\1" * 16,
        "timestamp": 1_700_000_000_000,
        "entries": [b"\x81\xa4kind\xa6anchor"],
        "signature": b"\2" * 64,
    }
    fields.update(changes)
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _canonical() -> bytes:
    raw = _msgpack_submission()
    return encode_submission(decode_submission(raw))


def _json_with(**changes: object) -> bytes:
    return _json({**_submission(), **changes})


SUBMIT = "/v1/submissions"
MP = "application/msgpack"
JS = "application/json"
DOC = "0f" * 32
PROBES: Final = [
    # Bodies: msgpack.
    Probe("empty msgpack", "POST", SUBMIT, content=b"", content_type=MP),
    Probe("one zero byte", "POST", SUBMIT, content=b"\0", content_type=MP),
    Probe("random bytes", "POST", SUBMIT, content=os.urandom(4096), content_type=MP),
    Probe("a list", "POST", SUBMIT, content=msgpack.packb([1, 2]), content_type=MP),
    Probe("nil", "POST", SUBMIT, content=b"\xc0", content_type=MP),
    Probe(
        "missing key",
        "POST",
        SUBMIT,
        content=msgpack.packb({"agency": "police"}),
        content_type=MP,
    ),
    Probe(
        "unknown key",
        "POST",
        SUBMIT,
        content=_msgpack_submission(extra=1),
        content_type=MP,
    ),
    Probe(
        "keys out of order",
        "POST",
        SUBMIT,
        content=msgpack.packb(
            dict(reversed(list(msgpack.unpackb(_canonical()).items()))),
            use_bin_type=True,
        ),
        content_type=MP,
    ),
    Probe(
        "trailing byte", "POST", SUBMIT, content=_canonical() + b"\0", content_type=MP
    ),
    Probe("truncated", "POST", SUBMIT, content=_canonical()[:-7], content_type=MP),
    Probe(
        "no entries",
        "POST",
        SUBMIT,
        content=_msgpack_submission(entries=[]),
        content_type=MP,
    ),
    Probe(
        "entry is text",
        "POST",
        SUBMIT,
        content=_msgpack_submission(entries=["anchor"]),
        content_type=MP,
    ),
    Probe(
        "float timestamp",
        "POST",
        SUBMIT,
        content=_msgpack_submission(timestamp=1.5),
        content_type=MP,
    ),
    Probe(
        "bad agency id",
        "POST",
        SUBMIT,
        content=_msgpack_submission(agency="Police!"),
        content_type=MP,
    ),
    Probe(
        "short nonce",
        "POST",
        SUBMIT,
        content=_msgpack_submission(nonce=b"\1"),
        content_type=MP,
    ),
    Probe(
        "unsigned (canonical)", "POST", SUBMIT, content=_canonical(), content_type=MP
    ),
    Probe(
        "unknown agency",
        "POST",
        SUBMIT,
        content=encode_submission(
            decode_submission(_msgpack_submission(agency="nobody"))
        ),
        content_type=MP,
    ),
    Probe("deep nesting", "POST", SUBMIT, content=b"\x91" * 100_000, content_type=MP),
    Probe(
        "array of 2^32-1",
        "POST",
        SUBMIT,
        content=b"\xdd\xff\xff\xff\xff",
        content_type=MP,
    ),
    Probe(
        "bin of 2^32-1",
        "POST",
        SUBMIT,
        content=b"\xc6\xff\xff\xff\xff",
        content_type=MP,
    ),
    Probe("ext type", "POST", SUBMIT, content=b"\xc7\x01\x05a", content_type=MP),
    # Bodies: JSON.
    Probe("not JSON", "POST", SUBMIT, content=b"{", content_type=JS),
    Probe("JSON list", "POST", SUBMIT, content=b"[]", content_type=JS),
    Probe("JSON null", "POST", SUBMIT, content=b"null", content_type=JS),
    Probe("JSON missing field", "POST", SUBMIT, content=b"{}", content_type=JS),
    Probe("not UTF-8", "POST", SUBMIT, content=b"\xff\xfe{", content_type=JS),
    Probe(
        "entry not base64",
        "POST",
        SUBMIT,
        content=_json_with(entries=["***"]),
        content_type=JS,
    ),
    Probe(
        "no entries", "POST", SUBMIT, content=_json_with(entries=[]), content_type=JS
    ),
    Probe(
        "entries a string",
        "POST",
        SUBMIT,
        content=_json_with(entries="AAAA"),
        content_type=JS,
    ),
    Probe(
        "bad hex nonce", "POST", SUBMIT, content=_json_with(nonce="zz"), content_type=JS
    ),
    Probe(
        "key id too long",
        "POST",
        SUBMIT,
        content=_json_with(key_id="00" * 5),
        content_type=JS,
    ),
    Probe(
        "agency a number", "POST", SUBMIT, content=_json_with(agency=5), content_type=JS
    ),
    # The regression: int() raised OverflowError on infinity (a 500).
    Probe(
        "timestamp 1e400",
        "POST",
        SUBMIT,
        content=_json_with(timestamp=0).replace(
            b'"timestamp": 0', b'"timestamp": 1e400'
        ),
        content_type=JS,
    ),
    Probe(
        "timestamp NaN",
        "POST",
        SUBMIT,
        content=_json_with(timestamp=float("nan")),
        content_type=JS,
    ),
    Probe(
        "timestamp 1.5",
        "POST",
        SUBMIT,
        content=_json_with(timestamp=1.5),
        content_type=JS,
    ),
    Probe(
        "timestamp text",
        "POST",
        SUBMIT,
        content=_json_with(timestamp="1"),
        content_type=JS,
    ),
    Probe(
        "timestamp true",
        "POST",
        SUBMIT,
        content=_json_with(timestamp=True),
        content_type=JS,
    ),
    Probe(
        "timestamp 10^30",
        "POST",
        SUBMIT,
        content=_json_with(timestamp=10**30),
        content_type=JS,
    ),
    Probe(
        "timestamp -10^30",
        "POST",
        SUBMIT,
        content=_json_with(timestamp=-(10**30)),
        content_type=JS,
    ),
    # Media types and methods.
    Probe(
        "form body",
        "POST",
        SUBMIT,
        content=b"a=1",
        content_type="application/x-www-form-urlencoded",
    ),
    Probe("no content type", "POST", SUBMIT, content=_canonical()),
    Probe(
        "wait=never",
        "POST",
        SUBMIT,
        params={"wait": "never"},
        content=_canonical(),
        content_type=MP,
    ),
    Probe("PUT submissions", "PUT", SUBMIT, content=_canonical(), content_type=MP),
    Probe("POST trust", "POST", "/v1/trust", content=b"{}", content_type=JS),
    Probe("DELETE a document", "DELETE", f"/v1/documents/{DOC}"),
    Probe("PATCH metrics", "PATCH", "/metrics"),
    # Sizes.
    Probe(
        "body one byte over",
        "POST",
        SUBMIT,
        content=b"\0" * (DEFAULT_MAX_BODY + 1),
        content_type=MP,
    ),
    # Hex.
    *[
        Probe(f"doc id {name}", "GET", f"{prefix}{value}{suffix}")
        for prefix, suffix in (
            ("/v1/documents/", ""),
            ("/v1/documents/", "/bundle"),
            ("/v1/documents/", "/qr.png"),
            ("/v1/documents/", "/qr.svg"),
        )
        for name, value in (
            ("upper case", DOC.upper()),
            ("63 digits", DOC[:63]),
            ("65 digits", DOC + "0"),
            ("not hex", "g" * 64),
            ("0x prefix", "0x" + DOC[2:]),
            ("spaces", "%20" + DOC[3:]),
            ("unicode", "ạ" * 64),
            ("nul byte", "%00" + DOC[1:]),
            ("10,000 digits", "a" * 10_000),
            ("dot dot", ".."),
        )
    ],
    Probe(
        "qr salt upper case",
        "GET",
        f"/v1/documents/{DOC}/qr.png",
        params={"salt": "AB" * 16},
    ),
    Probe("qr salt short", "GET", f"/v1/documents/{DOC}/qr.svg", params={"salt": "ab"}),
    Probe(
        "qr salt not hex",
        "GET",
        f"/v1/documents/{DOC}/qr.png",
        params={"salt": "zz" * 16},
    ),
    # Pagination and proof bounds.
    *[
        Probe(f"{path} {desc}", "GET", path, params=params)
        for path, names in (
            ("/v1/leaves", ("start", "end")),
            ("/v1/proofs/inclusion", ("index", "size")),
            ("/v1/proofs/consistency", ("first", "second")),
        )
        for desc, params in (
            ("negative", {names[0]: -1, names[1]: 1}),
            ("both negative", {names[0]: -5, names[1]: -1}),
            ("huge", {names[0]: 0, names[1]: 2**63 - 1}),
            ("over int64", {names[0]: 0, names[1]: 2**64}),
            ("10^30", {names[0]: 10**30, names[1]: 10**30 + 1}),
            ("reversed", {names[0]: 3, names[1]: 1}),
            (
                "equal",
                {names[0]: 2, names[1]: 2}
                if path != "/v1/proofs/consistency"
                else {names[0]: 0, names[1]: 0},
            ),
            ("non-numeric", {names[0]: "a", names[1]: "b"}),
            ("float", {names[0]: "1.5", names[1]: 2}),
            ("exponent", {names[0]: "1e3", names[1]: 2}),
            ("empty", {names[0]: "", names[1]: ""}),
            ("missing", {names[0]: 0}),
            ("hex", {names[0]: "0x1", names[1]: 2}),
        )
    ],
    Probe("leaves past the log", "GET", "/v1/leaves", params={"start": 0, "end": 1000}),
    Probe("leaves 1,001", "GET", "/v1/leaves", params={"start": 0, "end": 1001}),
    Probe("blocks start 0", "GET", "/v1/blocks", params={"start": 0}),
    Probe("blocks start -1", "GET", "/v1/blocks", params={"start": -1}),
    Probe("blocks limit 0", "GET", "/v1/blocks", params={"limit": 0}),
    Probe("blocks limit -1", "GET", "/v1/blocks", params={"limit": -1}),
    Probe("blocks limit 101", "GET", "/v1/blocks", params={"limit": 101}),
    Probe("blocks limit huge", "GET", "/v1/blocks", params={"limit": 10**30}),
    Probe("blocks start huge", "GET", "/v1/blocks", params={"start": 2**64}),
    Probe("blocks start text", "GET", "/v1/blocks", params={"start": "one"}),
    Probe("blocks raw text", "GET", "/v1/blocks", params={"raw": "maybe"}),
    Probe("block 0", "GET", "/v1/blocks/0"),
    Probe("block -1", "GET", "/v1/blocks/-1"),
    Probe("block huge", "GET", f"/v1/blocks/{10**30}"),
    Probe("block text", "GET", "/v1/blocks/one"),
    Probe("block float", "GET", "/v1/blocks/1.5"),
    Probe("block raw text", "GET", "/v1/blocks/1", params={"raw": "maybe"}),
    # Routes that do not exist.
    Probe("unknown route", "GET", "/v1/nothing"),
    Probe("v2", "GET", "/v2/trust"),
    Probe("static escape", "GET", "/static/..%2f..%2fapi%2fapp.py"),
    Probe("static missing", "GET", "/static/missing.js"),
]


@pytest.mark.parametrize("probe", PROBES, ids=[p.desc for p in PROBES])
def test_hand_written_probe_answers_4xx(target: Target, probe: Probe) -> None:
    headers = {} if probe.content_type is None else {"content-type": probe.content_type}
    response = target.cluster.http.request(
        probe.method,
        f"{target.url}{probe.path}",
        params=probe.params,
        content=probe.content,
        headers=headers,
        timeout=REQUEST_TIMEOUT_S,
    )
    assert 400 <= response.status_code < 500, response.text[:500]
    why = problem_failure(
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
    )
    assert why is None, why


def test_ledger_did_not_change(target: Target) -> None:
    target.assert_unchanged()
