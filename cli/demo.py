"""``ledger demo`` (what ``make run`` calls): a local cluster with sample documents.

1. Make the cluster in DIR unless it is there (a second run reuses it, its
   keys and its chain).
2. Start one node process per agency (logs in DIR/ID/node.log) and wait
   until every node answers ``/healthz`` and they agree on a leader.
3. Anchor the sample certificates of ``examples/manifest.json`` with their
   agency's issuer key, supersede the one the manifest says was amended,
   revoke one. Receipts and QR images go to DIR/receipts; a document with
   a receipt whose id the ledger knows is not anchored again.
4. Print where to verify each document, then serve until Ctrl-C and stop
   the nodes with SIGTERM (SIGKILL only for a node that does not stop).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from rich.table import Table

from cli import render
from cli.client import ClientError, LedgerClient
from cli.cluster import (
    DEMO_ORIGIN,
    GENESIS_FILE,
    ISSUER_KEY,
    NODE_TOML,
    ClusterLayout,
    init_cluster,
)
from cli.compose import REPO_ROOT, default_build_context
from cli.documents import (
    RECEIPT_SUFFIX,
    AnchorReceipt,
    read_receipt,
    write_receipt,
)
from ledger.errors import ConfigError, LedgerError
from ledger.keys import SigningKey
from ledger.trust import TrustList
from node.config import NodeConfig, load_config

logger = logging.getLogger(__name__)

READY_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
POLL_S: Final = 0.25
RECEIPTS_DIR: Final = "receipts"
REVOKE_REASON: Final = "issued_in_error"
LOG_FILE: Final = "node.log"


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    directory: Path
    agencies: tuple[str, ...]
    base_port: int
    examples: Path | None = None
    serve: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One line of examples/manifest.json."""

    file: str
    agency: str
    doc_type: str
    title: str
    title_en: str | None
    issued_on: str | None
    valid_until: str | None
    supersedes: str | None
    revoke: str | None  # a reason, if the manifest asks for this one


@dataclass(slots=True)
class NodeProcess:
    agency: str
    config: NodeConfig
    process: subprocess.Popen[bytes]
    log: Path


def find_examples(given: Path | None) -> Path:
    for candidate in (given, REPO_ROOT / "examples", Path("examples")):
        if candidate is not None and (candidate / "manifest.json").is_file():
            return candidate
    raise ConfigError("no examples/manifest.json found; pass --examples DIR")


def load_manifest(examples: Path) -> list[Sample]:
    path = examples / "manifest.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = raw["documents"] if isinstance(raw, dict) else raw
        return [
            Sample(
                file=str(e["file"]),
                agency=str(e["agency"]),
                doc_type=str(e["doc_type"]),
                title=str(e["title"]),
                title_en=e.get("title_en"),
                issued_on=e.get("issued_on"),
                valid_until=e.get("valid_until"),
                supersedes=e.get("supersedes"),
                revoke=e.get("revoke"),
            )
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _day_ms(text: str | None) -> int | None:
    if text is None:
        return None
    day = date.fromisoformat(text)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def to_revoke(samples: Sequence[Sample]) -> Sample | None:
    """The sample to revoke: the one the manifest marks, else a plain one.

    "Plain" is neither side of a supersession; the last plain document of
    an agency that has two keeps the other one valid for contrast.
    """
    marked = [s for s in samples if s.revoke]
    if marked:
        return marked[0]
    involved = {s.file for s in samples if s.supersedes} | {
        s.supersedes for s in samples if s.supersedes
    }
    plain = [s for s in samples if s.file not in involved]
    for sample in reversed(plain):
        if sum(p.agency == sample.agency for p in plain) > 1:
            return sample
    return plain[-1] if plain else None


# --- the cluster ------------------------------------------------------------


def ensure_cluster(opts: DemoOptions) -> tuple[TrustList, list[NodeConfig]]:
    directory = opts.directory
    if not (directory / GENESIS_FILE).is_file():
        layout = ClusterLayout(
            agencies=opts.agencies, base_port=opts.base_port, origin=DEMO_ORIGIN
        )
        render.out.print(f"making a new cluster in {directory}")
        init_cluster(directory, layout, build_context=default_build_context(directory))
    else:
        render.out.print(f"reusing the cluster in {directory}")
    trust = TrustList.load(directory / GENESIS_FILE)
    configs = [
        load_config(directory / a.id / NODE_TOML)
        for a in trust.agencies
        if (directory / a.id / NODE_TOML).is_file()
    ]
    if not configs:
        raise ConfigError(f"{directory} has a genesis but no node.toml")
    return trust, configs


def start_nodes(
    configs: Sequence[NodeConfig], directory: Path, nodes: list[NodeProcess]
) -> None:
    """Start one process per node, appended to ``nodes`` as each starts (so
    the caller can stop the ones started if a later one fails)."""
    for config in configs:
        log = directory / config.agency / LOG_FILE
        with log.open("ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "node",
                    "run",
                    "--config",
                    str(directory / config.agency / NODE_TOML),
                    "--log-level",
                    "info",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT if (REPO_ROOT / "cli").is_dir() else None,
                # Their own session: Ctrl-C reaches this process only, and
                # the nodes are stopped in order, cleanly, by stop_nodes.
                start_new_session=True,
            )
        logger.info("node started agency=%s pid=%d", config.agency, process.pid)
        nodes.append(NodeProcess(config.agency, config, process, log))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(nodes: Sequence[NodeProcess], timeout: float = READY_TIMEOUT_S) -> str:
    """Wait until every node is healthy and names the same leader; its id."""
    deadline = time.monotonic() + timeout
    while True:
        for node in nodes:
            if node.process.poll() is not None:
                raise ConfigError(
                    f"node {node.agency} exited with {node.process.returncode}; "
                    f"the end of {node.log}:\n{_tail(node.log)}"
                )
        leaders = set()
        for node in nodes:
            with LedgerClient(node.config.public_url, timeout=2.0, retries=0) as c:
                try:
                    healthy = c.healthz()
                    leaders.add(c.cluster().get("leader") if healthy else None)
                except LedgerError:
                    leaders.add(None)
        if len(leaders) == 1 and None not in leaders:
            return str(leaders.pop())
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the cluster did not elect a leader in {timeout:.0f} s; see the "
                f"logs in {nodes[0].log.parent.parent}/*/{LOG_FILE}"
            )
        time.sleep(POLL_S)


