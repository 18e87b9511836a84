"""``ledger cluster init``: the files, their modes, and that the node loads them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.cluster import (
    API_PORT_OFFSET,
    ClusterExistsError,
    ClusterLayout,
    init_cluster,
)
from cli.main import app
from ledger.entries import DOC_TYPES
from ledger.errors import ConfigError
from ledger.keys import SigningKey
from ledger.trust import TrustList
from node.config import load_config

AGENCIES = ("police", "justice", "health")


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    directory = tmp_path / "cluster"
    result = CliRunner().invoke(
        app,
        [
            "cluster",
            "init",
            "--dir",
            str(directory),
            "--agencies",
            ",".join(AGENCIES),
            "--base-port",
            "7300",
            "--origin",
            "agency-ledger.example/test",
        ],
    )
    assert result.exit_code == 0, result.output
    return directory


def test_writes_every_file_with_private_keys(cluster: Path) -> None:
    assert (cluster / "genesis.json").is_file()
    assert (cluster / "docker-compose.yml").is_file()
    for agency in AGENCIES:
        for name in ("node.toml", "compose.toml"):
            assert (cluster / agency / name).is_file()
        for name in ("node.key", "issuer.key", "admin.key"):
            mode = stat.S_IMODE((cluster / agency / name).stat().st_mode)
            assert mode == 0o600, (agency, name, oct(mode))
            SigningKey.load(cluster / agency / name)


def test_genesis_is_a_trust_list_with_the_keys_written(cluster: Path) -> None:
    trust = TrustList.load(cluster / "genesis.json")
    assert trust.origin == "agency-ledger.example/test"
    assert trust.version == 1
    assert [a.id for a in trust.agencies] == list(AGENCIES)
    assert trust.quorum == 2
    police = trust.agency("police")
    assert police.names == {"vi": "Công an Thành phố", "en": "City Police Department"}
    assert trust.agency("justice").names["en"] == "Department of Justice"
    assert trust.agency("health").names["vi"] == "Sở Y tế"
    for agency in AGENCIES:
        info = trust.agency(agency)
        base = cluster / agency
        assert info.node_key == SigningKey.load(base / "node.key").public_key
        assert info.issuer_keys == (SigningKey.load(base / "issuer.key").public_key,)
        assert info.admin_keys == (SigningKey.load(base / "admin.key").public_key,)
        assert info.doc_types == DOC_TYPES


def test_node_toml_loads_with_ports_and_peers(cluster: Path) -> None:
    for i, agency in enumerate(AGENCIES):
        cfg = load_config(cluster / agency / "node.toml")
        assert cfg.agency == agency
        assert cfg.raft_port == 7300 + i
        assert cfg.api_port == 7300 + API_PORT_OFFSET + i
        assert cfg.public_url == f"http://127.0.0.1:{7400 + i}"
        assert cfg.genesis == (cluster / "genesis.json").resolve()
        assert cfg.node_key == (cluster / agency / "node.key").resolve()
        assert cfg.data_dir == (cluster / agency / "data").resolve()
        peers = {p.id: p for p in cfg.peers}
        assert set(peers) == set(AGENCIES) - {agency}
        for j, other in enumerate(AGENCIES):
            if other != agency:
                assert peers[other].raft_port == 7300 + j
                assert peers[other].raft_host == "127.0.0.1"
                assert peers[other].api_url == f"http://127.0.0.1:{7400 + j}"


def test_compose_toml_reaches_peers_by_service_name(cluster: Path) -> None:
    cfg = load_config(cluster / "justice" / "compose.toml")
    assert (cfg.raft_host, cfg.api_host) == ("0.0.0.0", "0.0.0.0")
    assert {p.id: p.raft_host for p in cfg.peers} == {
        "police": "police",
        "health": "health",
    }
    assert cfg.public_url == "http://127.0.0.1:7401"


def test_refuses_to_overwrite_an_existing_cluster(cluster: Path) -> None:
    before = (cluster / "police" / "node.key").read_bytes()
    result = CliRunner().invoke(
        app, ["cluster", "init", "--dir", str(cluster), "--agencies", "police"]
    )
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output
    assert (cluster / "police" / "node.key").read_bytes() == before


def test_refuses_when_only_an_agency_folder_exists(tmp_path: Path) -> None:
    (tmp_path / "police").mkdir()
    with pytest.raises(ClusterExistsError):
        init_cluster(tmp_path, ClusterLayout(agencies=("police", "justice")))
    assert not (tmp_path / "genesis.json").exists()


def test_other_ids_are_their_own_names(tmp_path: Path) -> None:
    trust = init_cluster(tmp_path, ClusterLayout(agencies=("land-office", "tax")))
    assert dict(trust.agency("tax").names) == {"vi": "tax", "en": "tax"}


def test_public_host_goes_into_public_urls_only(tmp_path: Path) -> None:
    layout = ClusterLayout(
        agencies=AGENCIES, host="0.0.0.0", public_host="192.168.1.20"
    )
    init_cluster(tmp_path, layout)
    cfg = load_config(tmp_path / "health" / "node.toml")
    assert cfg.api_host == "0.0.0.0"
    assert cfg.public_url == "http://192.168.1.20:7202"
    assert {p.raft_host for p in cfg.peers} == {"127.0.0.1"}


@pytest.mark.parametrize(
    "agencies",
    [(), ("police", "police"), ("Police",), ("x",), ("a" * 41,)],
)
def test_bad_agency_lists_are_refused(agencies: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        ClusterLayout(agencies=agencies)


def test_bad_agency_on_the_command_line_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["cluster", "init", "--dir", str(tmp_path), "--agencies", "Bad_Id"]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "genesis.json").exists()


@pytest.mark.parametrize(
    ("line", "snapshot_bytes"),
    [(None, 64 * 1024 * 1024), ("snapshot_bytes = 4096", 4096)],
    ids=["default", "set"],
)
def test_raft_snapshot_bytes_loads(
    cluster: Path, line: str | None, snapshot_bytes: int
) -> None:
    path = cluster / "police" / "node.toml"
    if line is not None:
        _add_to_raft_table(path, line)
    assert load_config(path).snapshot_bytes == snapshot_bytes


@pytest.mark.parametrize("line", ["snapshot_bytes = 0", 'snapshot_bytes = "64M"'])
def test_bad_raft_snapshot_bytes_is_refused(cluster: Path, line: str) -> None:
    path = cluster / "police" / "node.toml"
    _add_to_raft_table(path, line)
    with pytest.raises(ConfigError, match="snapshot_bytes"):
        load_config(path)


def _add_to_raft_table(path: Path, line: str) -> None:
    text = path.read_text()
    assert "[raft]\n" in text
    path.write_text(text.replace("[raft]\n", f"[raft]\n{line}\n"))


@pytest.mark.parametrize(
    ("tables", "refresh_ms"),
    [
        ("", 3600 * 1000),  # an hour
        ("[limits]\ncheckpoint_max_age_ms = 60000\n", 15_000),  # a quarter
        ("[batch]\nrefresh_ms = 2000\n", 2000),
    ],
    ids=["default", "quarter-of-max-age", "set"],
)
def test_refresh_ms_keeps_below_the_checkpoint_age_verifiers_accept(
    cluster: Path, tables: str, refresh_ms: int
) -> None:
    path = cluster / "police" / "node.toml"
    path.write_text(path.read_text() + tables)
    assert load_config(path).refresh_ms == refresh_ms


@pytest.mark.parametrize(
    "tables",
    [
        "[batch]\nrefresh_ms = 0\n",
        "[batch]\nrefresh_ms = 999\n",  # a block per tick, or nearly
        "[batch]\nrefresh_ms = 43200001\n",  # over half the 24 h default age
        "[batch]\nrefresh_ms = 3000\n[limits]\ncheckpoint_max_age_ms = 5000\n",
    ],
)
def test_a_refresh_ms_not_below_the_checkpoint_age_is_refused(
    cluster: Path, tables: str
) -> None:
    path = cluster / "police" / "node.toml"
    path.write_text(path.read_text() + tables)
    with pytest.raises(ConfigError, match="refresh_ms"):
        load_config(path)


def test_a_new_agencys_peers_entry_is_appended_as_the_readme_says(
    cluster: Path,
) -> None:
    """Each peer is a [[peers]] table of its own, so appending one (README,
    "Changing the trust list") gives a file that loads with the new peer."""
    path = cluster / "police" / "node.toml"
    path.write_text(
        path.read_text() + '\n[[peers]]\nid = "land"\nraft = "127.0.0.1:7303"\n'
        'api = "http://127.0.0.1:7403"\n'
    )
    peers = {p.id: p for p in load_config(path).peers}
    assert set(peers) == {"justice", "health", "land"}
    assert (peers["land"].raft_port, peers["land"].api_url) == (
        7303,
        "http://127.0.0.1:7403",
    )


def test_a_node_whose_public_url_makes_no_qr_code_refuses_to_start(
    cluster: Path,
) -> None:
    """Otherwise it would serve a 500 for every QR code with a salt."""
    path = cluster / "police" / "node.toml"
    long_url = "https://verify." + "x" * 120 + ".gov.vn"
    path.write_text(path.read_text().replace("http://127.0.0.1:7400", long_url))
    assert load_config(path).public_url == long_url
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "node", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "public_url" in done.stderr and "version 11" in done.stderr
    assert not (cluster / "police" / "data").exists()
