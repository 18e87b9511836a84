"""The ``ledger`` command (typer): where the pieces of the project meet.

Exit status: 0 success or a valid document; 1 a request the node refused;
2 a usage, configuration or file error; 3 the node could not be reached.
``ledger verify`` and ``ledger audit`` give each verification failure its
own status (``cli.verifying.EXIT_CODES``). Only ``main`` and the top-level
callback configure logging; every module logs through its own logger.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.table import Table

from cli import common, governance, render
from cli.cluster import (
    DEFAULT_BASE_PORT,
    DEFAULT_HOST,
    DEFAULT_ORIGIN,
    DEMO_AGENCIES,
    ClusterLayout,
    init_cluster,
)
from cli.common import NodeOpt, TimeoutOpt, handled
from cli.verifying import (
    EXIT_CODES,
    EXIT_HELP,
    EXIT_NETWORK,
    EXIT_USAGE,
    UsageError,
    VerifyRequest,
    run_verify,
)
from cli.wire import ClientError, NetworkError
from cli.writes import register as register_writes
from ledger.errors import ConfigError

logger = logging.getLogger(__name__)

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"

app = typer.Typer(
    name="ledger",
    help="Agency Ledger: anchor, verify and audit documents issued by agencies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cluster_app = typer.Typer(help="Create a cluster's files.", no_args_is_help=True)
node_app = typer.Typer(help="Run an agency's node.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
app.add_typer(governance.app, name="governance")
app.add_typer(node_app, name="node")


def configure_logging(level: str) -> None:
    """The one place handlers are set up (stderr, key=value lines)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise typer.BadParameter(f"unknown log level {level!r}")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(numeric)


@app.callback()
def _root(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
) -> None:
    configure_logging(log_level)


# --- cluster ---------------------------------------------------------------


@cluster_app.command("init")
def cluster_init(
    directory: Annotated[Path, typer.Option("--dir", help="Folder to create.")],
    agencies: Annotated[
        str, typer.Option("--agencies", help="Comma-separated agency ids.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address the nodes listen on.")
    ] = DEFAULT_HOST,
    base_port: Annotated[
        int, typer.Option("--base-port", help="Raft ports from here, API +100.")
    ] = DEFAULT_BASE_PORT,
    origin: Annotated[
        str, typer.Option("--origin", help="The chain's checkpoint origin.")
    ] = DEFAULT_ORIGIN,
    public_host: Annotated[
        str | None,
        typer.Option("--public-host", help="Host name in public (QR) URLs."),
    ] = None,
) -> None:
    """Write genesis.json, keys, node.toml files and docker-compose.yml."""
    from cli.compose import default_build_context

    with handled():
        layout = ClusterLayout(
            agencies=tuple(a.strip() for a in agencies.split(",") if a.strip()),
            host=host,
            base_port=base_port,
            public_host=public_host,
            origin=origin,
        )
        trust = init_cluster(
            directory, layout, build_context=default_build_context(directory)
        )
    table = Table(title=f"Cluster in {directory}")
    for col in ("agency", "name", "raft", "API / public URL", "config"):
        table.add_column(col, overflow="fold")
    for agency in layout.agencies:
        table.add_row(
            agency,
            trust.agency(agency).names["en"],
            str(layout.raft_port(agency)),
            layout.public_url(agency),
            str(directory / agency / "node.toml"),
        )
    render.out.print(table)
    render.out.print(f"chain id {trust.chain_id().hex()}  origin {trust.origin}")


@cluster_app.command("compose")
def cluster_compose(
    agencies: Annotated[str, typer.Option("--agencies")] = "police,justice,health",
    base_port: Annotated[int, typer.Option("--base-port")] = DEFAULT_BASE_PORT,
    cluster_dir: Annotated[
        str, typer.Option("--cluster-dir", help="Cluster folder, from the file.")
    ] = ".",
    build_context: Annotated[
        str | None, typer.Option("--build-context", help="Repository root.")
    ] = None,
    public_host: Annotated[str | None, typer.Option("--public-host")] = None,
) -> None:
    """Print a docker-compose.yml for a cluster made by `cluster init`.

    The repository's own docker-compose.yml is this command's output with
    --cluster-dir ./var/cluster --build-context . (a test keeps them equal).
    """
    from cli.compose import render_compose

    with handled():
        layout = ClusterLayout(
            agencies=tuple(a.strip() for a in agencies.split(",") if a.strip()),
            base_port=base_port,
            public_host=public_host,
        )
        command = ["ledger cluster compose"]
        if agencies != ",".join(DEMO_AGENCIES):
            command.append(f"--agencies {agencies}")
        if base_port != DEFAULT_BASE_PORT:
            command.append(f"--base-port {base_port}")
        if cluster_dir != ".":
            command.append(f"--cluster-dir {cluster_dir}")
        if build_context is not None:
            command.append(f"--build-context {build_context}")
        if public_host is not None:
            command.append(f"--public-host {public_host}")
        text = render_compose(
            layout,
            cluster_dir=cluster_dir,
            build_context=build_context,
            made_by=" ".join(command),
        )
        sys.stdout.write(text)


# --- node ------------------------------------------------------------------


