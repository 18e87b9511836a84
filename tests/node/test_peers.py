"""node.peers.load_catch_up_trust: the later trust list a node behind the
cluster may take its peers from is read as served by ``GET /v1/trust`` or
as a genesis file, and refused with the file's name when it belongs to
another chain or is older than the genesis."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ledger.errors import ConfigError
from ledger.store import LedgerStore
from ledger.trust import TrustList
from node.peers import load_catch_up_trust
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


def test_reads_a_genesis_file(store: LedgerStore, tmp_path: Path) -> None:
    later = _later(store)
    path = _write(tmp_path / "genesis.json", later.to_json())
    assert load_catch_up_trust(path, store) == later


def test_refuses_another_chains_answer(store: LedgerStore, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", _served(store, _later(store), chain="00" * 32))
    with pytest.raises(ConfigError, match=r"chain_id 0{64} is not this chain's"):
        load_catch_up_trust(path, store)


def test_refuses_another_origin(store: LedgerStore, tmp_path: Path) -> None:
    other = replace(_later(store), origin="other.example/log")
    path = _write(tmp_path / "t.json", other.to_json())
    with pytest.raises(ConfigError, match=re.escape("origin 'other.example/log'")):
        load_catch_up_trust(path, store)


def test_refuses_a_list_older_than_the_genesis(
    store: LedgerStore, tmp_path: Path
) -> None:
    path = _write(tmp_path / "t.json", _later(store, version=1).to_json())
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
