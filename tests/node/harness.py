"""A real cluster for tests: `ledger cluster init`, then one process per agency.

Nodes are real processes on loopback with real LevelDB and real TLS between
peers; a test can SIGKILL, SIGSTOP, restart or wipe any of them, edit its
node.toml before (re)starting it, and talk to it over HTTP.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import tomli_w

from cli.cluster import ClusterLayout, init_cluster, node_config
from ledger.codec import Value
from ledger.entries import Anchor, Governance, encode_entry, sign_approval
from ledger.keys import SigningKey, key_id
from ledger.submission import (
    Submission,
    batch_root,
    encode_submission,
    signing_message,
)
from ledger.trust import AgencyInfo, TrustList

ROOT = Path(__file__).resolve().parents[2]
# `ledger node run`; the config path follows.
NODE_COMMAND: list[str] = [sys.executable, "-m", "cli.main", "node", "run", "--config"]
MSGPACK = {"content-type": "application/msgpack"}
# Raft timing for tests: elections within a few hundred milliseconds.
FAST_RAFT = {"tick_ms": 25, "election_ticks": 12, "heartbeat_ticks": 1}


# Ports the tests' nodes listen on: below the kernel's ephemeral range
# (32768 and up by default), from which every outgoing connection takes its
# source port. A port picked there could be taken by one (a node dialling a
# peer, say) before the node that was to listen on it binds it.
PORTS_LOW: Final = 20_000
PORTS_HIGH: Final = 32_000


def free_base_port(count: int) -> int:
    """A base port with ``count`` raft ports and ``count`` API ports free."""
    for _ in range(200):
        base = random.randrange(PORTS_LOW, PORTS_HIGH - 100 - count)
        ports = [base + i for i in range(count)]
        ports += [base + 100 + i for i in range(count)]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _set_peers(peers: object) -> Callable[[dict[str, Any]], None]:
    def change(cfg: dict[str, Any]) -> None:
        cfg["peers"] = peers

    return change


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Cluster:
    """Agencies' node processes under one folder.

    ``spare`` reserves ports for agencies a test adds later (governance).
    """

    def __init__(
        self, directory: Path, agencies: Sequence[str], *, spare: int = 0
    ) -> None:
        self.dir = directory
        self.agencies = tuple(agencies)
        base = free_base_port(len(agencies) + spare)
        self.layout = ClusterLayout(agencies=self.agencies, base_port=base)
        self.trust: TrustList = init_cluster(directory, self.layout)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.urls = {a: self.layout.public_url(a) for a in self.agencies}
        self.http = httpx.Client(timeout=30.0)
        for agency in self.agencies:
            self.edit_config(agency, lambda cfg: cfg["raft"].update(FAST_RAFT))

    # -- files -----------------------------------------------------------------

    def url(self, agency: str) -> str:
        return self.urls[agency]

    def config(self, agency: str) -> Path:
        return self.dir / agency / "node.toml"

    def edit_config(
        self, agency: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Apply ``change`` to the parsed node.toml and write it back."""
        path = self.config(agency)
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
        change(cfg)
        path.write_text(tomli_w.dumps(cfg), encoding="utf-8")

    def issuer_key(self, agency: str) -> SigningKey:
        return SigningKey.load(self.dir / agency / "issuer.key")

    def admin_key(self, agency: str) -> SigningKey:
        return SigningKey.load(self.dir / agency / "admin.key")

    def log(self, agency: str) -> str:
        return (self.dir / agency / "node.log").read_text(errors="replace")

    def wipe(self, agency: str) -> None:
        shutil.rmtree(self.dir / agency / "data", ignore_errors=True)

    def add_agency_files(self, agency: str) -> AgencyInfo:
        """Keys and node.toml for a new agency joining the running cluster,
        and its [[peers]] entry in every other node.toml (read by the
        running nodes when the trust list gains it); returns its entry for
        an ``add_agency`` governance change. Needs a ``spare`` port."""
        self.agencies = (*self.agencies, agency)
        layout = ClusterLayout(agencies=self.agencies, base_port=self.layout.base_port)
        self.layout = layout
        self.urls[agency] = layout.public_url(agency)
        base = self.dir / agency
        base.mkdir()
        keys = {}
        for name in ("node", "issuer", "admin"):
            keys[name] = SigningKey.generate()
            keys[name].save(base / f"{name}.key")
        for other in self.agencies:
            table: dict[str, Any] = node_config(layout, other, compose=False)
            if other == agency:
                table["join"] = True
                table["raft"].update(FAST_RAFT)
                self.config(agency).write_text(tomli_w.dumps(table), "utf-8")
            else:
                self.edit_config(other, _set_peers(table["peers"]))
        return AgencyInfo(
            id=agency,
            names={"vi": agency, "en": agency},
            node_key=keys["node"].public_key,
            issuer_keys=(keys["issuer"].public_key,),
            admin_keys=(keys["admin"].public_key,),
            doc_types=("land_use",),
        )

    def governance(
        self, action: str, params: dict[str, Value], *, version: int
    ) -> bytes:
        """A governance change approved by every agency of the genesis and
        submitted by the first; ``version`` is the trust version it makes."""
        approvals = tuple(
            sign_approval(
                self.trust.origin,
                action=action,
                params=params,
                version=version,
                agency=a.id,
                key=self.admin_key(a.id),
            )
            for a in self.trust.agencies
        )
        issuer = self.trust.agencies[0].id
        entry = Governance(
            issuer=issuer,
            action=action,
            params=params,
            version=version,
            approvals=approvals,
        )
        return self.sign(issuer, [encode_entry(entry)])

    # -- processes -------------------------------------------------------------

    def start(self, agency: str) -> None:
        with open(self.dir / agency / "node.log", "ab") as log:
            self.procs[agency] = subprocess.Popen(
                [*NODE_COMMAND, str(self.config(agency))],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def start_all(self) -> None:
        for agency in self.agencies:
            self.start(agency)
        for agency in self.agencies:
            self.wait_healthy(agency)

    def kill(self, agency: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` and wait for the process to end; its exit status."""
        proc = self.procs.pop(agency)
        if agency in self.paused:
            self.resume(agency)
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    def wait_exit(self, agency: str, timeout: float = 30.0) -> int:
        """Wait for a process that ends by itself (a refused start)."""
        return self.procs.pop(agency).wait(timeout=timeout)

    def pause(self, agency: str) -> None:
        self.procs[agency].send_signal(signal.SIGSTOP)
        self.paused.add(agency)

    def resume(self, agency: str) -> None:
        proc = self.procs.get(agency)
        if proc is not None:
            proc.send_signal(signal.SIGCONT)
        self.paused.discard(agency)

    def stop_all(self) -> None:
        for agency in list(self.paused):
            self.resume(agency)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for agency in list(self.procs):
            proc = self.procs.pop(agency)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.http.close()

    # -- HTTP ------------------------------------------------------------------

    def get(self, agency: str, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"{self.url(agency)}{path}", params=params, timeout=5)

    def wait_healthy(self, agency: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(agency)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{agency} exited:\n{self.log(agency)[-3000:]}")
            try:
                if self.get(agency, "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{agency} not healthy:\n{self.log(agency)[-3000:]}")

    def cluster_info(self, agency: str) -> dict[str, Any]:
        info: dict[str, Any] = self.get(agency, "/v1/cluster").json()
        return info

    def wait_leader(
        self, among: Sequence[str] | None = None, timeout: float = 30.0
    ) -> str:
        """The node of ``among`` that every node of ``among`` sees as leader."""
        among = list(among or [a for a in self.procs if a not in self.paused])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = set()
            for agency in among:
                try:
                    leaders.add(self.cluster_info(agency).get("leader"))
                except httpx.HTTPError:
                    leaders.add(None)
            if len(leaders) == 1 and leaders <= set(among):
                leader = leaders.pop()
                assert isinstance(leader, str)
                return leader
            time.sleep(0.05)
        raise TimeoutError("no agreed leader")

    def wait_until(
        self,
        what: str | Callable[[], str],
        check: Callable[[], bool],
        timeout: float = 30.0,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )

    def wait_height(self, agency: str, height: int, timeout: float = 30.0) -> None:
        self.wait_until(
            f"{agency} at height {height}",
            lambda: int(self.cluster_info(agency)["height"]) >= height,
            timeout,
        )

    def post_submission(
        self, agency: str, raw: bytes, *, wait: str = "applied", timeout: float = 30
    ) -> httpx.Response:
        return self.http.post(
            f"{self.url(agency)}/v1/submissions",
            params={"wait": wait},
            content=raw,
            headers=MSGPACK,
            timeout=timeout,
        )

    def anchors(
        self, agency: str, count: int, *, doc_type: str = "criminal_record"
    ) -> tuple[bytes, list[bytes]]:
        """A signed submission of ``count`` new anchors and their doc ids."""
        doc_ids = [os.urandom(32) for _ in range(count)]
        at = now_ms()
        entries = [
            encode_entry(
                Anchor(issuer=agency, doc_id=d, doc_type=doc_type, issued_at=at)
            )
            for d in doc_ids
        ]
        return self.sign(agency, entries), doc_ids

    def sign(self, agency: str, entries: Sequence[bytes]) -> bytes:
        """``entries`` signed by ``agency``'s issuer key, encoded; unlike
        ``sign_submission`` this signs batches over the size limit too."""
        key = self.issuer_key(agency)
        nonce = os.urandom(16)
        at = now_ms()
        message = signing_message(
            self.trust.origin, agency, nonce, at, batch_root(entries)
        )
        sub = Submission(
            agency=agency,
            key_id=key_id(agency, key.public_key),
            nonce=nonce,
            timestamp_ms=at,
            entries=tuple(entries),
            signature=key.sign(message),
        )
        return encode_submission(sub)

    def block_hashes(self, agency: str) -> list[str]:
        """Every block hash of the node's chain, by height."""
        out: list[str] = []
        while True:
            page = self.get(agency, "/v1/blocks", start=len(out) + 1, limit=100)
            blocks = page.json()["blocks"]
            if not blocks:
                return out
            out += [b["hash"] for b in blocks]

    def checkpoint(self, agency: str) -> dict[str, Any] | None:
        resp = self.get(agency, "/v1/checkpoint")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def final(self, agency: str) -> tuple[object, ...] | None:
        """The final checkpoint's body fields; unlike the note they do not
        depend on which signatures beyond a quorum the node holds."""
        cp = self.checkpoint(agency)
        if cp is None:
            return None
        keys = ("height", "size", "root", "state_root", "block_hash")
        return tuple(cp[k] for k in keys)

    def has_document(self, agency: str, doc_id: bytes) -> bool:
        resp = self.get(agency, f"/v1/documents/{doc_id.hex()}")
        return resp.status_code == 200 and resp.json()["status"] == "valid"

    def wait_converged(self, agencies: Sequence[str], timeout: float = 30.0) -> int:
        """Wait until every node of ``agencies`` has the same height and
        final checkpoint; return that height."""
        state: dict[str, tuple[int, int | None]] = {}

        def same() -> bool:
            for agency in agencies:
                cp = self.checkpoint(agency)
                height = int(self.cluster_info(agency)["height"])
                state[agency] = (height, None if cp is None else int(cp["height"]))
            return len(set(state.values())) == 1

        self.wait_until(lambda: f"convergence: {state}", same, timeout)
        return state[agencies[0]][0]


@contextmanager
def running_cluster(
    directory: Path,
    agencies: Sequence[str] = ("police", "justice", "health"),
    *,
    configure: Callable[[Cluster], None] | None = None,
    spare: int = 0,
) -> Iterator[Cluster]:
    cluster = Cluster(directory, agencies, spare=spare)
    try:
        if configure is not None:
            configure(cluster)
        cluster.start_all()
        cluster.wait_leader()
        yield cluster
    finally:
        cluster.stop_all()