@node_app.command("run")
def node_run(
    config: Annotated[Path, typer.Option("--config", help="DIR/ID/node.toml")],
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run this agency's node (Raft, store and API) until SIGTERM or Ctrl-C."""
    configure_logging(log_level)
    with handled():
        if not config.is_file():
            raise UsageError(f"no configuration file {config}")
        # Imported here: the node pulls in the whole server stack, which the
        # other commands do not need.
        from cli.serve import run_node

        run_node(config)


# --- writes: anchor, revoke, supersede, record, proof (cli/writes.py) ---

register_writes(app)


# --- verify ----------------------------------------------------------------


@app.command(epilog=EXIT_HELP)
def verify(
    document: Annotated[
        Path | None, typer.Argument(help="The document file (with --receipt or --qr).")
    ] = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Fetch the bundle (and trust) here.")
    ] = None,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="Pinned trust list (genesis.json).")
    ] = None,
    max_age: Annotated[
        int | None,
        typer.Option(
            "--max-age", min=0, help="Checkpoints older than this (s) are stale."
        ),
    ] = None,
    receipt: Annotated[
        Path | None,
        typer.Option("--receipt", help="The receipt `ledger anchor` wrote."),
    ] = None,
    qr: Annotated[Path | None, typer.Option("--qr", help="A QR code image.")] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="A bundle file, JSON or binary.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine output.")] = False,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Verify a document: its status, and that the file was not altered.

    Offline with --trust and --bundle; online with --node (or the node named
    in the QR code or receipt), which only supplies the proofs: the verdict
    is computed here. Each status has its own exit status (below).
    """
    req = VerifyRequest(
        node=node,
        trust=trust,
        max_age_s=max_age,
        receipt=receipt,
        qr=qr,
        bundle=bundle,
        document=document,
    )
    try:
        outcome = run_verify(
            req,
            client_factory=lambda url: common.make_client(
                url, timeout=timeout, retries=2
            ),
        )
    except (UsageError, ConfigError) as exc:
        render.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except (NetworkError, ClientError) as exc:
        render.err.print(f"[red]network error:[/] {exc}")
        raise typer.Exit(EXIT_NETWORK) from None
    result = outcome.to_json()
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        render.out.print(render.verdict_panel(result))
    raise typer.Exit(EXIT_CODES[outcome.status])


# --- audit, status, demo ---------------------------------------------------


AUDIT_EXIT_HELP: Final = (
    "Exit status: 0 the history checks out, 20 tampered (the report names the "
    "block height and leaf index), 23 malformed, 2 usage or file error, "
    "3 network error."
)


@app.command(epilog=AUDIT_EXIT_HELP)
def audit(
    node: NodeOpt,
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="The genesis trust list (pins the chain id)."),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="File keeping the last verified checkpoint."),
    ] = None,
    documents: Annotated[
        int | None,
        typer.Option(
            "--documents", help="Check at most this many document statuses (all)."
        ),
    ] = None,
    proofs: Annotated[
        int, typer.Option("--proofs", help="Served proofs to compare.")
    ] = 32,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """Replay the whole history from a node and re-verify everything."""
    from cli.auditcmd import run_audit_command

    code = run_audit_command(
        node=node,
        trust=trust,
        keep=keep,
        documents=documents,
        proofs=proofs,
        as_json=as_json,
        client_factory=lambda url: common.make_client(url, timeout=timeout),
    )
    raise typer.Exit(code)


@app.command()
def status(
    node: NodeOpt,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """The cluster at a glance: every member's role, term and indexes."""
    from cli.statuscmd import show_status

    with handled():
        show_status(
            node,
            lambda url, retries: common.make_client(
                url, timeout=timeout, retries=retries
            ),
        )


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Cluster folder.")] = Path(
        "var"
    ),
    agencies: Annotated[str, typer.Option("--agencies")] = "police,justice,health",
    base_port: Annotated[int, typer.Option("--base-port")] = DEFAULT_BASE_PORT,
    examples: Annotated[
        Path | None, typer.Option("--examples", help="Folder with manifest.json.")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving until Ctrl-C.")
    ] = True,
) -> None:
    """Start a local 3-agency cluster with sample documents (what `make run` does)."""
    from cli.demo import DemoOptions, run_demo

    with handled():
        code = run_demo(
            DemoOptions(
                directory=directory,
                agencies=tuple(a.strip() for a in agencies.split(",") if a.strip()),
                base_port=base_port,
                examples=examples,
                serve=serve,
            )
        )
    raise typer.Exit(code)


# What bad data (a hostile node's answer, a damaged file) can raise from the
# code that reads it; anything else is a bug and keeps its traceback.
MALFORMED_DATA: Final = (
    KeyError,
    TypeError,
    ValueError,
    IndexError,
    AttributeError,
    RecursionError,
)


def main() -> None:
    """Entry point of the ``ledger`` console script."""
    try:
        app()
    except MALFORMED_DATA as exc:
        # A node or file that sends well-formed JSON of the wrong shape must
        # not get a traceback out of us: it is a malformed answer (23).
        render.err.print(
            f"error: malformed data ({type(exc).__name__}: {exc})", markup=False
        )
        sys.exit(EXIT_CODES["malformed"])


if __name__ == "__main__":
    main()
