"""The trust list: its two encodings, the chain id, and governance."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.codec import Value, pack, unpack
from ledger.entries import Governance, sign_approval
from ledger.errors import ConfigError, RuleViolation
from ledger.keys import SigningKey, key_id
from ledger.trust import AgencyInfo, TrustList, verify_governance_approvals

ORIGIN = "test.agency-ledger.example/v1"


@dataclass(frozen=True)
class AgencyKeys:
    node: SigningKey
    issuer: SigningKey
    admins: tuple[SigningKey, ...]


def _key(agency_id: str, role: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"{agency_id}/{role}".encode()).digest())


def agency_keys(agency_id: str) -> AgencyKeys:
    """Deterministic keys, so trust lists (and chain ids) are reproducible."""
    admins = (_key(agency_id, "admin"), _key(agency_id, "admin2"))
    return AgencyKeys(_key(agency_id, "node"), _key(agency_id, "issuer"), admins)


def make_agency(agency_id: str, doc_types: tuple[str, ...]) -> AgencyInfo:
    keys = agency_keys(agency_id)
    return AgencyInfo(
        id=agency_id,
        names={"vi": f"Cơ quan {agency_id}", "en": f"Agency {agency_id}"},
        node_key=keys.node.public_key,
        issuer_keys=(keys.issuer.public_key,),
        admin_keys=tuple(k.public_key for k in keys.admins),
        doc_types=doc_types,
    )


GRANTS: dict[str, tuple[str, ...]] = {
    "moj": ("criminal_record",),
    "moh": ("health_record",),
    "civil-reg": ("birth_registration", "marriage_registration"),
}


def make_trust(ids: tuple[str, ...] = ("moj", "moh", "civil-reg")) -> TrustList:
    return TrustList(
        origin=ORIGIN,
        version=1,
        created_ms=1_700_000_000_000,
        agencies=tuple(make_agency(i, GRANTS.get(i, ())) for i in ids),
    )


def approved(
    trust: TrustList,
    action: str,
    params: dict[str, Value],
    approvers: tuple[str, ...],
    *,
    issuer: str = "moj",
    version: int | None = None,
) -> Governance:
    """A governance entry for the next version, approved by ``approvers``."""
    version = trust.version + 1 if version is None else version
    approvals = tuple(
        sign_approval(
            trust.origin,
            action=action,
            params=params,
            version=version,
            agency=a,
            key=agency_keys(a).admins[0],
        )
        for a in approvers
    )
    return Governance(
        issuer=issuer,
        action=action,
        params=params,
        version=version,
        approvals=approvals,
    )


# --- encodings and the chain id ----------------------------------------------


def test_json_round_trip_through_a_file(tmp_path: Path) -> None:
    trust = make_trust()
    path = tmp_path / "genesis.json"
    trust.save(path)
    assert TrustList.load(path) == trust
    assert json.loads(path.read_text())["agencies"][0]["node_key"] == (
        agency_keys("moj").node.public_key.hex()
    )


def test_canonical_value_round_trip() -> None:
    trust = make_trust()
    assert TrustList.from_value(unpack(pack(trust.to_value()))) == trust


def test_chain_id_is_sha256_of_the_canonical_value() -> None:
    trust = make_trust()
    assert trust.chain_id() == hashlib.sha256(pack(trust.to_value())).digest()


def test_chain_id_is_stable_across_encodings_and_key_order(tmp_path: Path) -> None:
    trust = make_trust()
    reordered = json.loads(json.dumps(trust.to_json()))
    reordered = dict(reversed(list(reordered.items())))
    reordered["agencies"] = [
        dict(reversed(list(a.items()))) for a in reordered["agencies"]
    ]
    assert TrustList.from_json(reordered).chain_id() == trust.chain_id()
    assert make_trust().chain_id() == trust.chain_id()


def test_chain_id_changes_with_any_field() -> None:
    base = make_trust()
    other = TrustList(
        origin=base.origin + "x",
        version=1,
        created_ms=base.created_ms,
        agencies=base.agencies,
    )
    assert other.chain_id() != base.chain_id()


@pytest.mark.parametrize(
    ("agencies", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)]
)
def test_quorum_is_a_strict_majority(agencies: int, quorum: int) -> None:
    trust = make_trust(tuple(f"ag{i}" for i in range(agencies)))
    assert trust.quorum == quorum


def test_note_verifiers_are_node_keys_named_by_agency() -> None:
    trust = make_trust()
    verifiers = trust.note_verifiers()
    assert [v.name for v in verifiers] == ["moj", "moh", "civil-reg"]
    node = agency_keys("moh").node.public_key
    assert verifiers[1].public_key == node
    assert verifiers[1].key_id == key_id("moh", node)


def test_agency_lookup_raises_key_error_for_strangers() -> None:
    trust = make_trust()
    assert trust.agency("moh").doc_types == ("health_record",)
    with pytest.raises(KeyError):
        trust.agency("nobody")


def test_retired_issuer_keys_may_be_left_out_of_genesis_json() -> None:
    obj = make_trust().to_json()
    for agency in obj["agencies"]:  # type: ignore[attr-defined]
        del agency["retired_issuer_keys"]
    assert TrustList.from_json(obj) == make_trust()


# --- bad files ------------------------------------------------------------------


def _genesis() -> dict[str, object]:
    return json.loads(json.dumps(make_trust().to_json()))  # type: ignore[no-any-return]


def _broken(change: str) -> dict[str, object]:
    obj = _genesis()
    agencies: list[dict[str, object]] = obj["agencies"]  # type: ignore[assignment]
    if change == "missing origin":
        del obj["origin"]
    elif change == "unknown field":
        obj["colour"] = "red"
    elif change == "version is text":
        obj["version"] = "1"
    elif change == "uppercase hex":
        agencies[0]["node_key"] = str(agencies[0]["node_key"]).upper()
    elif change == "short key":
        agencies[0]["node_key"] = "ab" * 31
    elif change == "duplicate agency":
        agencies.append(dict(agencies[0]))
    elif change == "shared key":
        agencies[1]["admin_keys"] = agencies[0]["admin_keys"]
    elif change == "no admin key":
        agencies[0]["admin_keys"] = []
    elif change == "bad agency id":
        agencies[0]["id"] = "Ministry"
    elif change == "names missing en":
        agencies[0]["names"] = {"vi": "Bộ"}
    elif change == "bad doc type":
        agencies[0]["doc_types"] = ["Criminal Record"]
    elif change == "no agencies":
        obj["agencies"] = []
    elif change == "origin with newline":
        obj["origin"] = "a\nb"
    return obj


BROKEN = [
    ("missing origin", "origin"),
    ("unknown field", "colour"),
    ("version is text", "version"),
    ("uppercase hex", "agencies[0].node_key"),
    ("short key", "agencies[0].node_key"),
    ("duplicate agency", "twice"),
    ("shared key", "belongs to both"),
    ("no admin key", "admin keys"),
    ("bad agency id", "id must match"),
    ("names missing en", "agencies[0].names"),
    ("bad doc type", "doc type"),
    ("no agencies", "no agencies"),
    ("origin with newline", "origin"),
]


@pytest.mark.parametrize(("change", "mentions"), BROKEN, ids=[c for c, _ in BROKEN])
def test_load_refuses_a_bad_file_naming_the_defect(
    tmp_path: Path, change: str, mentions: str
) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(_broken(change)))
    with pytest.raises(ConfigError) as info:
        TrustList.load(path)
    assert str(path) in str(info.value)
    assert mentions in str(info.value)


def test_load_refuses_a_missing_file_and_non_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TrustList.load(tmp_path / "absent.json")
    path = tmp_path / "genesis.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        TrustList.load(path)


# --- governance: approvals ------------------------------------------------------


def test_majority_of_agencies_approves() -> None:
    trust = make_trust()
    entry = approved(trust, "remove_agency", {"id": "moh"}, ("moj", "civil-reg"))
    verify_governance_approvals(entry, trust)


def test_minority_is_refused_with_governance_quorum() -> None:
    trust = make_trust()
    entry = approved(trust, "remove_agency", {"id": "moh"}, ("moj",))
    with pytest.raises(RuleViolation) as info:
        verify_governance_approvals(entry, trust)
    assert info.value.code == "governance_quorum"


def test_one_agency_counts_once_even_with_two_admin_keys() -> None:
    trust = make_trust()
    params: dict[str, Value] = {"id": "moh"}
    entry = approved(trust, "remove_agency", params, ("moj",))
    second = sign_approval(
        trust.origin,
        action="remove_agency",
        params=params,
        version=2,
        agency="moj",
        key=agency_keys("moj").admins[1],
    )
    doubled = Governance(
        issuer="moj",
        action="remove_agency",
        params=params,
        version=2,
        approvals=(*entry.approvals, second),
    )
    with pytest.raises(RuleViolation, match="governance_quorum"):
        verify_governance_approvals(doubled, trust)


def test_approvals_that_prove_nothing_do_not_count() -> None:
    trust = make_trust()
    params: dict[str, Value] = {"id": "moh"}
    good = approved(trust, "remove_agency", params, ("moj",)).approvals[0]
    # Signed by civil-reg's node key (not an admin key).
    node_signed = sign_approval(
        trust.origin,
        action="remove_agency",
        params=params,
        version=2,
        agency="civil-reg",
        key=agency_keys("civil-reg").node,
    )
    # moj's admin signature relabelled as civil-reg's approval.
    relabelled = type(good)(agency="civil-reg", signature=good.signature)
    # A real admin signature, but over another version.
    stale = approved(trust, "remove_agency", params, ("moh",), version=5).approvals[0]
    # An agency that is not in the trust list.
    stranger = type(good)(agency="stranger", signature=good.signature)
    for extra in (node_signed, relabelled, stale, stranger):
        entry = Governance(
            issuer="moj",
            action="remove_agency",
            params=params,
            version=2,
            approvals=(good, extra),
        )
        with pytest.raises(RuleViolation, match="governance_quorum"):
            verify_governance_approvals(entry, trust)


# --- governance: applying actions -----------------------------------------------


def test_add_agency_in_canonical_or_json_form() -> None:
    trust = make_trust()
    newcomer = make_agency("land-office", ("land_use",))
    for form in (newcomer.to_value(), newcomer.to_json()):
        entry = approved(trust, "add_agency", {"agency": form}, ())  # type: ignore[dict-item]
        after = trust.apply_governance(entry)
        assert after.version == 2
        assert after.agency("land-office") == newcomer
        assert after.quorum == 3


def test_remove_agency() -> None:
    after = make_trust().apply_governance(
        approved(make_trust(), "remove_agency", {"id": "moh"}, ())
    )
    assert [a.id for a in after.agencies] == ["moj", "civil-reg"]


def test_rotate_node_key() -> None:
    trust = make_trust()
    fresh = _key("moj", "node-2").public_key
    after = trust.apply_governance(
        approved(trust, "rotate_node_key", {"id": "moj", "node_key": fresh}, ())
    )
    assert after.agency("moj").node_key == fresh


def test_rotate_issuer_key_retires_the_old_key() -> None:
    trust = make_trust()
    old = agency_keys("moj").issuer.public_key
    fresh = _key("moj", "issuer-2").public_key
    params: dict[str, Value] = {"id": "moj", "issuer_key": fresh, "retire": old.hex()}
    after = trust.apply_governance(approved(trust, "rotate_issuer_key", params, ()))
    assert after.agency("moj").issuer_keys == (fresh,)
    assert after.agency("moj").retired_issuer_keys == (old,)


def test_grant_doc_types_adds_without_duplicates() -> None:
    trust = make_trust()
    params: dict[str, Value] = {
        "id": "moj",
        "doc_types": ["land_use", "criminal_record"],
    }
    after = trust.apply_governance(approved(trust, "grant_doc_types", params, ()))
    assert after.agency("moj").doc_types == ("criminal_record", "land_use")


INVALID: list[tuple[str, str, dict[str, Value]]] = [
    (
        "add an existing agency",
        "add_agency",
        {"agency": make_agency("moj", ()).to_value()},
    ),
    ("add a malformed agency", "add_agency", {"agency": {"id": "x"}}),
    ("remove a stranger", "remove_agency", {"id": "nobody"}),
    ("node key too short", "rotate_node_key", {"id": "moj", "node_key": b"k" * 31}),
    (
        "retire a key that is not active",
        "rotate_issuer_key",
        {"id": "moj", "issuer_key": b"n" * 32, "retire": b"o" * 32},
    ),
    (
        "new node key belongs to another agency",
        "rotate_node_key",
        {"id": "moj", "node_key": agency_keys("moh").node.public_key},
    ),
    ("grant a bad doc type", "grant_doc_types", {"id": "moj", "doc_types": ["A B"]}),
    ("grant nothing", "grant_doc_types", {"id": "moj", "doc_types": []}),
]


@pytest.mark.parametrize(
    ("desc", "action", "params"), INVALID, ids=[d for d, _, _ in INVALID]
)
def test_invalid_changes_are_governance_invalid(
    desc: str, action: str, params: dict[str, Value]
) -> None:
    trust = make_trust()
    with pytest.raises(RuleViolation) as info:
        trust.apply_governance(approved(trust, action, params, ()))
    assert info.value.code == "governance_invalid"


def test_removing_the_last_agency_is_invalid() -> None:
    trust = make_trust(("moj",))
    with pytest.raises(RuleViolation, match="governance_invalid"):
        trust.apply_governance(approved(trust, "remove_agency", {"id": "moj"}, ()))


def test_a_change_applies_only_at_the_next_version() -> None:
    trust = make_trust()
    entry = approved(trust, "remove_agency", {"id": "moh"}, (), version=3)
    with pytest.raises(RuleViolation, match="governance_invalid"):
        trust.apply_governance(entry)
    after = trust.apply_governance(approved(trust, "remove_agency", {"id": "moh"}, ()))
    replayed = approved(trust, "remove_agency", {"id": "moh"}, ())
    with pytest.raises(RuleViolation, match="governance_invalid"):
        after.apply_governance(replayed)
