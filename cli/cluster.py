"""``ledger cluster init``: the files a new cluster starts from.

One folder per cluster::

    DIR/genesis.json            the trust list (its hash is the chain id)
    DIR/ID/node.toml            the node's configuration (node/config.py)
    DIR/ID/node.key             signs checkpoints; the node's TLS identity
    DIR/ID/issuer.key           signs the agency's submissions
    DIR/ID/admin.key            approves governance changes
    DIR/ID/compose.toml         node.toml as seen inside docker compose
    DIR/docker-compose.yml      one service per agency (cli/compose.py)

Keys are written mode 0600 by ``SigningKey.save``. Paths inside node.toml
are relative to its folder, so the whole DIR can be moved or mounted.

Ports: agency ``i`` (in the order given) listens for Raft on
``base_port + i`` and for the API on ``base_port + API_PORT_OFFSET + i``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import tomli_w

from ledger.entries import AGENCY_RE, DOC_TYPES
from ledger.errors import ConfigError
from ledger.keys import SigningKey
from ledger.trust import AgencyInfo, TrustList

logger = logging.getLogger(__name__)

DEFAULT_BASE_PORT: Final = 7100
API_PORT_OFFSET: Final = 100
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_ORIGIN: Final = "agency-ledger.example/local"
DEMO_ORIGIN: Final = "agency-ledger.example/demo"
DEMO_AGENCIES: Final = ("police", "justice", "health")
MAX_AGENCIES: Final = 50  # API ports must not run into the next agency's Raft

GENESIS_FILE: Final = "genesis.json"
NODE_TOML: Final = "node.toml"
COMPOSE_TOML: Final = "compose.toml"
NODE_KEY: Final = "node.key"
ISSUER_KEY: Final = "issuer.key"
ADMIN_KEY: Final = "admin.key"
COMPOSE_FILE: Final = "docker-compose.yml"
DATA_DIR: Final = "data"
# In docker compose the data folder is a volume and the rest of the agency's
# folder is the container's: the lost-folder marker (node.marker) gets a
# volume of its own, so that a recreated container still has it.
MARKER_DIR: Final = "meta"
MARKER_FILE: Final = "data-created"
# Inside the containers the cluster folder is mounted here.
CONTAINER_ROOT: Final = "/cluster"
_WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})

# The sample agencies get real names; any other id is its own name.
SAMPLE_NAMES: Final = {
    "police": ("Công an Thành phố", "City Police Department"),
    "justice": ("Sở Tư pháp", "Department of Justice"),
    "health": ("Sở Y tế", "Department of Health"),
}


class ClusterExistsError(ConfigError):
    """``cluster init`` found files it would overwrite."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterLayout:
    """Where each agency's node listens and how it is reached.

    ``host`` is where nodes listen and peers connect (outside compose);
    ``public_host`` the host name in public URLs (what a phone opens).
    """

    agencies: tuple[str, ...]
    host: str = DEFAULT_HOST
    base_port: int = DEFAULT_BASE_PORT
    public_host: str | None = None
    origin: str = DEFAULT_ORIGIN
    doc_types: tuple[str, ...] = field(default=DOC_TYPES)

    def __post_init__(self) -> None:
        if not self.agencies:
            raise ConfigError("a cluster needs at least one agency")
        if len(set(self.agencies)) != len(self.agencies):
            raise ConfigError("an agency id is listed twice")
        for agency in self.agencies:
            if AGENCY_RE.fullmatch(agency) is None:
                raise ConfigError(
                    f"agency id {agency!r} must match [a-z0-9][a-z0-9-]{{1,39}}"
                )
        if len(self.agencies) > MAX_AGENCIES:
            raise ConfigError(f"at most {MAX_AGENCIES} agencies")
        top = self.base_port + API_PORT_OFFSET + len(self.agencies) - 1
        if not self.base_port >= 1024 or top > 65535:
            raise ConfigError(f"ports {self.base_port}..{top} out of range")

    def index(self, agency: str) -> int:
        return self.agencies.index(agency)

    def raft_port(self, agency: str) -> int:
        return self.base_port + self.index(agency)

    def api_port(self, agency: str) -> int:
        return self.base_port + API_PORT_OFFSET + self.index(agency)

    @property
    def connect_host(self) -> str:
        """How a peer reaches a node listening on ``host``."""
        if self.host in _WILDCARD_HOSTS:
            return DEFAULT_HOST
        return self.host

    @property
    def url_host(self) -> str:
        if self.public_host:
            return self.public_host
        if self.host in _WILDCARD_HOSTS:
            return "localhost"
        return self.host

    def public_url(self, agency: str) -> str:
        return f"http://{_bracket(self.url_host)}:{self.api_port(agency)}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def agency_names(agency: str) -> dict[str, str]:
    """Vietnamese and English names: real ones for the samples, else the id."""
    vi, en = SAMPLE_NAMES.get(agency, (agency, agency))
    return {"vi": vi, "en": en}


