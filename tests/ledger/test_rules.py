"""The ledger rules: every reason code, whole-or-nothing, determinism."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import pytest

from ledger.block import OK, Cosignature, Outcome, block_hash, body_hash, encode_block
from ledger.codec import Value
from ledger.entries import (
    Anchor,
    Entry,
    Record,
    Revoke,
    Supersede,
    encode_entry,
    record_key,
)
from ledger.errors import RuleViolation
from ledger.keys import SigningKey, key_id
from ledger.merkle import DictNodeStore, MerkleLog, leaf_hash, root_of
from ledger.rules import Applied, BatchInput, apply_batch, precheck_entries
from ledger.statemap import EMPTY_ROOT, StateMap
from ledger.status import StatusRecord
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    batch_root,
    decode_submission,
    encode_submission,
    sign_submission,
    signing_message,
)
from ledger.trust import TrustList
from tests.ledger.test_trust import ORIGIN, agency_keys, approved, make_trust

T0 = 1_700_000_000_000


class DictKV:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


@dataclass
class MemoryChain:
    """A StateView plus the bookkeeping a store does after each block."""

    trust: TrustList
    height: int = 0
    tree_size: int = 0
    last_hash: bytes = b""
    state_root: bytes = EMPTY_ROOT
    statuses: dict[bytes, StatusRecord] = field(default_factory=dict)
    seen: set[tuple[str, bytes]] = field(default_factory=set)
    nodes: DictNodeStore = field(default_factory=DictNodeStore)
    kv: DictKV = field(default_factory=DictKV)
    leaves: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_hash = self.trust.chain_id()

    def status(self, key: bytes) -> StatusRecord | None:
        return self.statuses.get(key)

    def nonce_seen(self, agency: str, nonce: bytes) -> bool:
        return (agency, nonce) in self.seen

    def apply(self, *subs: bytes, time_ms: int = T0) -> Applied:
        batch = BatchInput(time_ms=time_ms, submissions=subs)
        log = MerkleLog(self.nodes, self.tree_size)
        smap = StateMap(self.kv, self.state_root)
        applied = apply_batch(self, batch, log=log, smap=smap)
        self.nodes.put(applied.log_nodes)
        for key, value in applied.state_writes.items():
            if value is None:
                self.kv.data.pop(key, None)
            else:
                self.kv.data[key] = value
        self.statuses.update(applied.state)
        self.seen.update((a, n) for a, n, _ in applied.nonces)
        self.leaves.extend(applied.leaves)
        header = applied.block.header
        self.height, self.tree_size = header.height, header.tree_size
        self.state_root, self.last_hash = header.state_root, block_hash(header)
        self.trust = applied.trust
        return applied

    def codes(self, *subs: bytes, time_ms: int = T0) -> list[Outcome]:
        return list(self.apply(*subs, time_ms=time_ms).block.outcomes)


_counter = itertools.count()


def submit(
    agency: str,
    *entries: Entry,
    key: SigningKey | None = None,
    timestamp_ms: int = T0,
    nonce: bytes | None = None,
) -> bytes:
    """Deterministic nonces, so two runs build byte-identical batches."""
    if nonce is None:
        nonce = hashlib.sha256(b"%d" % next(_counter)).digest()[:16]
    sub = sign_submission(
        ORIGIN,
        agency,
        [encode_entry(e) for e in entries],
        key or agency_keys(agency).issuer,
        nonce=nonce,
        timestamp_ms=timestamp_ms,
    )
    return encode_submission(sub)


def doc(n: int) -> bytes:
    return hashlib.sha256(b"doc %d" % n).digest()


def anchor(n: int, issuer: str = "moj", doc_type: str = "criminal_record") -> Anchor:
    return Anchor(issuer=issuer, doc_id=doc(n), doc_type=doc_type, issued_at=T0)


def revoke(n: int, issuer: str = "moj") -> Revoke:
    return Revoke(issuer=issuer, doc_id=doc(n), reason="withdrawn", at=T0)


def supersede(old: int, new: int, issuer: str = "moj") -> Supersede:
    return Supersede(issuer=issuer, old_doc_id=doc(old), new_doc_id=doc(new), at=T0)


def record(version: int, issuer: str = "civil-reg", rid: bytes = b"r1") -> Record:
    return Record(
        issuer=issuer,
        registry="births",
        record_id=rid,
        version=version,
        digest=hashlib.sha256(b"v%d" % version).digest(),
    )


@pytest.fixture
def chain() -> MemoryChain:
    return MemoryChain(make_trust())


def rejected(code: str, entry: int | None = None) -> list[Outcome]:
    return [Outcome(code, entry)]


OK_ = [Outcome(OK)]


# --- accepted batches and the header ------------------------------------------


def test_accepted_anchors_become_leaves_and_valid_statuses(chain: MemoryChain) -> None:
    sub = submit("moj", anchor(1), anchor(2))
    applied = chain.apply(sub)
    assert applied.block.outcomes == (Outcome(OK),)
    assert applied.leaves == [encode_entry(anchor(1)), encode_entry(anchor(2))]
    assert chain.status(doc(2)) == StatusRecord.anchored(anchor(2), leaf=1)
    assert applied.history == [(doc(1), 0), (doc(2), 1)]
    assert applied.nonces[0][0] == "moj" and applied.nonces[0][2] == T0


def test_header_commits_to_log_state_chain_and_body(chain: MemoryChain) -> None:
    first = chain.apply(submit("moj", anchor(1)))
    sub = submit("moj", anchor(2), anchor(3))
    applied = chain.apply(sub, time_ms=T0 + 5)
    header = applied.block.header
    assert first.block.header.prev_hash == make_trust().chain_id()
    assert first.block.header.height == 1
    assert header.height == 2
    assert header.prev_hash == block_hash(first.block.header)
    assert (header.first_leaf, header.tree_size) == (1, 3)
    assert header.log_root == root_of([leaf_hash(x) for x in chain.leaves])
    assert header.state_root == StateMap(chain.kv, header.state_root).root
    assert header.time_ms == T0 + 5
    assert header.trust_version == 1
    assert header.body_hash == body_hash((sub,), (Outcome(OK),), ())


def test_state_map_holds_the_encoded_status(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)), submit("moj", revoke(1)))
    smap = StateMap(chain.kv, chain.state_root)
    assert smap.get(doc(1)) == chain.statuses[doc(1)].encode()
    assert chain.statuses[doc(1)].status == "revoked"


def test_changes_earlier_in_the_batch_are_visible_later(chain: MemoryChain) -> None:
    outcomes = chain.codes(
        submit("moj", anchor(1)),
        submit("moj", anchor(2)),
        submit("moj", supersede(1, 2)),
        submit("moj", revoke(2)),
    )
    assert outcomes == OK_ * 4
    assert chain.statuses[doc(1)].superseded_by == doc(2)
    assert chain.statuses[doc(2)].status == "revoked"


def test_supersede_with_a_new_document_of_the_same_submission(
    chain: MemoryChain,
) -> None:
    chain.apply(submit("moj", anchor(1)))
    applied = chain.apply(submit("moj", anchor(2), supersede(1, 2)))
    assert applied.block.outcomes == (Outcome(OK),)
    assert chain.statuses[doc(1)] == StatusRecord.anchored(
        anchor(1), leaf=0
    ).superseded(supersede(1, 2), leaf=2)
    assert (doc(2), 2) in applied.history


def test_record_versions_increase_by_one(chain: MemoryChain) -> None:
    assert chain.codes(submit("civil-reg", record(1), record(2))) == OK_
    assert chain.codes(submit("civil-reg", record(3))) == OK_
    status = chain.statuses[record_key("births", b"r1")]
    assert (status.status, status.version, status.leaf) == ("record", 3, 2)


# --- whole or nothing ---------------------------------------------------------


def test_a_rejected_submission_changes_nothing(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)))
    before = (chain.tree_size, chain.state_root, dict(chain.statuses))
    nonce = b"\x42" * 16
    sub = submit("moj", anchor(2), revoke(99), nonce=nonce)
    applied = chain.apply(sub)
    assert applied.block.outcomes == (Outcome("unknown_document", 1),)
    assert (chain.tree_size, chain.state_root, chain.statuses) == before
    assert applied.leaves == [] and applied.log_nodes == []
    assert applied.state == {} and applied.state_writes == {}
    assert applied.history == []
    assert applied.block.header.first_leaf == applied.block.header.tree_size == 1
    # Only its nonce is spent: its bytes are public in the block, and a copy
    # posted again is a replay (not one more rejected block), as is a
    # corrected batch under the same nonce.
    assert [(a, n) for a, n, _ in applied.nonces] == [("moj", nonce)]
    assert [o.code for o in chain.codes(sub)] == ["replay"]
    assert [o.code for o in chain.codes(submit("moj", anchor(2), nonce=nonce))] == [
        "replay"
    ]
    assert chain.codes(submit("moj", anchor(2))) == OK_


def test_a_submission_refused_before_its_signature_spends_no_nonce(
    chain: MemoryChain,
) -> None:
    # Anyone can send bytes with any nonce; only the agency's own signed,
    # fresh submission spends one.
    good = submit("moj", anchor(1), nonce=b"\x07" * 16)
    forged = bytearray(good)
    forged[-1] ^= 1  # the signature's last byte
    applied = chain.apply(bytes(forged))
    assert applied.block.outcomes[0].code in ("bad_signature", "malformed")
    assert applied.nonces == []
    assert chain.codes(good) == OK_


def test_rejected_submissions_stay_in_the_block_with_their_code(
    chain: MemoryChain,
) -> None:
    subs = (submit("moj", anchor(1)), submit("moh", revoke(1, "moh")), b"\x00")
    applied = chain.apply(*subs)
    assert applied.block.submissions == subs
    assert applied.block.outcomes == (
        Outcome(OK),
        Outcome("not_owner", 0),
        Outcome("malformed"),
    )


# --- one test per reason code -------------------------------------------------


def test_malformed_submission_bytes(chain: MemoryChain) -> None:
    assert chain.codes(b"\x93\x01\x02\x03") == rejected("malformed")


def test_malformed_entry_names_its_index(chain: MemoryChain) -> None:
    good = encode_entry(anchor(1))
    sub = sign_submission(
        ORIGIN, "moj", [good, b"\xc1"], agency_keys("moj").issuer, timestamp_ms=T0
    )
    assert chain.codes(encode_submission(sub)) == rejected("malformed", 1)


def test_unknown_agency(chain: MemoryChain) -> None:
    sub = submit("stranger", anchor(1, issuer="stranger"))
    assert chain.codes(sub) == rejected("unknown_agency")


def test_unknown_key(chain: MemoryChain) -> None:
    sub = submit("moj", anchor(1), key=agency_keys("moh").issuer)
    assert chain.codes(sub) == rejected("unknown_key")


def test_admin_and_node_keys_cannot_issue(chain: MemoryChain) -> None:
    keys = agency_keys("moj")
    for key in (keys.node, keys.admins[0]):
        assert chain.codes(submit("moj", anchor(1), key=key)) == rejected("unknown_key")


def test_bad_signature(chain: MemoryChain) -> None:
    sub = sign_submission(
        ORIGIN, "moj", [encode_entry(anchor(1))], agency_keys("moj").issuer
    )
    forged = Submission(
        agency=sub.agency,
        key_id=sub.key_id,
        nonce=sub.nonce,
        timestamp_ms=T0,  # changed after signing
        entries=sub.entries,
        signature=sub.signature,
    )
    assert chain.codes(encode_submission(forged)) == rejected("bad_signature")


def test_replay_of_a_nonce_from_an_earlier_block(chain: MemoryChain) -> None:
    sub = submit("moj", anchor(1))
    assert chain.codes(sub) == OK_
    assert chain.codes(sub) == rejected("replay")


def test_replay_within_the_same_batch(chain: MemoryChain) -> None:
    nonce = b"\x01" * 16
    first = submit("moj", anchor(1), nonce=nonce)
    second = submit("moj", anchor(2), nonce=nonce)
    outcomes = chain.codes(first, second)
    assert outcomes == [Outcome(OK), Outcome("replay")]


def test_nonces_are_per_agency(chain: MemoryChain) -> None:
    nonce = b"\x01" * 16
    outcomes = chain.codes(
        submit("moj", anchor(1), nonce=nonce),
        submit("moh", anchor(2, "moh", "health_record"), nonce=nonce),
    )
    assert outcomes == OK_ * 2


@pytest.mark.parametrize("skew", [300_001, -300_001])
def test_timestamp_window(chain: MemoryChain, skew: int) -> None:
    sub = submit("moj", anchor(1), timestamp_ms=T0 + skew)
    assert chain.codes(sub) == rejected("timestamp_window")


@pytest.mark.parametrize("skew", [300_000, -300_000])
def test_timestamp_window_edges_are_inside(chain: MemoryChain, skew: int) -> None:
    sub = submit("moj", anchor(1), timestamp_ms=T0 + skew)
    assert chain.codes(sub) == OK_


def test_too_many_entries(chain: MemoryChain) -> None:
    key = agency_keys("moj").issuer
    entries = tuple(encode_entry(anchor(1)) for _ in range(MAX_ENTRIES + 1))
    nonce = b"\x09" * 16
    message = signing_message(ORIGIN, "moj", nonce, T0, batch_root(entries))
    sub = Submission(
        agency="moj",
        key_id=key_id("moj", key.public_key),
        nonce=nonce,
        timestamp_ms=T0,
        entries=entries,
        signature=key.sign(message),
    )
    assert chain.codes(encode_submission(sub)) == rejected("too_many_entries")


def test_not_issuer(chain: MemoryChain) -> None:
    sub = submit("moj", anchor(1), anchor(2, issuer="moh", doc_type="health_record"))
    assert chain.codes(sub) == rejected("not_issuer", 1)


def test_doc_type_not_granted(chain: MemoryChain) -> None:
    sub = submit("moj", anchor(1, doc_type="health_record"))
    assert chain.codes(sub) == rejected("doc_type_not_granted", 0)


def test_already_anchored_in_an_earlier_block(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)))
    assert chain.codes(submit("moj", anchor(1))) == rejected("already_anchored", 0)


def test_already_anchored_earlier_in_the_batch(chain: MemoryChain) -> None:
    outcomes = chain.codes(submit("moj", anchor(1)), submit("moj", anchor(1)))
    assert outcomes == [Outcome(OK), Outcome("already_anchored", 0)]


def test_already_anchored_in_the_same_submission(chain: MemoryChain) -> None:
    sub = submit("moj", anchor(1), anchor(1))
    assert chain.codes(sub) == rejected("already_anchored", 1)


def test_another_agency_cannot_anchor_a_taken_doc_id(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)))
    sub = submit("moh", anchor(1, "moh", "health_record"))
    assert chain.codes(sub) == rejected("already_anchored", 0)


def test_unknown_document(chain: MemoryChain) -> None:
    assert chain.codes(submit("moj", revoke(1))) == rejected("unknown_document", 0)


def test_not_owner_when_revoking_another_agencys_document(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)))
    sub = submit("moh", revoke(1, issuer="moh"))
    assert chain.codes(sub) == rejected("not_owner", 0)
    assert chain.statuses[doc(1)].status == "valid"


def test_not_owner_when_superseding_another_agencys_document(
    chain: MemoryChain,
) -> None:
    chain.apply(submit("moj", anchor(1)))
    sub = submit("moh", anchor(2, "moh", "health_record"), supersede(1, 2, "moh"))
    assert chain.codes(sub) == rejected("not_owner", 1)


def test_not_owner_of_the_replacement_document(chain: MemoryChain) -> None:
    chain.apply(
        submit("moj", anchor(1)), submit("moh", anchor(2, "moh", "health_record"))
    )
    assert chain.codes(submit("moj", supersede(1, 2))) == rejected("not_owner", 0)


def test_supersede_by_a_document_not_yet_anchored(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)))
    sub = submit("moj", supersede(1, 2))
    assert chain.codes(sub) == rejected("unknown_document", 0)


def test_already_revoked(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1), revoke(1)))
    assert chain.codes(submit("moj", revoke(1))) == rejected("already_revoked", 0)


def test_a_revoked_document_cannot_be_superseded(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1), revoke(1), anchor(2)))
    sub = submit("moj", supersede(1, 2))
    assert chain.codes(sub) == rejected("already_revoked", 0)


def test_already_superseded(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1), anchor(2), anchor(3), supersede(1, 2)))
    sub = submit("moj", supersede(1, 3))
    assert chain.codes(sub) == rejected("already_superseded", 0)


def test_no_supersession_loops(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1), anchor(2), supersede(1, 2)))
    sub = submit("moj", supersede(2, 1))
    assert chain.codes(sub) == rejected("already_superseded", 0)


def test_a_superseded_document_may_still_be_revoked(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1), anchor(2), supersede(1, 2)))
    assert chain.codes(submit("moj", revoke(1))) == OK_
    assert chain.statuses[doc(1)].superseded_by == doc(2)


def test_bad_version_for_a_first_record(chain: MemoryChain) -> None:
    sub = submit("civil-reg", record(2))
    assert chain.codes(sub) == rejected("bad_version", 0)


def test_bad_version_skipping_or_repeating(chain: MemoryChain) -> None:
    chain.apply(submit("civil-reg", record(1)))
    assert chain.codes(submit("civil-reg", record(3))) == rejected("bad_version", 0)
    assert chain.codes(submit("civil-reg", record(1))) == rejected("bad_version", 0)


def test_not_owner_of_a_registry_record(chain: MemoryChain) -> None:
    chain.apply(submit("civil-reg", record(1)))
    sub = submit("moj", record(2, issuer="moj"))
    assert chain.codes(sub) == rejected("not_owner", 0)


def test_a_document_squatting_a_record_key_does_not_own_the_record(
    chain: MemoryChain,
) -> None:
    # moj anchors a "document" whose doc id is civil-reg's future record key.
    squat = Anchor(
        issuer="moj",
        doc_id=record_key("births", b"r1"),
        doc_type="criminal_record",
        issued_at=T0,
    )
    chain.apply(submit("moj", squat))
    assert chain.codes(submit("moj", record(1, "moj"))) == rejected("not_owner", 0)
    assert chain.codes(submit("civil-reg", record(1))) == rejected("not_owner", 0)


def test_a_record_is_not_a_document(chain: MemoryChain) -> None:
    chain.apply(submit("civil-reg", record(1)))
    rev = Revoke(
        issuer="civil-reg",
        doc_id=record_key("births", b"r1"),
        reason="other",
        at=T0,
    )
    assert chain.codes(submit("civil-reg", rev)) == rejected("unknown_document", 0)


# --- governance ---------------------------------------------------------------


def test_governance_with_a_quorum_changes_the_trust_list(chain: MemoryChain) -> None:
    params: dict[str, Value] = {"id": "moj", "doc_types": ["land_use"]}
    gov = approved(chain.trust, "grant_doc_types", params, ("moj", "moh"))
    applied = chain.apply(
        submit("moj", gov), submit("moj", anchor(1, doc_type="land_use"))
    )
    assert applied.block.outcomes == (Outcome(OK), Outcome(OK))
    assert applied.trust.version == 2
    assert applied.block.header.trust_version == 2
    assert chain.trust.agency("moj").doc_types == ("criminal_record", "land_use")


def test_governance_quorum(chain: MemoryChain) -> None:
    gov = approved(chain.trust, "remove_agency", {"id": "moh"}, ("moj",))
    assert chain.codes(submit("moj", gov)) == rejected("governance_quorum", 0)
    assert chain.trust.version == 1


def test_governance_invalid_version(chain: MemoryChain) -> None:
    gov = approved(
        chain.trust, "remove_agency", {"id": "moh"}, ("moj", "moh"), version=3
    )
    assert chain.codes(submit("moj", gov)) == rejected("governance_invalid", 0)


def test_governance_invalid_params(chain: MemoryChain) -> None:
    gov = approved(chain.trust, "remove_agency", {"id": "nobody"}, ("moj", "moh"))
    assert chain.codes(submit("moj", gov)) == rejected("governance_invalid", 0)


def test_an_approved_change_applies_once(chain: MemoryChain) -> None:
    gov = approved(chain.trust, "remove_agency", {"id": "moh"}, ("moj", "moh"))
    assert chain.codes(submit("moj", gov)) == OK_
    assert chain.codes(submit("moj", gov)) == rejected("governance_invalid", 0)


def test_a_retired_issuer_key_is_refused_for_new_submissions(
    chain: MemoryChain,
) -> None:
    old = agency_keys("moj").issuer
    fresh = SigningKey.from_seed(b"\x33" * 32)
    params: dict[str, Value] = {
        "id": "moj",
        "issuer_key": fresh.public_key,
        "retire": old.public_key,
    }
    gov = approved(chain.trust, "rotate_issuer_key", params, ("moj", "civil-reg"))
    assert chain.codes(submit("moj", gov)) == OK_
    assert chain.codes(submit("moj", anchor(1), key=old)) == rejected("unknown_key")
    assert chain.codes(submit("moj", anchor(1), key=fresh)) == OK_


def test_an_agency_removed_earlier_in_the_batch_is_unknown(chain: MemoryChain) -> None:
    gov = approved(chain.trust, "remove_agency", {"id": "moh"}, ("moj", "civil-reg"))
    outcomes = chain.codes(
        submit("moj", gov), submit("moh", anchor(1, "moh", "health_record"))
    )
    assert outcomes == [Outcome(OK), Outcome("unknown_agency")]


# --- determinism --------------------------------------------------------------


def _scenario() -> list[tuple[bytes, ...]]:
    """A few batches touching every kind, built from deterministic inputs."""
    nonces = (bytes([i]) * 16 for i in range(1, 100))
    trust = make_trust()
    params: dict[str, Value] = {"id": "moh", "doc_types": ["land_use"]}
    gov = approved(trust, "grant_doc_types", params, ("moj", "civil-reg"))
    return [
        (
            submit("moj", anchor(1), anchor(2), nonce=next(nonces)),
            submit("civil-reg", record(1), nonce=next(nonces)),
        ),
        (
            submit("moj", supersede(1, 2), nonce=next(nonces)),
            submit("moh", revoke(1, "moh"), nonce=next(nonces)),
            submit("moj", gov, nonce=next(nonces)),
        ),
        (
            submit("moh", anchor(3, "moh", "land_use"), nonce=next(nonces)),
            submit("moj", revoke(2), nonce=next(nonces)),
        ),
    ]


def test_applying_twice_from_scratch_gives_the_same_blocks() -> None:
    hashes, encodings = [], []
    for _ in range(2):
        chain = MemoryChain(make_trust())
        batches = enumerate(_scenario())
        blocks = [chain.apply(*batch, time_ms=T0 + i) for i, batch in batches]
        hashes.append([block_hash(a.block.header) for a in blocks])
        encodings.append([encode_block(a.block) for a in blocks])
        codes = [o.code for a in blocks for o in a.block.outcomes]
        assert codes == ["ok", "ok", "ok", "not_owner", "ok", "ok", "ok"]
    assert hashes[0] == hashes[1]
    assert encodings[0] == encodings[1]


def test_log_size_must_match_the_view(chain: MemoryChain) -> None:
    chain.apply(submit("moj", anchor(1)))
    log = MerkleLog(DictNodeStore(), 0)
    smap = StateMap(chain.kv, chain.state_root)
    with pytest.raises(ValueError):
        apply_batch(chain, BatchInput(time_ms=T0, submissions=()), log=log, smap=smap)


def test_batch_input_round_trip() -> None:
    batch = BatchInput(
        time_ms=T0,
        submissions=(submit("moj", anchor(1)),),
        cosignatures=(Cosignature(height=1, agency="moj", signature=b"s" * 64),),
    )
    assert BatchInput.decode(batch.encode()) == batch


# --- the precheck a node runs before proposing ----------------------------------


@pytest.mark.parametrize(
    ("agency", "entries", "code"),
    [
        ("moh", (revoke(1, "moh"),), "not_owner"),  # moj's document
        ("moj", (anchor(1),), "already_anchored"),
        ("moj", (revoke(2),), "already_revoked"),
        ("moj", (anchor(5), revoke(2)), "already_revoked"),
        ("moj", (anchor(6, issuer="moh"),), "not_issuer"),
    ],
    ids=["not-owner", "anchored", "revoked", "second-entry", "not-issuer"],
)
def test_precheck_refuses_what_no_pending_submission_can_undo(
    chain: MemoryChain, agency: str, entries: tuple[Entry, ...], code: str
) -> None:
    chain.apply(submit("moj", anchor(1), anchor(2), revoke(2)))
    sub = decode_submission(submit(agency, *entries))
    with pytest.raises(RuleViolation) as caught:
        precheck_entries(chain, sub)
    assert caught.value.code == code
    assert caught.value.entry == len(entries) - 1
    # The rules, when applied, give the same refusal.
    assert chain.codes(encode_submission(sub)) == [Outcome(code, len(entries) - 1)]


def test_precheck_leaves_to_the_apply_what_a_pending_one_may_change(
    chain: MemoryChain,
) -> None:
    # The new document's anchor may be in a submission not applied yet.
    early = decode_submission(submit("moj", supersede(1, 2)))
    precheck_entries(chain, early)  # no refusal
    assert chain.status(doc(1)) is None  # and nothing written
    chain.apply(submit("moj", anchor(1), anchor(2)))
    assert chain.codes(encode_submission(early)) == OK_
