"""The trust list: which agencies take part, their keys and their grants.

The genesis trust list is a JSON file (``genesis.json``); its canonical
value hashes to the chain id. Governance entries change it, one version at a
time, so the trust list in force at any height is derivable from the chain.

Invariants (checked on construction; ``ConfigError`` otherwise):
- at least one agency; agency ids are unique and well-formed;
- every key is 32 bytes, and no key belongs to two agencies or twice to one
  agency in two roles other than node and admin. A key shared between two
  agencies would let one signature count for both, which would break "one
  agency counts once" in the quorum rules;
- an agency's active and retired issuer keys are disjoint. Retired issuer
  keys still verify documents issued before the rotation but are refused for
  new submissions;
- every agency has at least one admin key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, TypeVar

from ledger.codec import Value, pack
from ledger.entries import (
    AGENCY_RE,
    NAME_RE,
    Governance,
    governance_message,
)
from ledger.errors import (
    ConfigError,
    EncodingError,
    RuleViolation,
    VerificationError,
)
from ledger.keys import Verifier, verify_ed25519

LANGUAGES: Final = ("vi", "en")
AGENCY_KEYS: Final = (
    "id",
    "names",
    "node_key",
    "issuer_keys",
    "retired_issuer_keys",
    "admin_keys",
    "doc_types",
)
TRUST_KEYS: Final = ("origin", "version", "created_ms", "agencies")
_HEX_KEY: Final = re.compile(r"[0-9a-f]{64}")
MAX_NAME: Final = 200
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencyInfo:
    """One agency's entry in the trust list."""

    id: str
    names: Mapping[str, str]  # exactly "vi" and "en", in that order
    node_key: bytes  # signs checkpoints; also its TLS identity
    issuer_keys: tuple[bytes, ...]  # may sign new submissions
    retired_issuer_keys: tuple[bytes, ...] = ()  # past documents only
    admin_keys: tuple[bytes, ...]  # approve governance
    doc_types: tuple[str, ...] = ()  # granted document types

    def __post_init__(self) -> None:
        where = f"agency {self.id!r}"
        if AGENCY_RE.fullmatch(self.id) is None:
            raise ConfigError(f"{where}: id must match [a-z0-9][a-z0-9-]{{1,39}}")
        if tuple(self.names) != LANGUAGES:
            raise ConfigError(f"{where}: names must be exactly {list(LANGUAGES)}")
        for lang, name in self.names.items():
            if not name or len(name) > MAX_NAME:
                raise ConfigError(f"{where}: name {lang!r} empty or too long")
        keys = (self.node_key, *self.issuer_keys, *self.retired_issuer_keys)
        for key in (*keys, *self.admin_keys):
            if len(key) != 32:
                raise ConfigError(f"{where}: a key is not 32 bytes")
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{where}: a key appears twice")
        if not self.admin_keys or len(set(self.admin_keys)) != len(self.admin_keys):
            raise ConfigError(f"{where}: needs distinct admin keys")
        for name in self.doc_types:
            if NAME_RE.fullmatch(name) is None:
                raise ConfigError(f"{where}: bad doc type {name!r}")
        if len(set(self.doc_types)) != len(self.doc_types):
            raise ConfigError(f"{where}: a doc type is granted twice")

    def all_keys(self) -> set[bytes]:
        return {
            self.node_key,
            *self.issuer_keys,
            *self.retired_issuer_keys,
            *self.admin_keys,
        }

    def to_value(self) -> dict[str, Value]:
        return {
            "id": self.id,
            "names": {lang: self.names[lang] for lang in LANGUAGES},
            "node_key": self.node_key,
            "issuer_keys": list(self.issuer_keys),
            "retired_issuer_keys": list(self.retired_issuer_keys),
            "admin_keys": list(self.admin_keys),
            "doc_types": list(self.doc_types),
        }

    @classmethod
    def from_value(cls, value: Value) -> AgencyInfo:
        """Parse the canonical map; EncodingError on a wrong shape."""
        rec = _map(value, AGENCY_KEYS, "agency", EncodingError)
        names = _map(rec["names"], LANGUAGES, "agency names", EncodingError)
        return cls(
            id=_typed(rec["id"], str, "agency id", EncodingError),
            names={k: _typed(v, str, "name", EncodingError) for k, v in names.items()},
            node_key=_typed(rec["node_key"], bytes, "node_key", EncodingError),
            issuer_keys=_bytes_list(rec["issuer_keys"], "issuer_keys"),
            retired_issuer_keys=_bytes_list(
                rec["retired_issuer_keys"], "retired_issuer_keys"
            ),
            admin_keys=_bytes_list(rec["admin_keys"], "admin_keys"),
            doc_types=_str_list(rec["doc_types"], "doc_types", EncodingError),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "names": {lang: self.names[lang] for lang in LANGUAGES},
            "node_key": self.node_key.hex(),
            "issuer_keys": [k.hex() for k in self.issuer_keys],
            "retired_issuer_keys": [k.hex() for k in self.retired_issuer_keys],
            "admin_keys": [k.hex() for k in self.admin_keys],
            "doc_types": list(self.doc_types),
        }

    @classmethod
    def from_json(cls, obj: object, where: str = "agency") -> AgencyInfo:
        """Parse the JSON form (hex keys); ConfigError naming the bad field.

        ``retired_issuer_keys`` may be left out of a hand-written genesis.
        """
        if isinstance(obj, dict) and "retired_issuer_keys" not in obj:
            obj = {**obj, "retired_issuer_keys": []}
        rec = _map(obj, AGENCY_KEYS, where, ConfigError, ordered=False)
        names = _map(rec["names"], LANGUAGES, f"{where}.names", ConfigError, False)
        return cls(
            id=_typed(rec["id"], str, f"{where}.id", ConfigError),
            names={
                k: _typed(names[k], str, f"{where}.names.{k}", ConfigError)
                for k in LANGUAGES
            },
            node_key=_hex_key(rec["node_key"], f"{where}.node_key"),
            issuer_keys=_hex_keys(rec["issuer_keys"], f"{where}.issuer_keys"),
            retired_issuer_keys=_hex_keys(
                rec["retired_issuer_keys"], f"{where}.retired_issuer_keys"
            ),
            admin_keys=_hex_keys(rec["admin_keys"], f"{where}.admin_keys"),
            doc_types=_str_list(rec["doc_types"], f"{where}.doc_types", ConfigError),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustList:
    """The agencies in force at one version of the chain.

    ``version`` starts at the genesis's (1 by convention) and grows by one
    with each governance entry applied.
    """

    origin: str  # the checkpoint origin line; names the chain
    version: int
    agencies: tuple[AgencyInfo, ...]
    created_ms: int
    _index: dict[str, AgencyInfo] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not self.origin or len(self.origin) > MAX_NAME:
            raise ConfigError("trust list: origin empty or too long")
        if not self.origin.isprintable():
            # The origin is the first line of every checkpoint note.
            raise ConfigError("trust list: origin must be one printable line")
        if self.version < 1 or self.created_ms < 0:
            raise ConfigError("trust list: version must be >= 1, created_ms >= 0")
        if not self.agencies:
            raise ConfigError("trust list: no agencies")
        owner: dict[bytes, str] = {}
        for agency in self.agencies:
            if agency.id in self._index:
                raise ConfigError(f"trust list: agency {agency.id!r} twice")
            self._index[agency.id] = agency
            for key in agency.all_keys():
                if key in owner:
                    raise ConfigError(
                        f"trust list: key {key.hex()[:16]}... belongs to both "
                        f"{owner[key]!r} and {agency.id!r}"
                    )
                owner[key] = agency.id

    @property
    def quorum(self) -> int:
        """A strict majority of the agencies."""
        return len(self.agencies) // 2 + 1

    def agency(self, agency_id: str) -> AgencyInfo:
        """The agency named ``agency_id``; KeyError if it is not in the list."""
        return self._index[agency_id]

    def note_verifiers(self) -> list[Verifier]:
        """Checkpoint verifiers: key name = agency id, key = node key."""
        return [Verifier.from_public_key(a.id, a.node_key) for a in self.agencies]

    def chain_id(self) -> bytes:
        """SHA-256 of this list's canonical value.

        The chain id is this hash of the *genesis* list: later versions hash
        differently, so callers keep the genesis (or its chain id) around.
        """
        return hashlib.sha256(pack(self.to_value())).digest()

    def to_value(self) -> dict[str, Value]:
        return {
            "origin": self.origin,
            "version": self.version,
            "created_ms": self.created_ms,
            "agencies": [a.to_value() for a in self.agencies],
        }

    @classmethod
    def from_value(cls, value: Value) -> TrustList:
        """Parse the canonical map.

        EncodingError on a wrong shape, ConfigError on a broken invariant.
        """
        rec = _map(value, TRUST_KEYS, "trust list", EncodingError)
        agencies = _typed(rec["agencies"], list, "agencies", EncodingError)
        return cls(
            origin=_typed(rec["origin"], str, "origin", EncodingError),
            version=_int(rec["version"], "version", EncodingError),
            created_ms=_int(rec["created_ms"], "created_ms", EncodingError),
            agencies=tuple(AgencyInfo.from_value(a) for a in agencies),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "version": self.version,
            "created_ms": self.created_ms,
            "agencies": [a.to_json() for a in self.agencies],
        }

    @classmethod
    def from_json(cls, obj: object) -> TrustList:
        """Parse the genesis.json form; ConfigError naming the bad field."""
        rec = _map(obj, TRUST_KEYS, "trust list", ConfigError, ordered=False)
        agencies = _typed(rec["agencies"], list, "agencies", ConfigError)
        return cls(
            origin=_typed(rec["origin"], str, "origin", ConfigError),
            version=_int(rec["version"], "version", ConfigError),
            created_ms=_int(rec["created_ms"], "created_ms", ConfigError),
            agencies=tuple(
                AgencyInfo.from_json(a, f"agencies[{i}]")
                for i, a in enumerate(agencies)
            ),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustList:
        """Read a trust file; ConfigError that names the file and the defect."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read trust file {path}: {exc}") from exc
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"trust file {path} is not JSON: {exc}") from exc
        try:
            return cls.from_json(obj)
        except ConfigError as exc:
            raise ConfigError(f"trust file {path}: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form, replacing ``path`` atomically."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        try:
            tmp.write_text(
                json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n",
                "utf-8",
            )
            os.replace(tmp, target)
        except OSError as exc:
            raise ConfigError(f"cannot write trust file {path}: {exc}") from exc

    def apply_governance(self, entry: Governance) -> TrustList:
        """The trust list after ``entry`` (version + 1).

        Does not check approvals (``verify_governance_approvals`` does).
        Raises RuleViolation("governance_invalid") if the version is not the
        next one, the params do not fit the action, or the result would break
        an invariant of the trust list.
        """
        if entry.version != self.version + 1:
            raise RuleViolation(
                "governance_invalid",
                f"version {entry.version}, expected {self.version + 1}",
            )
        try:
            agencies = _ACTIONS[entry.action](self, entry.params)
            return replace(self, version=entry.version, agencies=agencies)
        except (ConfigError, EncodingError) as exc:
            raise RuleViolation("governance_invalid", f"{entry.action}: {exc}") from exc


def verify_governance_approvals(entry: Governance, trust: TrustList) -> None:
    """Raise RuleViolation("governance_quorum") unless a majority approved.

    An approval counts if its agency is in ``trust`` and one of that
    agency's admin keys signed ``governance_message``. Each agency counts
    once, and only its first approval is tried, so a hostile entry cannot
    make us check hundreds of signatures for one agency.
    """
    message = governance_message(
        trust.origin, entry.action, entry.params, entry.version
    )
    tried: set[str] = set()
    approved = 0
    for approval in entry.approvals:
        if approval.agency in tried:
            continue
        tried.add(approval.agency)
        try:
            agency = trust.agency(approval.agency)
        except KeyError:
            continue
        if _signed_by_any(agency.admin_keys, message, approval.signature):
            approved += 1
    if approved < trust.quorum:
        raise RuleViolation(
            "governance_quorum",
            f"{approved} agencies approved, {trust.quorum} needed",
        )


def _signed_by_any(keys: Iterable[bytes], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            verify_ed25519(key, message, signature)
        except VerificationError:
            continue
        return True
    return False


# --- governance actions: each returns the new agencies tuple ----------------


def _add_agency(trust: TrustList, params: dict[str, Value]) -> tuple[AgencyInfo, ...]:
    value = params["agency"]
    # The agency may be written in the canonical form (bytes keys) or in the
    # genesis.json form (hex keys); both describe the same agency.
    if isinstance(value, dict) and isinstance(value.get("node_key"), str):
        agency = AgencyInfo.from_json(value)
    else:
        agency = AgencyInfo.from_value(value)
    return (*trust.agencies, agency)


def _remove_agency(
    trust: TrustList, params: dict[str, Value]
) -> tuple[AgencyInfo, ...]:
    gone = _target(trust, params).id
    return tuple(a for a in trust.agencies if a.id != gone)


def _rotate_node_key(
    trust: TrustList, params: dict[str, Value]
) -> tuple[AgencyInfo, ...]:
    agency = _target(trust, params)
    new = replace(agency, node_key=_param_key(params, "node_key"))
    return _swap(trust, new)


def _rotate_issuer_key(
    trust: TrustList, params: dict[str, Value]
) -> tuple[AgencyInfo, ...]:
    agency = _target(trust, params)
    fresh = _param_key(params, "issuer_key")
    old = _param_key(params, "retire")
    if old not in agency.issuer_keys:
        raise ConfigError(f"{agency.id}: key to retire is not an active issuer key")
    new = replace(
        agency,
        issuer_keys=(*(k for k in agency.issuer_keys if k != old), fresh),
        retired_issuer_keys=(*agency.retired_issuer_keys, old),
    )
    return _swap(trust, new)


def _grant_doc_types(
    trust: TrustList, params: dict[str, Value]
) -> tuple[AgencyInfo, ...]:
    agency = _target(trust, params)
    wanted = _str_list(params["doc_types"], "doc_types", ConfigError)
    if not wanted:
        raise ConfigError("no doc types to grant")
    added = tuple(d for d in dict.fromkeys(wanted) if d not in agency.doc_types)
    return _swap(trust, replace(agency, doc_types=(*agency.doc_types, *added)))


_ACTIONS: Final = {
    "add_agency": _add_agency,
    "remove_agency": _remove_agency,
    "rotate_node_key": _rotate_node_key,
    "rotate_issuer_key": _rotate_issuer_key,
    "grant_doc_types": _grant_doc_types,
}


def _swap(trust: TrustList, new: AgencyInfo) -> tuple[AgencyInfo, ...]:
    return tuple(new if a.id == new.id else a for a in trust.agencies)


def _target(trust: TrustList, params: dict[str, Value]) -> AgencyInfo:
    agency_id = _typed(params["id"], str, "id", ConfigError)
    try:
        return trust.agency(agency_id)
    except KeyError:
        raise ConfigError(f"no agency {agency_id!r} in the trust list") from None


def _param_key(params: dict[str, Value], name: str) -> bytes:
    """A key given as 32 raw bytes or as 64 lowercase hex digits."""
    value = params[name]
    if isinstance(value, bytes):
        if len(value) != 32:
            raise ConfigError(f"{name}: a key is 32 bytes")
        return value
    return _hex_key(value, name)


# --- small strict parsers shared by the JSON and canonical forms ------------


def _map(
    obj: object,
    keys: tuple[str, ...],
    where: str,
    error: type[Exception],
    ordered: bool = True,
) -> dict[str, Value]:
    """``obj`` as a map with exactly ``keys`` (in order, when ``ordered``)."""
    if not isinstance(obj, dict):
        raise error(f"{where}: expected an object")
    unknown = [k for k in obj if k not in keys]
    missing = [k for k in keys if k not in obj]
    if unknown or missing:
        raise error(f"{where}: unknown fields {unknown}, missing fields {missing}")
    if ordered and tuple(obj) != keys:
        raise error(f"{where}: fields out of order")
    return obj


def _typed(value: object, kind: type[_T], where: str, error: type[Exception]) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise error(f"{where}: expected {kind.__name__}")
    return value


def _int(value: object, where: str, error: type[Exception]) -> int:
    return _typed(value, int, where, error)


def _bytes_list(value: object, where: str) -> tuple[bytes, ...]:
    items = _typed(value, list, where, EncodingError)
    return tuple(_typed(v, bytes, where, EncodingError) for v in items)


def _str_list(value: object, where: str, error: type[Exception]) -> tuple[str, ...]:
    items = _typed(value, list, where, error)
    return tuple(_typed(v, str, where, error) for v in items)


def _hex_key(value: object, where: str) -> bytes:
    if not isinstance(value, str) or _HEX_KEY.fullmatch(value) is None:
        raise ConfigError(f"{where}: expected 64 lowercase hex digits")
    return bytes.fromhex(value)


def _hex_keys(value: object, where: str) -> tuple[bytes, ...]:
    items = _typed(value, list, where, ConfigError)
    return tuple(_hex_key(v, f"{where}[{i}]") for i, v in enumerate(items))
