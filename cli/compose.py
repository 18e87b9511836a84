"""The docker-compose file of a cluster, written by ``ledger cluster init``.

Every agency is one service built from the repository's Dockerfile (whose
entry point is ``ledger``) running ``ledger node run --config
/cluster/ID/node.toml``. Inside compose the peers are reached by service
name, so the node.toml a container sees is the agency's ``compose.toml``,
mounted over ``/cluster/ID/node.toml``; the host keeps its own node.toml for
running the same cluster without containers. Each container gets only its
node key: issuer and admin keys stay with the agency, off the node. The
chain lives in a named volume per agency.

The text is written by hand rather than by a YAML library so that it is
byte-for-byte stable (the repository's own docker-compose.yml is compared
with it by a test) and needs nothing beyond the standard library. Strings are
written as JSON strings, which YAML reads as double-quoted scalars.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from cli.cluster import (
    COMPOSE_TOML,
    CONTAINER_ROOT,
    DATA_DIR,
    DEFAULT_BASE_PORT,
    GENESIS_FILE,
    MARKER_DIR,
    NODE_KEY,
    NODE_TOML,
    ClusterLayout,
)

IMAGE: Final = "agency-ledger:local"
HEALTH_INTERVAL: Final = "5s"
HEALTH_TIMEOUT: Final = "3s"
HEALTH_RETRIES: Final = 12
HEALTH_START: Final = "10s"
# The node stops cleanly on SIGTERM (flushes, closes LevelDB); give it time.
STOP_GRACE: Final = "20s"
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
# Where the repository's own docker-compose.yml expects its cluster folder.
REPO_CLUSTER_DIR: Final = "var/cluster"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def health_command(port: int) -> list[str]:
    """The healthcheck: GET /healthz inside the container (no curl in slim)."""
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=2)"
    )
    return ["CMD", "python", "-c", probe]


def node_command(agency: str) -> list[str]:
    """Arguments after the image's ``ledger`` entry point."""
    return ["node", "run", "--config", container_config(agency)]


def container_config(agency: str) -> str:
    return f"{CONTAINER_ROOT}/{agency}/{NODE_TOML}"


def default_build_context(directory: Path) -> str | None:
    """The repository root relative to ``directory``, if we run from one."""
    if not (REPO_ROOT / "Dockerfile").is_file():
        return None
    return os.path.relpath(REPO_ROOT, directory.resolve())


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


MADE_BY_INIT: Final = "ledger cluster init"
# How the repository's own file is made (and remade).
REPO_COMMAND: Final = (
    "ledger cluster compose --cluster-dir ./var/cluster --build-context ."
)


def render_compose(
    layout: ClusterLayout,
    *,
    cluster_dir: str = ".",
    build_context: str | None = None,
    made_by: str = MADE_BY_INIT,
) -> str:
    """The compose file for ``layout``.

    ``cluster_dir`` is the cluster folder relative to the compose file's
    folder; ``build_context`` the repository root relative to it (None:
    the image must be built beforehand, ``docker build -t IMAGE .``).
    """
    base = cluster_dir.rstrip("/") or "."
    init = f"ledger cluster init --dir {base} --agencies {','.join(layout.agencies)}"
    if layout.base_port != DEFAULT_BASE_PORT:
        init += f" --base-port {layout.base_port}"
    lines = [
        "# Made by cli/compose.py, do not edit by hand; remake it with",
        f"#   {made_by}",
        "# One service per agency, for the cluster folder made by",
        f"#   {init}",
        "# Start: docker compose up -d",
        f"# Status: ledger status --node {layout.public_url(layout.agencies[0])}",
        "",
        "x-ledger-node: &ledger-node",
        f"  image: {_q(IMAGE)}",
    ]
    if build_context is not None:
        lines += ["  build:", f"    context: {_q(build_context)}"]
    else:
        lines.append(f"  # build the image first: docker build -t {IMAGE} .")
    lines += [
        "  restart: unless-stopped",
        '  stop_signal: "SIGTERM"',
        f"  stop_grace_period: {_q(STOP_GRACE)}",
        "",
        "services:",
    ]
    for agency in layout.agencies:
        lines += _service(layout, agency, base)
    lines += ["", "volumes:"]
    for agency in layout.agencies:
        lines += [f"  {agency}-data: {{}}", f"  {agency}-meta: {{}}"]
    return "\n".join(lines) + "\n"


def _service(layout: ClusterLayout, agency: str, base: str) -> list[str]:
    api = layout.api_port(agency)
    root = f"{CONTAINER_ROOT}/{agency}"
    volumes = [
        f"{base}/{GENESIS_FILE}:{CONTAINER_ROOT}/{GENESIS_FILE}:ro",
        f"{base}/{agency}/{NODE_KEY}:{root}/{NODE_KEY}:ro",
        f"{base}/{agency}/{COMPOSE_TOML}:{root}/{NODE_TOML}:ro",
        f"{agency}-data:{root}/{DATA_DIR}",
        f"{agency}-meta:{root}/{MARKER_DIR}",
    ]
    return [
        f"  {agency}:",
        "    <<: *ledger-node",
        f"    hostname: {_q(agency)}",
        f"    command: {_flow(node_command(agency))}",
        "    ports:",
        f"      - {_q(f'{api}:{api}')}",
        "    volumes:",
        *(f"      - {_q(v)}" for v in volumes),
        "    healthcheck:",
        f"      test: {_flow(health_command(api))}",
        f"      interval: {_q(HEALTH_INTERVAL)}",
        f"      timeout: {_q(HEALTH_TIMEOUT)}",
        f"      retries: {HEALTH_RETRIES}",
        f"      start_period: {_q(HEALTH_START)}",
    ]


def repo_compose() -> str:
    """The repository's own docker-compose.yml: the three sample agencies.

    It expects ``ledger cluster init --dir var/cluster --agencies
    police,justice,health`` to have been run with the default ports.
    """
    from cli.cluster import DEMO_AGENCIES

    layout = ClusterLayout(agencies=DEMO_AGENCIES)
    return render_compose(
        layout,
        cluster_dir=f"./{REPO_CLUSTER_DIR}",
        build_context=".",
        made_by=REPO_COMMAND,
    )