def stop_nodes(nodes: Sequence[NodeProcess]) -> None:
    """SIGTERM to every node, then wait; SIGKILL the ones that hang."""
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for node in nodes:
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("node did not stop, killing agency=%s", node.agency)
            node.process.kill()
            node.process.wait()
        render.out.print(f"stopped {node.agency} (exit {node.process.returncode})")


# --- the sample documents --------------------------------------------------------


@dataclass(slots=True)
class Issued:
    sample: Sample
    receipt: AnchorReceipt
    qr: Path
    status: str = "?"


def _receipt_path(receipts: Path, sample: Sample) -> Path:
    return receipts / f"{sample.file}{RECEIPT_SUFFIX}"


def _known(
    client: LedgerClient, receipts: Path, sample: Sample
) -> AnchorReceipt | None:
    """The kept receipt, if the ledger knows its document (a second run)."""
    path = _receipt_path(receipts, sample)
    if not path.is_file():
        return None
    receipt = read_receipt(path)
    try:
        client.document(receipt.doc_id)
    except ClientError as exc:
        if exc.status == 404:
            logger.info("receipt of an unknown document, anchoring again")
            return None
        raise
    return receipt


def issue_samples(
    directory: Path, examples: Path, samples: Sequence[Sample], urls: dict[str, str]
) -> list[Issued]:
    """Anchor, supersede and revoke as the manifest says; skip what is done."""
    receipts = directory / RECEIPTS_DIR
    done: dict[str, AnchorReceipt] = {}
    ordered = [s for s in samples if not s.supersedes] + [
        s for s in samples if s.supersedes
    ]
    for sample in ordered:
        url = urls[sample.agency]
        key = SigningKey.load(directory / sample.agency / ISSUER_KEY)
        with LedgerClient(url) as client:
            receipt = _known(client, receipts, sample)
            if receipt is None:
                receipt, replaced = _anchor_sample(
                    client, key, examples, sample, done, url
                )
                write_receipt(receipt, receipts, sample.file)
                render.out.print(
                    f"anchored {sample.file}, superseding {sample.supersedes}"
                    if replaced
                    else f"anchored {sample.file}",
                    soft_wrap=True,  # file names whole, for copying
                )
        done[sample.file] = receipt
    victim = to_revoke(samples)
    if victim is not None:
        _revoke_once(directory, urls[victim.agency], victim, done[victim.file])
    issued = []
    for sample in samples:
        receipt = done[sample.file]
        with LedgerClient(urls[sample.agency]) as client:
            status = str(client.document(receipt.doc_id).get("status", "?"))
        qr = receipts / f"{sample.file}.qr.png"
        issued.append(Issued(sample, receipt, qr, status))
    return issued


def _anchor_sample(
    client: LedgerClient,
    key: SigningKey,
    examples: Path,
    sample: Sample,
    done: dict[str, AnchorReceipt],
    url: str,
) -> tuple[AnchorReceipt, bool]:
    """The sample's receipt, and whether it superseded the sample it names
    (it is anchored on its own if that one is no longer in force)."""
    path = examples / sample.file
    if sample.supersedes:
        old = done[sample.supersedes]
        status = client.document(old.doc_id).get("status")
        # The rules keep an expired document "valid" in the state map.
        if status in ("valid", "expired", "not_yet_valid"):
            receipt, _ = client.supersede_with_file(
                old.doc_id,
                path,
                key,
                sample.agency,
                sample.doc_type,
                issued_at=_day_ms(sample.issued_on),
                valid_until=_day_ms(sample.valid_until),
                public_url=url,
            )
            return receipt, True
    (receipt,) = client.anchor_files(
        [path],
        key,
        sample.agency,
        sample.doc_type,
        issued_at=_day_ms(sample.issued_on),
        valid_until=_day_ms(sample.valid_until),
        public_url=url,
    )
    return receipt, False


