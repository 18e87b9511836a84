"""``ledger status``: each member of the cluster, asked directly; the checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cli import render
from cli.client import LedgerClient, NetworkError
from ledger.errors import LedgerError

logger = logging.getLogger(__name__)


Factory = Callable[[str, int], LedgerClient]  # (url, retries) -> client


def member_rows(client: LedgerClient, factory: Factory) -> list[dict[str, Any]]:
    """One row per member: what that member says about itself.

    Each member is asked on its own (no retries): a node that is down shows
    as unreachable instead of stalling the whole table.
    """
    info = client.cluster()
    members = info.get("members") or [
        {"id": info.get("agency"), "voter": True, "api_url": client.base_url}
    ]
    rows: list[dict[str, Any]] = []
    for member in members:
        row: dict[str, Any] = dict(member)
        url = member.get("api_url")
        if member.get("id") == info.get("agency"):
            row.update(info)
            row["id"] = member.get("id")
        elif url:
            try:
                with factory(url, 0) as peer:
                    row.update(peer.cluster())
                row["id"] = member.get("id")
            except LedgerError as exc:
                logger.debug("member unreachable id=%s error=%s", member.get("id"), exc)
                row["role"] = "unreachable"
        else:
            row["role"] = "unreachable"
        row["api_url"] = url
        rows.append(row)
    return rows


def show_status(node: str, factory: Factory) -> None:
    with factory(node, 1) as client:
        rows = member_rows(client, factory)
        try:
            checkpoint: dict[str, Any] | None = client.checkpoint()
        except NetworkError:
            raise
        except LedgerError:
            checkpoint = None
    render.out.print(render.cluster_table(rows))
    if checkpoint is None:
        render.out.print("[yellow]no final checkpoint yet[/]")
        return
    render.out.print(
        f"final checkpoint: height {checkpoint.get('height')}, "
        f"{checkpoint.get('size')} entries, "
        f"{render.fmt_time(checkpoint.get('time'))}, "
        f"root {str(checkpoint.get('root', ''))[:16]}…"
    )
