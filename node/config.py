"""The node's TOML configuration.

Paths in the file are relative to the file's own folder, so a cluster folder
made by ``ledger cluster init`` can be moved as a whole.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ledger.errors import ConfigError

# The longest an idle ledger goes without a block by default (an hour), and
# the shortest that may be set (a second: a block, and a round of
# cosignatures, per tick otherwise).
DEFAULT_REFRESH_MS: Final = 3600 * 1000
MIN_REFRESH_MS: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConfig:
    """Another agency's node: its Raft address and its public API."""

    id: str
    raft_host: str
    raft_port: int
    api_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    agency: str
    data_dir: Path
    # The lost-folder marker (node.marker); None: beside data_dir. Somewhere
    # that outlives data_dir: in docker compose, a volume of its own.
    data_marker: Path | None = None
    genesis: Path
    node_key: Path
    raft_host: str
    raft_port: int
    api_host: str
    api_port: int
    public_url: str
    peers: tuple[PeerConfig, ...] = ()
    # The file this was read from: peers are re-read from it when the trust
    # list gains an agency (the operator adds its [[peers]] entry first).
    path: Path | None = None
    # An agency not in the genesis: its node waits until a governance entry
    # adds it to the trust list and the leader adds it to Raft.
    join: bool = False
    # The key a rotate_node_key change will switch to (the node keeps
    # signing with ``node_key`` until the change is applied).
    next_node_key: Path | None = None
    # A trust list newer than the genesis (a saved GET /v1/trust answer):
    # until the node has applied its version, peers may also present the
    # node keys it lists (node.peers). For a node that starts from the
    # genesis after agencies joined or node keys were rotated.
    catch_up_trust: Path | None = None
    # Raft timing: one tick is tick_ms; an election timeout is drawn from
    # [election_ticks, 2 * election_ticks) ticks.
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_interval: int = 10_000
    # Or after this many bytes of applied entries, whichever comes first.
    snapshot_bytes: int = 64 * 1024 * 1024
    # A batch is cut at max_submissions or max_wait_ms, whichever comes first.
    batch_max_submissions: int = 2_000
    # NB: a block is applied on the event loop, which stops ticking and
    # answering peers meanwhile; this bounds that pause (10,000 anchors
    # took 0.25-0.7 s to apply on the 2-core test machine).
    batch_max_entries: int = 20_000
    batch_max_wait_ms: int = 5
    # The leader makes an empty block when none was made for this long, so
    # that the latest final checkpoint of an idle ledger stays fresh (a
    # verifier calls one older than checkpoint_max_age_ms stale). None: a
    # quarter of checkpoint_max_age_ms, at most an hour.
    batch_refresh_ms: int | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    # How long a submission waits for commit (or a final checkpoint).
    submit_timeout_ms: int = 10_000
    rate_per_agency: float = 500.0
    # A verifier calls a checkpoint stale when older than this.
    checkpoint_max_age_ms: int = 24 * 3600 * 1000

    @property
    def refresh_ms(self) -> int:
        """How long the ledger may go without a block (``batch_refresh_ms``)."""
        if self.batch_refresh_ms is not None:
            return self.batch_refresh_ms
        return min(DEFAULT_REFRESH_MS, self.checkpoint_max_age_ms // 4)

    def peer(self, agency: str) -> PeerConfig:
        for peer in self.peers:
            if peer.id == agency:
                return peer
        raise KeyError(agency)


def _split_addr(value: object, what: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{what}: expected HOST:PORT, got {value!r}")
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: bad port in {value!r}")
    return host.strip("[]"), int(port)


def _get(table: dict[str, Any], key: str, kind: type, what: str) -> Any:
    if key not in table:
        raise ConfigError(f"{what}: missing {key!r}")
    val = table[key]
    if not isinstance(val, kind) or (kind is int and isinstance(val, bool)):
        raise ConfigError(f"{what}: {key!r} must be {kind.__name__}")
    return val


def _opt(table: dict[str, Any], key: str, kind: type, default: Any, what: str) -> Any:
    if key not in table:
        return default
    return _get(table, key, kind, what)


def _path_opt(base: Path, table: dict[str, Any], key: str, where: str) -> Path | None:
    value = _opt(table, key, str, None, where)
    return None if value is None else (base / value).resolve()


def _rate(limits: dict[str, Any], where: str) -> float:
    value = limits.get("rate_per_agency", 500)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: 'rate_per_agency' must be a positive number")
    return float(value)


def load_config(path: Path) -> NodeConfig:
    """Read and check a node.toml; raises ConfigError naming the defect."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
    base = path.resolve().parent
    where = str(path)
    raft = _opt(raw, "raft", dict, {}, where)
    api = _opt(raw, "api", dict, {}, where)
    batch = _opt(raw, "batch", dict, {}, where)
    limits = _opt(raw, "limits", dict, {}, where)
    raft_host, raft_port = _split_addr(
        _get(raft, "listen", str, f"{where} [raft]"), f"{where} [raft] listen"
    )
    api_host, api_port = _split_addr(
        _get(api, "listen", str, f"{where} [api]"), f"{where} [api] listen"
    )
    peers = []
    for i, peer in enumerate(_opt(raw, "peers", list, [], where)):
        pw = f"{where} peers[{i}]"
        if not isinstance(peer, dict):
            raise ConfigError(f"{pw}: expected a table")
        host, port = _split_addr(_get(peer, "raft", str, pw), f"{pw} raft")
        peers.append(
            PeerConfig(
                id=_get(peer, "id", str, pw),
                raft_host=host,
                raft_port=port,
                api_url=_get(peer, "api", str, pw),
            )
        )
    next_key = _opt(raw, "next_node_key", str, None, where)
    cfg = NodeConfig(
        agency=_get(raw, "agency", str, where),
        data_dir=(base / _opt(raw, "data_dir", str, "data", where)).resolve(),
        data_marker=_path_opt(base, raw, "data_marker", where),
        genesis=(base / _get(raw, "genesis", str, where)).resolve(),
        node_key=(base / _get(raw, "node_key", str, where)).resolve(),
        raft_host=raft_host,
        raft_port=raft_port,
        api_host=api_host,
        api_port=api_port,
        public_url=_get(api, "public_url", str, f"{where} [api]").rstrip("/"),
        peers=tuple(peers),
        path=path.resolve(),
        join=_opt(raw, "join", bool, False, where),
        next_node_key=None if next_key is None else (base / next_key).resolve(),
        catch_up_trust=_path_opt(base, raw, "catch_up_trust", where),
        tick_ms=_opt(raft, "tick_ms", int, 50, where),
        election_ticks=_opt(raft, "election_ticks", int, 10, where),
        heartbeat_ticks=_opt(raft, "heartbeat_ticks", int, 1, where),
        snapshot_interval=_opt(raft, "snapshot_interval", int, 10_000, where),
        snapshot_bytes=_opt(raft, "snapshot_bytes", int, 64 * 1024 * 1024, where),
        batch_max_submissions=_opt(batch, "max_submissions", int, 2_000, where),
        batch_max_entries=_opt(batch, "max_entries", int, 20_000, where),
        batch_max_wait_ms=_opt(batch, "max_wait_ms", int, 5, where),
        batch_refresh_ms=_opt(batch, "refresh_ms", int, None, where),
        max_body_bytes=_opt(limits, "max_body_bytes", int, 16 * 1024 * 1024, where),
        submit_timeout_ms=_opt(limits, "submit_timeout_ms", int, 10_000, where),
        rate_per_agency=_rate(limits, where),
        checkpoint_max_age_ms=_opt(
            limits, "checkpoint_max_age_ms", int, 24 * 3600 * 1000, where
        ),
    )
    if cfg.tick_ms <= 0 or cfg.election_ticks <= cfg.heartbeat_ticks:
        raise ConfigError(f"{where}: election_ticks must exceed heartbeat_ticks")
    if min(cfg.snapshot_interval, cfg.snapshot_bytes, cfg.submit_timeout_ms) < 1:
        raise ConfigError(
            f"{where}: snapshot_interval, snapshot_bytes and submit_timeout_ms "
            "must be positive"
        )
    if cfg.checkpoint_max_age_ms < 2 * MIN_REFRESH_MS:
        raise ConfigError(
            f"{where}: 'checkpoint_max_age_ms' must be at least {2 * MIN_REFRESH_MS}"
        )
    if not MIN_REFRESH_MS <= cfg.refresh_ms <= cfg.checkpoint_max_age_ms // 2:
        raise ConfigError(
            f"{where}: [batch] 'refresh_ms' must be from {MIN_REFRESH_MS} to half "
            f"of 'checkpoint_max_age_ms' ({cfg.checkpoint_max_age_ms // 2}): "
            "more, and an idle ledger's checkpoints would look stale before the "
            "next refresh is final; less, and it would make a block per tick"
        )
    if any(p.id == cfg.agency for p in cfg.peers):
        raise ConfigError(f"{where}: the node lists itself among its peers")
    return cfg
