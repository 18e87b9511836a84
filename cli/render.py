"""How the command line shows things: rich tables, panels and progress bars.

Output for people goes to stderr or stdout through one ``Console`` each;
output for machines (``--json``, ``ledger proof``) is plain JSON on stdout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cli.documents import AnchorReceipt

STATUS_STYLES: Final[Mapping[str, str]] = {
    "valid": "bold green",
    "revoked": "bold red",
    "superseded": "bold yellow",
    "expired": "bold yellow",
    "not_yet_valid": "bold yellow",
    "not_found": "bold red",
    "tampered": "bold white on red",
    "unknown_issuer": "bold red",
    "stale": "bold yellow",
    "malformed": "bold red",
}

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The last millisecond a datetime holds; the ledger takes any u64 time.
_MAX_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // (
    timedelta(milliseconds=1)
)


def fmt_time(ms: int | None) -> str:
    """Unix milliseconds as ``YYYY-MM-DD HH:MM:SS UTC`` ('' for None; the
    raw value past the year 9999)."""
    if ms is None:
        return ""
    if ms > _MAX_MS:
        return f"after 9999 ({ms} ms since 1970)"
    shown = _EPOCH + timedelta(milliseconds=ms)
    return shown.strftime("%Y-%m-%d %H:%M:%S UTC")


def styled_status(status: str) -> str:
    style = STATUS_STYLES.get(status, "bold")
    return f"[{style}]{status}[/]"


def progress_bar(console: Console = err) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def receipts_table(
    receipts: Sequence[AnchorReceipt], qr_paths: Mapping[bytes, str] | None = None
) -> Table:
    table = Table(title="Anchored documents", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("doc id", overflow="fold", style="cyan")
    table.add_column("leaf", justify="right")
    table.add_column("block", justify="right")
    table.add_column("verify URL", overflow="fold")
    if qr_paths is not None:
        table.add_column("QR", overflow="fold")
    for r in receipts:
        row = [
            r.file_name,
            r.doc_id.hex(),
            str(r.leaf_index),
            str(r.block_height),
            r.verify_url or "",
        ]
        if qr_paths is not None:
            row.append(qr_paths.get(r.doc_id, ""))
        table.add_row(*row)
    return table


def verdict_panel(result: Mapping[str, Any]) -> Panel:
    """The verify command's answer for people (from ``Outcome.to_json``)."""
    status = str(result["status"])
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("status", styled_status(status))
    if result.get("doc_id"):
        grid.add_row("document", str(result["doc_id"]))
    names = result.get("issuer_names") or {}
    if result.get("issuer"):
        label = str(result["issuer"])
        if names:
            label += f" — {names.get('en', '')} / {names.get('vi', '')}"
        grid.add_row("issuer", label)
    for key, title in (("doc_type", "document type"), ("reason", "reason")):
        if result.get(key):
            grid.add_row(title, str(result[key]))
    for key, title in (
        ("issued_at", "issued"),
        ("valid_from", "valid from"),
        ("valid_until", "valid until"),
        ("revoked_at", "revoked"),
    ):
        if result.get(key) is not None:
            grid.add_row(title, fmt_time(result[key]))
    if result.get("superseded_by"):
        grid.add_row("superseded by", str(result["superseded_by"]))
    cp = result.get("checkpoint")
    if isinstance(cp, Mapping):
        grid.add_row(
            "checkpoint",
            f"height {cp['height']}, {cp['size']} entries, {fmt_time(cp['time'])}",
        )
    if result.get("detail"):
        grid.add_row("detail", str(result["detail"]))
    if result.get("trust_from_node"):
        grid.add_row(
            "note", "[yellow]trust list taken from the node; pin it with --trust[/]"
        )
    style = STATUS_STYLES.get(status, "bold").replace("bold ", "")
    return Panel(grid, title="Agency Ledger — verification", border_style=style)


def cluster_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per member, narrow enough for an 80-column terminal: the
    leader is in the caption, commit and applied index share a column."""
    leaders = sorted({str(r["leader"]) for r in rows if r.get("leader")})
    caption = f"leader: {', '.join(leaders) or 'none known'}"
    caption += "; raft index: committed/applied"
    table = Table(
        title="Cluster",
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    table.add_column("member", overflow="fold", min_width=7)
    for col in ("voter", "role"):
        table.add_column(col, no_wrap=True)
    for col in ("term", "raft index", "height", "entries"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("API", no_wrap=True)
    for row in rows:
        role = str(row.get("role", "unreachable"))
        style = {"leader": "bold green", "unreachable": "red"}.get(role, "")
        commit, applied = row.get("commit_index"), row.get("applied_index")
        index = "" if commit is None else f"{commit}/{_s(applied)}"
        table.add_row(
            str(row.get("id", "")),
            "yes" if row.get("voter", True) else "learner",
            f"[{style}]{role}[/]" if style else role,
            _s(row.get("term")),
            index,
            _s(row.get("height")),
            _s(row.get("tree_size")),
            _s(row.get("api_url")).removeprefix("http://"),
        )
    return table


def _s(value: object) -> str:
    return "" if value is None else str(value)