def _revoke_once(
    directory: Path, url: str, sample: Sample, receipt: AnchorReceipt
) -> None:
    with LedgerClient(url) as client:
        if client.document(receipt.doc_id).get("status") == "revoked":
            return
        key = SigningKey.load(directory / sample.agency / ISSUER_KEY)
        client.revoke(
            [receipt.doc_id], key, sample.agency, sample.revoke or REVOKE_REASON
        )
    render.out.print(f"revoked {sample.file} ({sample.revoke or REVOKE_REASON})")


def show_issued(issued: Sequence[Issued], trust: TrustList) -> None:
    """A table of the documents, then each one's verify URL and QR image
    on lines of their own, so they can be copied or clicked whole."""
    table = Table(title="Sample documents")
    for column in ("#", "document", "agency", "type", "status"):
        table.add_column(column, overflow="fold")
    for n, item in enumerate(issued, 1):
        names = trust.agency(item.sample.agency).names
        table.add_row(
            str(n),
            item.sample.title_en or item.sample.title,
            f"{names['en']} ({item.sample.agency})",
            item.sample.doc_type,
            render.styled_status(item.status),
        )
    render.out.print(table)
    for n, item in enumerate(issued, 1):
        render.out.print(f"[bold]{n}[/] {item.sample.file}", soft_wrap=True)
        render.out.print(f"   verify: {item.receipt.verify_url}", soft_wrap=True)
        render.out.print(f"   QR:     {item.qr}", soft_wrap=True)


# --- the whole demo ------------------------------------------------------------


def run_demo(opts: DemoOptions) -> int:
    examples = find_examples(opts.examples)
    samples = load_manifest(examples)
    trust, configs = ensure_cluster(opts)
    urls = {c.agency: c.public_url for c in configs}
    missing = {s.agency for s in samples} - set(urls)
    if missing:
        raise ConfigError(f"the manifest needs agencies the cluster lacks: {missing}")
    # SIGTERM (docker stop, a supervisor) and SIGINT stop the demo the same
    # way, nodes included: they run in their own sessions and would
    # otherwise outlive it. Installed before the first node starts.
    previous = {
        sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    nodes: list[NodeProcess] = []
    reported: set[str] = set()  # nodes that died while serving
    died = 0
    try:
        check_ports_free(configs)
        start_nodes(configs, opts.directory, nodes)
        leader = wait_ready(nodes)
        render.out.print(f"{len(nodes)} nodes up, leader {leader}")
        issued = issue_samples(opts.directory, examples, samples, urls)
        show_issued(issued, trust)
        first = issued[0]
        ledger = ledger_command()
        render.out.print(
            f"check one here: {ledger} verify --trust "
            f"{opts.directory / GENESIS_FILE} --qr {first.qr} "
            f"{examples / first.sample.file}",
            soft_wrap=True,
        )
        render.out.print(
            f"the cluster: {ledger} status --node {next(iter(urls.values()))}",
            soft_wrap=True,
        )
        if opts.serve:
            render.out.print("[bold]serving; Ctrl-C stops the nodes[/]")
            died = _serve(nodes, reported)
    except KeyboardInterrupt:
        render.out.print("stopping")
        died = len(reported)
    finally:
        stop_nodes(nodes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A node that died while serving is a failure, even once Ctrl-C stops
    # the rest.
    return 1 if died else 0


def _serve(nodes: Sequence[NodeProcess], reported: set[str]) -> int:
    """Block until Ctrl-C or SIGTERM, or until every node has died; report
    (into ``reported``) each node that dies meanwhile. How many died."""
    while len(reported) < len(nodes):
        for node in nodes:
            code = node.process.poll()
            if code is not None and node.agency not in reported:
                reported.add(node.agency)
                render.err.print(
                    f"[red]node {node.agency} exited ({code}); see {node.log}[/]"
                )
        time.sleep(0.5)
    return len(reported)


def check_ports_free(configs: Sequence[NodeConfig]) -> None:
    """ConfigError if a port a node needs is taken: most often by the nodes
    of another ``make run`` still serving, which the new nodes would fail
    against while the old ones answered the health checks."""
    for config in configs:
        for what, host, port in (
            ("API", config.api_host, config.api_port),
            ("Raft", config.raft_host, config.raft_port),
        ):
            try:
                # The host's own family: an IPv6 host would not bind as IPv4.
                family, *_, address = socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )[0]
            except OSError:
                continue  # not resolvable here: the node will say so itself
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # Not refused for a port a stopped run left in TIME_WAIT.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    raise ConfigError(
                        f"{config.agency}'s {what} port {host}:{port} is in use "
                        f"({exc.strerror}): is another `make run` or node still "
                        "running? Stop it first."
                    ) from None


def ledger_command() -> str:
    """How to type the ``ledger`` command from here: its name if it is on
    PATH, else the path it was started by (``.venv/bin/ledger`` under
    ``make run``)."""
    if shutil.which("ledger") is not None:
        return "ledger"
    started = Path(sys.argv[0])
    if started.name == "ledger" and started.exists():
        return os.path.relpath(started)
    return "ledger"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
