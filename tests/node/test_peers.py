"""node.peers: the later trust list a node behind the cluster takes its
peers from (``catch_up_trust``).

``load_catch_up_trust`` reads it as served by ``GET /v1/trust`` only, and
refuses with the file's name one of another chain or older than the
genesis. ``Peers`` takes the peers and node keys of that list alone while
behind it, presents the key it names for our own agency, and forgets the
file once the applied list has reached its version."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cli.cluster import ClusterLayout, init_cluster
from ledger.errors import ConfigError
from ledger.keys import SigningKey
from ledger.store import LedgerStore
from ledger.trust import TrustList
from node.config import NodeConfig, load_config
from node.peers import Peers, load_catch_up_trust
from tests.ledger.store_helpers import make_agencies, make_genesis


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    genesis = make_genesis(make_agencies())
    with LedgerStore.open(tmp_path / "ledger", replace(genesis, version=2)) as s:
        yield s


def _later(store: LedgerStore, version: int = 4) -> TrustList:
    return replace(store.genesis, version=version)


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _served(store: LedgerStore, trust: TrustList, chain: str | None = None) -> object:
    """The members of a ``GET /v1/trust`` answer this reader looks at."""
    return {
        "origin": trust.origin,
        "version": trust.version,
        "chain_id": store.chain_id.hex() if chain is None else chain,
        "trust_list": trust.to_json(),
    }


def test_reads_a_served_answer(store: LedgerStore, tmp_path: Path) -> None:
    later = _later(store)
    path = _write(tmp_path / "trust.json", _served(store, later))
    assert load_catch_up_trust(path, store) == later


def test_refuses_a_bare_trust_list(store: LedgerStore, tmp_path: Path) -> None:
    # A bare list names no chain: one of another cluster with the same
    # origin would pass for this one's.
    path = _write(tmp_path / "genesis.json", _later(store).to_json())
    with pytest.raises(ConfigError, match="not a GET /v1/trust answer"):
        load_catch_up_trust(path, store)


def test_refuses_another_chains_answer(store: LedgerStore, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", _served(store, _later(store), chain="00" * 32))
    with pytest.raises(ConfigError, match=r"chain_id 0{64} is not this chain's"):
        load_catch_up_trust(path, store)


def test_refuses_another_origin(store: LedgerStore, tmp_path: Path) -> None:
    other = replace(_later(store), origin="other.example/log")
    path = _write(tmp_path / "t.json", _served(store, other))
    with pytest.raises(ConfigError, match=re.escape("origin 'other.example/log'")):
        load_catch_up_trust(path, store)


def test_refuses_a_list_older_than_the_genesis(
    store: LedgerStore, tmp_path: Path
) -> None:
    path = _write(tmp_path / "t.json", _served(store, _later(store, version=1)))
    with pytest.raises(ConfigError, match="version 1 is older than the genesis"):
        load_catch_up_trust(path, store)


@pytest.mark.parametrize(
    "content", ["", "{", "[]", '{"trust_list": 5}', '{"origin": "x"}']
)
def test_refuses_what_is_no_trust_list(
    store: LedgerStore, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "t.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"catch_up_trust {path}")):
        load_catch_up_trust(path, store)


def test_a_missing_file_is_named(store: LedgerStore, tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(
        ConfigError, match=re.escape(f"cannot read catch_up_trust {path}")
    ):
        load_catch_up_trust(path, store)


# --- Peers while behind ------------------------------------------------------

AGENCIES = ("police", "justice", "health")


@dataclass
class Behind:
    """A police node at the genesis of a cluster whose list has moved on:
    health left, and the node keys of justice and of police were rotated."""

    store: LedgerStore
    config: NodeConfig
    later: TrustList
    police_new: SigningKey
    justice_new: SigningKey


@pytest.fixture
def behind(tmp_path: Path) -> Iterator[Behind]:
    layout = ClusterLayout(agencies=AGENCIES, base_port=27400)
    genesis = init_cluster(tmp_path / "c", layout)
    police_new, justice_new = SigningKey.generate(), SigningKey.generate()
    new_keys = {"police": police_new, "justice": justice_new}
    later = replace(
        genesis,
        version=genesis.version + 4,
        agencies=tuple(
            a
            if a.id not in new_keys
            else replace(a, node_key=new_keys[a.id].public_key)
            for a in genesis.agencies
            if a.id != "health"
        ),
    )
    config = load_config(tmp_path / "c" / "police" / "node.toml")
    with LedgerStore.open(tmp_path / "ledger", genesis) as store:
        trust = _write(tmp_path / "trust.json", _served(store, later))
        police_new.save(tmp_path / "police-new.key")
        config = replace(
            config,
            catch_up_trust=trust,
            next_node_key=tmp_path / "police-new.key",
        )
        yield Behind(store, config, later, police_new, justice_new)


def _peers(config: NodeConfig, store: LedgerStore) -> Peers:
    return Peers(config, store, lambda peer, frame: None)


def test_behind_the_peers_are_the_later_lists_alone(behind: Behind) -> None:
    peers = _peers(behind.config, behind.store)
    assert peers.peer_keys() == {
        "police": behind.police_new.public_key,
        "justice": behind.justice_new.public_key,
    }
    # health left: it is neither dialled nor accepted.
    assert peers.dialled == {"justice"}


def test_behind_tls_presents_the_later_key_signing_the_applied_one(
    behind: Behind,
) -> None:
    peers = _peers(behind.config, behind.store)
    genesis_key = behind.store.trust.agency("police").node_key
    assert peers.key.public_key == genesis_key
    assert peers.tls_key.public_key == behind.police_new.public_key


def test_a_node_holding_only_its_rotated_key_starts(behind: Behind) -> None:
    new_key = behind.config.next_node_key
    assert new_key is not None
    only_new = replace(behind.config, node_key=new_key, next_node_key=None)
    peers = _peers(only_new, behind.store)
    assert peers.key.public_key == behind.police_new.public_key
    assert peers.tls_key.public_key == behind.police_new.public_key
    # Without the later list, that key is no key of the applied one.
    with pytest.raises(ConfigError, match="not police's node key"):
        _peers(replace(only_new, catch_up_trust=None), behind.store)


def test_caught_up_the_file_plays_no_part(behind: Behind) -> None:
    peers = _peers(behind.config, behind.store)

    async def apply_later() -> None:
        peers.trust_changed(behind.store.trust, behind.later)

    asyncio.run(apply_later())
    # The peer keys now follow the store's applied list, not the file.
    genesis = behind.store.trust
    assert peers.peer_keys() == {a.id: a.node_key for a in genesis.agencies}


def test_not_behind_at_start_the_file_plays_no_part(behind: Behind) -> None:
    older = replace(behind.later, version=behind.store.trust.version)
    assert behind.config.path is not None
    path = _write(behind.config.path.parent / "old.json", _served(behind.store, older))
    peers = _peers(replace(behind.config, catch_up_trust=path), behind.store)
    genesis = behind.store.trust
    assert peers.peer_keys() == {a.id: a.node_key for a in genesis.agencies}
    assert peers.tls_key.public_key == genesis.agency("police").node_key
