"""docker-compose: the repository's file and the one ``cluster init`` writes agree.

Parsed with PyYAML (installed in the venv as a dependency of the dev tools,
not one of ours), which also resolves the ``<<: *ledger-node`` merge keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from typer.testing import CliRunner

from cli.cluster import API_PORT_OFFSET, DEFAULT_BASE_PORT, ClusterLayout, init_cluster
from cli.compose import IMAGE, REPO_CLUSTER_DIR, repo_compose
from cli.main import app
from node.config import load_config

ROOT = Path(__file__).resolve().parents[2]
AGENCIES = ("police", "justice", "health")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cluster")
    init_cluster(directory, ClusterLayout(agencies=AGENCIES), build_context="../repo")
    return directory


def _normalised(service: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A service with host paths made relative to its cluster folder."""
    out = dict(service)
    out["volumes"] = [v.removeprefix(prefix) for v in service["volumes"]]
    return out


def test_repo_file_is_what_the_code_makes() -> None:
    assert (ROOT / "docker-compose.yml").read_text(encoding="utf-8") == repo_compose()
    result = CliRunner().invoke(
        app,
        [
            "cluster",
            "compose",
            "--cluster-dir",
            f"./{REPO_CLUSTER_DIR}",
            "--build-context",
            ".",
        ],
    )
    assert result.exit_code == 0
    assert result.stdout == repo_compose()


def test_repo_file_agrees_with_cluster_init(generated: Path) -> None:
    repo = _load(ROOT / "docker-compose.yml")
    made = _load(generated / "docker-compose.yml")
    assert list(repo["services"]) == list(made["services"]) == list(AGENCIES)
    assert repo["volumes"] == made["volumes"]
    for agency in AGENCIES:
        theirs = _normalised(repo["services"][agency], f"./{REPO_CLUSTER_DIR}/")
        ours = _normalised(made["services"][agency], "./")
        # Only the build context differs: the files sit in other folders.
        assert theirs.pop("build") == {"context": "."}
        assert ours.pop("build") == {"context": "../repo"}
        assert theirs == ours


def test_services_match_the_node_configs(generated: Path) -> None:
    made = _load(generated / "docker-compose.yml")
    for i, agency in enumerate(AGENCIES):
        service = made["services"][agency]
        api = DEFAULT_BASE_PORT + API_PORT_OFFSET + i
        assert service["image"] == IMAGE
        assert service["command"] == [
            "node",
            "run",
            "--config",
            f"/cluster/{agency}/node.toml",
        ]
        assert service["ports"] == [f"{api}:{api}"]
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        assert re.search(rf"http://127\.0\.0\.1:{api}/healthz", test[3])
        mounts = {
            target.removesuffix(":ro"): host
            for host, _, target in (v.partition(":") for v in service["volumes"])
        }
        assert mounts["/cluster/genesis.json"] == "./genesis.json"
        assert mounts[f"/cluster/{agency}/node.key"] == f"./{agency}/node.key"
        assert mounts[f"/cluster/{agency}/node.toml"] == f"./{agency}/compose.toml"
        assert mounts[f"/cluster/{agency}/data"] == f"{agency}-data"
        # The lost-folder marker on a volume of its own: it outlives a
        # recreated container, and a lost data volume (node.marker).
        assert mounts[f"/cluster/{agency}/meta"] == f"{agency}-meta"
        assert {f"{agency}-data", f"{agency}-meta"} <= set(made["volumes"])
        # The file mounted as node.toml: listens where compose publishes and
        # health-checks, and reaches its peers as services of this file.
        cfg = load_config(generated / agency / "compose.toml")
        assert (cfg.api_host, cfg.api_port) == ("0.0.0.0", api)
        assert cfg.raft_port == DEFAULT_BASE_PORT + i
        for peer in cfg.peers:
            assert peer.raft_host in made["services"]
            port = DEFAULT_BASE_PORT + API_PORT_OFFSET + AGENCIES.index(peer.id)
            assert peer.api_url == f"http://{peer.id}:{port}"
        # Its paths, relative to /cluster/ID, land on the mounts above.
        assert cfg.genesis.name == "genesis.json" and cfg.genesis.parent == generated
        assert cfg.node_key == generated / agency / "node.key"
        assert cfg.data_dir == generated / agency / "data"
        assert cfg.data_marker == generated / agency / "meta" / "data-created"
        assert load_config(generated / agency / "node.toml").data_marker is None


def test_dockerfile_runs_ledger() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "\nFROM python:3.11-slim\n" in text
    assert "RUN pip install ." in text
    assert 'ENTRYPOINT ["ledger"]' in text
