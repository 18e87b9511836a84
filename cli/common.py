"""What the commands share: options, the error-to-exit-status mapping, helpers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Final, TypeVar
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from cli import render
from cli.client import ClientError, LedgerClient, NetworkError, Wait
from cli.verifying import EXIT_NETWORK, EXIT_USAGE, UsageError
from ledger.entries import AGENCY_RE
from ledger.errors import ConfigError, LedgerError, RuleViolation
from ledger.keys import SigningKey
from ledger.trust import TrustList

logger = logging.getLogger(__name__)

EXIT_REFUSED: Final = 1
# Past this many documents the table shows the first ones only.
MAX_TABLE_ROWS: Final = 50

_T = TypeVar("_T")

NodeOpt = Annotated[str, typer.Option("--node", help="A node's API URL.")]
KeyOpt = Annotated[
    Path, typer.Option("--key", help="The agency's issuer key (DIR/ID/issuer.key).")
]
AgencyOpt = Annotated[
    str | None,
    typer.Option("--agency", help="Agency id (default: the key file's folder name)."),
]
WaitOpt = Annotated[
    str,
    typer.Option(
        "--wait", help="applied (committed and applied) or final (final checkpoint)."
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.001, help="Seconds to wait for each request."),
]


@contextmanager
def handled() -> Iterator[None]:
    """Translate the errors a command can meet into messages and exit codes."""
    try:
        yield
    except (UsageError, ConfigError, RuleViolation) as exc:
        render.err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except NetworkError as exc:
        render.err.print(f"[red]network error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_NETWORK) from None
    except ClientError as exc:
        code = f" (code {exc.code})" if exc.code else ""
        render.err.print(f"[red]refused by the node:[/] {escape(str(exc))}{code}")
        if exc.retried and exc.slug == "replay":
            render.err.print(
                "[yellow]the request was sent more than once; an earlier copy "
                "may have been applied: check with `ledger proof`[/]"
            )
        raise typer.Exit(EXIT_REFUSED) from None
    except LedgerError as exc:
        render.err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_REFUSED) from None


def make_client(url: str, *, timeout: float, retries: int = 6) -> LedgerClient:
    """The client every command uses (tests replace it with a fake node's);
    UsageError for a --node that is no http(s) URL."""
    check_node_url(url)
    return LedgerClient(url, timeout=timeout, retries=retries)


def check_node_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (ValueError for a port out of range)
    except ValueError as exc:
        raise UsageError(f"--node {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--node {url!r} is not an http(s) URL")


def agency_for_key(key: Path, agency: str | None) -> str:
    """``--agency``, or the name of the folder holding the key (DIR/ID/key)."""
    name = agency or key.resolve().parent.name
    if AGENCY_RE.fullmatch(name) is None:
        raise UsageError(
            f"cannot tell the agency from {key} (folder {name!r}); pass --agency"
        )
    return name


def load_key(path: Path) -> SigningKey:
    try:
        return SigningKey.load(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def check_wait(wait: str) -> Wait:
    if wait == "applied":
        return "applied"
    if wait == "final":
        return "final"
    raise UsageError("--wait is 'applied' or 'final'")


def parse_when(text: str | None) -> int | None:
    """A date (YYYY-MM-DD, midnight UTC), an ISO time, or Unix milliseconds."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise UsageError(f"not a date or time: {text!r}") from exc
    return int(moment.timestamp() * 1000)


def check_issuer(
    trust: TrustList, issuer: str, public_key: bytes, doc_type: str | None = None
) -> None:
    """Say at once, before anything is signed or sent, what the ledger would
    refuse: every submission is signed with one of the agency's issuer keys
    in force (a retired key verifies old documents, it signs nothing new),
    and an agency anchors only the document types granted to it. Every
    command that submits checks this, so a wrong key is the same usage
    error (exit 2) whichever command it was given to."""
    try:
        info = trust.agency(issuer)
    except KeyError:
        raise UsageError(f"{issuer} is no agency of the node's trust list") from None
    if doc_type is not None and doc_type not in info.doc_types:
        granted = ", ".join(info.doc_types)
        raise UsageError(f"{issuer} may not anchor {doc_type!r}; granted: {granted}")
    if public_key not in info.issuer_keys:
        retired = public_key in info.retired_issuer_keys
        raise UsageError(
            f"the key is {'a retired' if retired else 'not an'} issuer key of "
            f"{issuer} in the node's trust list"
        )
