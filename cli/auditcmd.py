"""``ledger audit``: the audit core (``cli.audit``), a progress bar, a report."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from cli import render
from cli.audit import AuditError, AuditReport, KeptCheckpoint, audit
from cli.client import ClientError, LedgerClient, NetworkError
from cli.sources import ClientSource
from cli.verifying import EXIT_CODES, EXIT_NETWORK, EXIT_USAGE, UsageError, load_trust
from ledger.errors import ConfigError, LedgerError, VerificationError
from ledger.trust import TrustList

logger = logging.getLogger(__name__)


def _genesis(source: ClientSource, trust: Path | None) -> TrustList:
    if trust is not None:
        return load_trust(trust)
    genesis = source.genesis()
    if genesis is None:
        raise UsageError(
            "the node's trust list has changed since the genesis; pass the "
            "genesis with --trust genesis.json"
        )
    render.err.print(
        "[yellow]genesis taken from the node; pin it with --trust genesis.json[/]"
    )
    return genesis


def run_audit_command(
    *,
    node: str,
    trust: Path | None,
    keep: Path | None,
    documents: int | None,
    proofs: int,
    as_json: bool,
    client_factory: Callable[[str], LedgerClient],
) -> int:
    """Run the audit; print the report; return the exit status."""
    try:
        kept = None if keep is None else KeptCheckpoint.load(keep)
        with client_factory(node) as client:
            source = ClientSource(client)
            genesis = _genesis(source, trust)
            tip = source.height()
            with render.progress_bar() as bar:
                task = bar.add_task("auditing", total=tip, rate="")

                def tick(blocks: int, entries: int) -> None:
                    elapsed = bar.tasks[task].elapsed or 0.0
                    rate = f"{entries / elapsed:,.0f} entries/s" if elapsed else ""
                    bar.update(task, completed=blocks, rate=rate)

                docs_task = None

                def docs_tick(done: int, total: int) -> None:
                    # The statuses are checked once the replay is done; one
                    # request per document, so it can take a while.
                    nonlocal docs_task
                    if docs_task is None:
                        docs_task = bar.add_task("documents", total=total, rate="")
                    bar.update(docs_task, completed=done)

                report = audit(
                    source,
                    genesis,
                    keep=kept,
                    documents=documents,
                    proofs=proofs,
                    progress=tick,
                    documents_progress=docs_tick,
                )
    except AuditError as exc:
        return _failed(exc, as_json)
    except (UsageError, ConfigError) as exc:
        render.err.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE
    except (NetworkError, ClientError) as exc:
        render.err.print(f"[red]network error:[/] {exc}")
        return EXIT_NETWORK
    except VerificationError as exc:
        return _failed(AuditError(exc.reason, exc.message), as_json)
    except LedgerError as exc:
        return _failed(AuditError("malformed", str(exc)), as_json)
    if keep is not None and report.final_note is not None:
        try:
            KeptCheckpoint(chain_id=report.chain_id, note=report.final_note).save(keep)
        except ConfigError as exc:
            render.err.print(f"[red]error:[/] {exc}")
            return EXIT_USAGE
    _print_report(report, as_json, keep)
    return 0


def _failed(exc: AuditError, as_json: bool) -> int:
    code = EXIT_CODES.get(exc.reason, EXIT_CODES["tampered"])
    if as_json:
        body = {
            "result": exc.reason,
            "exit_code": code,
            "height": exc.height,
            "leaf": exc.leaf,
            "detail": exc.message,
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        render.err.print(
            f"[bold white on red] AUDIT FAILED: {exc.reason} [/] {exc.message}"
        )
        if exc.height is not None:
            render.err.print(f"  block height: {exc.height}")
        if exc.leaf is not None:
            render.err.print(f"  leaf index:   {exc.leaf}")
    return code


def _print_report(report: AuditReport, as_json: bool, keep: Path | None) -> None:
    if as_json:
        body = {"result": "ok", "exit_code": 0, **report.to_json()}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    table = Table(title="Audit passed", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right", overflow="fold")
    rows = [
        ("blocks", f"{report.blocks:,}"),
        ("entries", f"{report.entries:,}"),
        ("submissions (rejected)", f"{report.submissions:,} ({report.rejected:,})"),
        ("entries per second", f"{report.entries_per_second:,.0f} (replay)"),
        ("seconds", f"{report.seconds:.2f}"),
        ("cosignatures verified", f"{report.cosignatures:,}"),
        ("final checkpoints", f"{report.final_checkpoints:,}"),
        ("consistency proofs", f"{report.consistency_proofs:,}"),
        ("inclusion proofs sampled", f"{report.inclusion_proofs:,}"),
        ("document statuses", f"{report.documents:,}"),
        ("latest final height", str(report.final_height)),
        ("chain id", report.chain_id.hex()),
    ]
    if report.kept_height is not None:
        rows.append(("consistent with kept height", str(report.kept_height)))
    for what, value in rows:
        table.add_row(what, value)
    render.out.print(table)
    for warning in report.warnings:
        render.err.print(f"[yellow]warning:[/] {warning}")
    if keep is not None and report.final_note is not None:
        render.out.print(f"kept the verified checkpoint in {keep}")