def node_config(
    layout: ClusterLayout, agency: str, *, compose: bool
) -> dict[str, object]:
    """The node.toml table of ``agency`` (``compose``: hosts are services).

    In compose every node listens on all interfaces of its own container
    and reaches its peers by service name; the public URL stays the one the
    host publishes, since that is what QR codes and browsers open.
    """
    listen = "0.0.0.0" if compose else _bracket(layout.host)
    peers = []
    for other in layout.agencies:
        if other == agency:
            continue
        host = other if compose else _bracket(layout.connect_host)
        peers.append(
            {
                "id": other,
                "raft": f"{host}:{layout.raft_port(other)}",
                "api": f"http://{host}:{layout.api_port(other)}",
            }
        )
    marker = {"data_marker": f"{MARKER_DIR}/{MARKER_FILE}"} if compose else {}
    return {
        "agency": agency,
        "data_dir": DATA_DIR,
        **marker,
        "genesis": f"../{GENESIS_FILE}",
        "node_key": NODE_KEY,
        "raft": {"listen": f"{listen}:{layout.raft_port(agency)}"},
        "api": {
            "listen": f"{listen}:{layout.api_port(agency)}",
            "public_url": layout.public_url(agency),
        },
        "peers": peers,
    }


def render_node_toml(layout: ClusterLayout, agency: str, *, compose: bool) -> str:
    header = (
        "# Made by `ledger cluster init`; paths are relative to this folder.\n"
        if not compose
        else "# node.toml as mounted in docker compose: peers are service names.\n"
    )
    table = node_config(layout, agency, compose=compose)
    peers = table.pop("peers")
    assert isinstance(peers, list)
    # Each peer as a [[peers]] table of its own (tomli_w would write them
    # inline), so that an operator adds a new agency's node by appending one.
    text = tomli_w.dumps(table)
    for peer in peers:
        text += "\n[[peers]]\n" + tomli_w.dumps(peer)
    return header + text


@dataclass(frozen=True, slots=True, kw_only=True)
class _AgencyKeys:
    node: SigningKey
    issuer: SigningKey
    admin: SigningKey


def build_trust(
    layout: ClusterLayout,
    keys: dict[str, _AgencyKeys],
    *,
    created_ms: int,
) -> TrustList:
    agencies = tuple(
        AgencyInfo(
            id=agency,
            names=agency_names(agency),
            node_key=keys[agency].node.public_key,
            issuer_keys=(keys[agency].issuer.public_key,),
            admin_keys=(keys[agency].admin.public_key,),
            doc_types=tuple(layout.doc_types),
        )
        for agency in layout.agencies
    )
    return TrustList(
        origin=layout.origin, version=1, agencies=agencies, created_ms=created_ms
    )


def planned_files(directory: Path, agencies: Sequence[str]) -> list[Path]:
    """Every file ``init_cluster`` writes under ``directory``."""
    out = [directory / GENESIS_FILE, directory / COMPOSE_FILE]
    for agency in agencies:
        base = directory / agency
        out += [
            base / name
            for name in (NODE_TOML, COMPOSE_TOML, NODE_KEY, ISSUER_KEY, ADMIN_KEY)
        ]
    return out


def init_cluster(
    directory: Path,
    layout: ClusterLayout,
    *,
    build_context: str | None = None,
    created_ms: int | None = None,
) -> TrustList:
    """Write a new cluster into ``directory``; return its genesis trust list.

    Refuses (``ClusterExistsError``) if any file it would write exists, or
    an agency folder exists already, so an existing cluster's keys are never
    replaced: losing a node key would orphan that agency's signatures.
    """
    from cli.compose import render_compose

    existing = [p for p in planned_files(directory, layout.agencies) if p.exists()]
    existing += [directory / a for a in layout.agencies if (directory / a).exists()]
    if existing:
        raise ClusterExistsError(
            f"{directory} already holds a cluster ({existing[0]} exists); "
            "refusing to overwrite it. Pick another --dir or remove it first."
        )
    keys = {
        agency: _AgencyKeys(
            node=SigningKey.generate(),
            issuer=SigningKey.generate(),
            admin=SigningKey.generate(),
        )
        for agency in layout.agencies
    }
    when = time.time_ns() // 1_000_000 if created_ms is None else created_ms
    trust = build_trust(layout, keys, created_ms=when)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for agency in layout.agencies:
            base = directory / agency
            base.mkdir()
            keys[agency].node.save(base / NODE_KEY)
            keys[agency].issuer.save(base / ISSUER_KEY)
            keys[agency].admin.save(base / ADMIN_KEY)
            for name, compose in ((NODE_TOML, False), (COMPOSE_TOML, True)):
                text = render_node_toml(layout, agency, compose=compose)
                (base / name).write_text(text, encoding="utf-8")
        compose_text = render_compose(
            layout, cluster_dir=".", build_context=build_context
        )
        (directory / COMPOSE_FILE).write_text(compose_text, encoding="utf-8")
        # The genesis goes last: its presence is what marks a finished cluster.
        trust.save(directory / GENESIS_FILE)
    except OSError as exc:
        raise ConfigError(f"cannot write the cluster into {directory}: {exc}") from exc
    logger.info(
        "cluster initialised dir=%s agencies=%s chain_id=%s",
        directory,
        ",".join(layout.agencies),
        trust.chain_id().hex(),
    )
    return trust


def read_agencies(directory: Path) -> tuple[TrustList, list[str]]:
    """The genesis of a cluster folder and its agencies that have a node.toml."""
    trust = TrustList.load(directory / GENESIS_FILE)
    agencies = [
        a.id for a in trust.agencies if (directory / a.id / NODE_TOML).is_file()
    ]
    return trust, agencies
