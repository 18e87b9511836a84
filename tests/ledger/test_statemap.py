"""The state map (ledger/statemap.py) and its proofs (ledger/stateproof.py).

The root is checked against ``ref_root``, a direct transcription of the
definition in docs/statemap.md that shares no code with the module.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import CorruptStoreError, RootMismatchError, VerificationError
from ledger.statemap import (
    EMPTY,
    EMPTY_ROOT,
    OTHER_LEAF,
    PRESENT,
    StateMap,
    StateProof,
    verify_state,
)

VECTORS = Path(__file__).parent / "data" / "statemap_vectors.json"
Writes = dict[bytes, bytes | None]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def bit(key: bytes, i: int) -> int:
    return (key[i // 8] >> (7 - i % 8)) & 1


def ref_root(model: Mapping[bytes, bytes], depth: int = 0) -> bytes:
    """The root as docs/statemap.md defines it, by plain recursion."""
    if not model:
        return bytes(32)
    if len(model) == 1:
        ((key, value),) = model.items()
        return sha(b"\x02" + key + sha(value))
    left = {k: v for k, v in model.items() if bit(k, depth) == 0}
    right = {k: v for k, v in model.items() if bit(k, depth) == 1}
    return sha(b"\x03" + ref_root(left, depth + 1) + ref_root(right, depth + 1))


def ref_stored(model: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """Every stored byte docs/statemap.md prescribes for ``model``: its
    values, and the nodes of "How a node stores the tree", built here
    straight from that description."""
    stored = {b"sv" + key: value for key, value in model.items()}
    if model:
        _ref_node(model, 0, stored)
    return stored


def _ref_node(
    group: Mapping[bytes, bytes], depth: int, stored: dict[bytes, bytes]
) -> None:
    # The node at nibble depth ``depth`` above ``group`` (the keys sharing
    # its path), and below it every node with two keys or more.
    path = next(iter(group)).hex()[:depth]
    nid = b"sn" + bytes([depth]) + bytes.fromhex(path + "0" * (depth % 2))
    inner = leaves = 0
    fields = b""
    for slot in range(16):
        below = {k: v for k, v in group.items() if int(k.hex()[depth], 16) == slot}
        bit = 0x8000 >> slot
        if len(below) == 1:
            ((key, value),) = below.items()
            leaves |= bit
            fields += key + sha(b"\x02" + key + sha(value))
        elif below:
            inner |= bit
            fields += ref_root(below, 4 * depth + 4)
            _ref_node(below, depth + 1, stored)
    stored[nid] = inner.to_bytes(2, "big") + leaves.to_bytes(2, "big") + fields


def commit(kv: dict[bytes, bytes], writes: Writes) -> None:
    """Apply ``writes`` as the store would; deletes must name stored keys."""
    for key, value in writes.items():
        assert key.startswith(b"s")
        if value is None:
            del kv[key]
        else:
            kv[key] = value


def build(model: Mapping[bytes, bytes | None]) -> tuple[dict[bytes, bytes], StateMap]:
    kv: dict[bytes, bytes] = {}
    smap = StateMap(kv, EMPTY_ROOT)
    _, writes = smap.update(model)
    commit(kv, writes)
    smap.mark_committed()
    return kv, smap


def rejected(check: Callable[[], object]) -> bool:
    """True if building or verifying a proof raised VerificationError."""
    try:
        check()
    except VerificationError:
        return True
    return False


def flip(data: bytes, i: int) -> bytes:
    out = bytearray(data)
    out[i // 8] ^= 0x80 >> (i % 8)
    return bytes(out)


BASE = bytes.fromhex("5a" * 32)

# Keys that share long prefixes (down to all 255 first bits) as well as
# random ones, so that leaves land at every depth.
keys = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 255).map(lambda i: flip(BASE, i)),
    st.integers(0, 255).map(lambda b: bytes(31) + bytes([b])),
    st.integers(0, 15).map(lambda n: bytes([n << 4]) + bytes(31)),
)
values = st.binary(max_size=8)
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- the shape of the tree ------------------------------------------------


def test_empty_map_has_the_zero_root_and_proves_every_key_absent() -> None:
    _, smap = build({})
    assert smap.root == EMPTY_ROOT == bytes(32)
    proof = smap.prove(BASE)
    assert (proof.kind, proof.depth) == (EMPTY, 0)
    verify_state(EMPTY_ROOT, BASE, None, proof)


def test_a_single_key_is_the_root_itself() -> None:
    _, smap = build({BASE: b"v"})
    assert smap.root == sha(b"\x02" + BASE + sha(b"v"))
    assert smap.prove(BASE).depth == 0


def test_leaf_sits_at_the_shortest_prefix_where_it_is_alone() -> None:
    low, high = bytes(32), b"\x80" + bytes(31)
    _, smap = build({low: b"a", high: b"b"})
    leaf_a, leaf_b = sha(b"\x02" + low + sha(b"a")), sha(b"\x02" + high + sha(b"b"))
    assert smap.root == sha(b"\x03" + leaf_a + leaf_b)
    assert smap.prove(low).path() == [leaf_b]


def test_keys_differing_only_in_the_last_bit_sit_at_depth_256() -> None:
    other = flip(BASE, 255)
    _, smap = build({BASE: b"a", other: b"b"})
    proof = smap.prove(BASE)
    assert proof.depth == 256 and len(proof.siblings) == 1
    verify_state(smap.root, BASE, b"a", proof)
    assert smap.root == ref_root({BASE: b"a", other: b"b"})


# --- against a dict model -------------------------------------------------


@FAST
@given(data=st.data())
def test_random_batches_agree_with_a_dict_model(
    data: st.DataObject,
) -> None:
    pool = data.draw(st.lists(keys, min_size=1, max_size=24, unique=True))
    kv: dict[bytes, bytes] = {}
    smap = StateMap(kv, EMPTY_ROOT)
    model: dict[bytes, bytes] = {}
    unsaved: list[Writes] = []
    for _ in range(data.draw(st.integers(1, 6))):
        batch = data.draw(st.dictionaries(st.sampled_from(pool), st.none() | values))
        root, writes = smap.update(batch)
        unsaved.append(writes)
        for key, value in batch.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        assert root == smap.root == ref_root(model)
        # Commit now and keep going, commit and reopen, or commit later.
        mode = data.draw(st.sampled_from(["keep", "reopen", "later"]))
        if mode != "later":
            for pending in unsaved:
                commit(kv, pending)
            unsaved.clear()
            smap.mark_committed()
        if mode == "reopen":
            smap = StateMap(kv, root)
    for key in pool:
        assert smap.get(key) == model.get(key)
        verify_state(smap.root, key, model.get(key), smap.prove(key))


@FAST
@given(data=st.data())
def test_stored_bytes_are_those_the_storage_format_prescribes(
    data: st.DataObject,
) -> None:
    """The node bytes are consensus-critical (every node keeps the same
    store, undo records copy them): pinned to a rebuild from the format's
    description, whatever batches led to the model."""
    pool = data.draw(st.lists(keys, min_size=1, max_size=40, unique=True))
    kv: dict[bytes, bytes] = {}
    smap = StateMap(kv, EMPTY_ROOT)
    model: dict[bytes, bytes] = {}
    for _ in range(data.draw(st.integers(1, 5))):
        batch = data.draw(st.dictionaries(st.sampled_from(pool), st.none() | values))
        _, writes = smap.update(batch)
        commit(kv, writes)
        smap.mark_committed()
        model = {k: v for k, v in {**model, **batch}.items() if v is not None}
        assert kv == ref_stored(model)


def test_stored_bytes_of_a_larger_map_follow_the_format() -> None:
    # Enough keys for nodes four levels down, each batch changing one to
    # sixteen slots of a node, and deletes that empty or collapse nodes.
    rng = random.Random(7)
    pool = [rng.randbytes(32) for _ in range(700)]
    kv: dict[bytes, bytes] = {}
    smap = StateMap(kv, EMPTY_ROOT)
    model: dict[bytes, bytes] = {}
    for size in (400, 1, 3, 60, 250, 700, 30):
        batch = {
            key: None if rng.random() < 0.3 else rng.randbytes(rng.randrange(9))
            for key in rng.sample(pool, size)
        }
        root, writes = smap.update(batch)
        commit(kv, writes)
        smap.mark_committed()
        model = {k: v for k, v in {**model, **batch}.items() if v is not None}
        assert root == ref_root(model)
    assert kv == ref_stored(model)


@pytest.mark.parametrize(
    ("desc", "raw", "error"),
    [
        ("no bitmaps", b"\x80\x00", "malformed"),
        ("no slot set", bytes(4), "malformed"),
        ("a slot both inner and leaf", b"\x80\x00\x80\x00" + bytes(32), "malformed"),
        ("a hash short", b"\x80\x00\x00\x00" + bytes(31), "wrong length"),
        ("a byte too many", b"\x80\x00\x00\x00" + bytes(33), "wrong length"),
        ("a leaf without its hash", b"\x00\x00\x80\x00" + bytes(32), "wrong length"),
    ],
)
def test_a_malformed_stored_node_is_refused(desc: str, raw: bytes, error: str) -> None:
    with pytest.raises(CorruptStoreError, match=error):
        StateMap({b"sn\x00": raw}, EMPTY_ROOT).update({BASE: b"v"})


@FAST
@given(data=st.data())
def test_before_names_each_written_node_as_it_was_stored(
    data: st.DataObject,
) -> None:
    """The undo record is built from ``before``: a wrong entry there would
    make a proof at an older height wrong, so each one is held to the kv."""
    pool = data.draw(st.lists(keys, min_size=1, max_size=24, unique=True))
    kv: dict[bytes, bytes] = {}
    smap = StateMap(kv, EMPTY_ROOT)
    for _ in range(data.draw(st.integers(1, 6))):
        batch = data.draw(st.dictionaries(st.sampled_from(pool), st.none() | values))
        before: Writes = {}
        _, writes = smap.update(batch, before=before)
        assert set(writes) - set(before) <= {k for k in writes if k[:2] == b"sv"}
        for key, old in before.items():
            assert kv.get(key) == old, key.hex()
        assert all(k.startswith(b"sn") for k in before)
        commit(kv, writes)
        smap.mark_committed()


@FAST
@given(
    model=st.dictionaries(keys, values, max_size=30),
    data=st.data(),
)
def test_root_does_not_depend_on_insertion_order_or_batching(
    model: dict[bytes, bytes], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(sorted(model)))
    kv: dict[bytes, bytes] = {}
    smap = StateMap(kv, EMPTY_ROOT)
    start = 0
    while start < len(order):
        size = data.draw(st.integers(1, 8))
        _, writes = smap.update({k: model[k] for k in order[start : start + size]})
        commit(kv, writes)
        start += size
    assert smap.root == ref_root(model) == build(model)[1].root


@FAST
@given(model=st.dictionaries(keys, values, min_size=1, max_size=30))
def test_deleting_everything_gives_the_empty_root_and_no_stored_bytes(
    model: dict[bytes, bytes],
) -> None:
    kv, smap = build(model)
    root, writes = smap.update(dict.fromkeys(model))
    commit(kv, writes)
    assert root == EMPTY_ROOT
    assert kv == {}


@FAST
@given(model=st.dictionaries(keys, values, max_size=30), probes=st.lists(keys))
def test_reopening_at_the_root_gives_the_same_answers(
    model: dict[bytes, bytes], probes: list[bytes]
) -> None:
    kv, smap = build(model)
    again = StateMap(dict(kv), smap.root)
    for key in [*model, *probes]:
        assert again.get(key) == smap.get(key) == model.get(key)
        assert again.prove(key) == smap.prove(key)


def test_a_deleted_neighbour_leaves_no_chain_of_nodes_behind() -> None:
    # Two keys sharing 255 bits need a node at every nibble depth; once one
    # goes, the other moves back up to the root node and the chain is freed.
    other = flip(BASE, 255)
    kv, smap = build({BASE: b"a", other: b"b"})
    assert len(kv) == 64 + 2
    _, writes = smap.update({other: None})
    commit(kv, writes)
    assert sorted(kv) == [b"sn\x00", b"sv" + BASE]
    assert smap.root == ref_root({BASE: b"a"})


def test_update_sees_its_own_writes_until_the_caller_commits() -> None:
    kv, smap = build({BASE: b"old"})
    old_root = smap.root
    other = flip(BASE, 3)
    root, writes = smap.update({BASE: b"new", other: b"x"})
    assert kv.get(b"sv" + other) is None  # nothing written behind the caller
    assert smap.get(BASE) == b"new" and smap.get(other) == b"x"
    verify_state(root, other, b"x", smap.prove(other))
    assert StateMap(kv, old_root).get(BASE) == b"old"
    commit(kv, writes)
    smap.mark_committed()
    assert StateMap(kv, root).get(other) == b"x"


def test_writes_name_only_what_changed() -> None:
    _, smap = build({BASE: b"v"})
    assert smap.update({BASE: b"v"})[1] == {}
    assert smap.update({flip(BASE, 9): None})[1] == {}


def test_opening_at_a_root_the_store_does_not_hold_is_refused() -> None:
    kv, smap = build({BASE: b"v"})
    with pytest.raises(CorruptStoreError):
        StateMap(kv, EMPTY_ROOT)
    with pytest.raises(CorruptStoreError):
        StateMap({}, smap.root)


@pytest.mark.parametrize("depth", [1, 5, 40])
def test_a_stored_node_its_parent_does_not_hash_to_is_refused(depth: int) -> None:
    """A proof never passes on a node that disagrees with the hash its parent
    holds for it, near the root (kept once read) or deep down."""
    # Keys sharing 4 * depth + 3 bits need a node at every depth down there.
    first = bytes(32)
    second = flip(first, 4 * depth + 3)
    third = flip(first, 4 * depth + 2)
    kv, smap = build({first: b"a", second: b"b", third: b"c"})
    nid = b"sn" + bytes([depth]) + bytes((depth + 1) >> 1)
    raw = kv[nid]
    # The same layout, another leaf hash: decodes fine, hashes otherwise.
    kv[nid] = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(CorruptStoreError, match=nid.hex()):
        StateMap(kv, smap.root).prove(second)
    kv[nid] = raw
    verify_state(smap.root, second, b"b", StateMap(kv, smap.root).prove(second))


def test_keys_must_be_exactly_32_bytes() -> None:
    _, smap = build({BASE: b"v"})
    for bad in (b"", BASE[:31], BASE + b"\x00"):
        with pytest.raises(ValueError):
            smap.update({BASE: b"changed", bad: b"x"})
        with pytest.raises(ValueError):
            smap.get(bad)
        with pytest.raises(ValueError):
            smap.prove(bad)
        with pytest.raises(ValueError):
            verify_state(smap.root, bad, None, smap.prove(BASE))
    assert smap.get(BASE) == b"v"  # the failed batch changed nothing


# --- verification fails on any change -------------------------------------


@FAST
@given(
    model=st.dictionaries(keys, values, min_size=1, max_size=20),
    probe=keys,
    data=st.data(),
)
def test_a_one_bit_change_anywhere_fails_verification(
    model: dict[bytes, bytes], probe: bytes, data: st.DataObject
) -> None:
    _, smap = build(model)
    key = data.draw(st.sampled_from([*sorted(model), probe]))
    value = model.get(key)
    proof = smap.prove(key)
    root = smap.root
    verify_state(root, key, value, proof)

    # (1): the root, and the value of a present key.
    i = data.draw(st.integers(0, 255))
    assert rejected(lambda: verify_state(flip(root, i), key, value, proof))
    if value is not None:
        assert rejected(lambda: verify_state(root, key, value + b"\x00", proof))
        if value:
            j = data.draw(st.integers(0, 8 * len(value) - 1))
            assert rejected(lambda: verify_state(root, key, flip(value, j), proof))

    # (2): every bit of the encoded proof.
    encoded = proof.to_bytes()
    j = data.draw(st.integers(0, 8 * len(encoded) - 1))
    assert rejected(
        lambda: verify_state(root, key, value, StateProof.from_bytes(flip(encoded, j)))
    )

    # (3): the key. A key in the same empty region is rightly absent too, so
    # the only demand is that nothing false is ever accepted.
    moved = flip(key, i)
    if rejected(lambda: verify_state(root, moved, value, proof)):
        return
    assert value is None and moved not in model


def verifies_json(root: bytes, key: bytes, value: bytes | None, text: object) -> bool:
    return not rejected(
        lambda: verify_state(root, key, value, StateProof.from_json(text))
    )


def test_every_bit_of_every_proof_field_matters() -> None:
    model = {flip(BASE, i): bytes([i]) for i in (0, 5, 9, 200)}
    _, smap = build(model)
    root = smap.root
    for key, value in [*model.items(), (flip(BASE, 7), None), (BASE, None)]:
        text = smap.prove(key).to_json()
        assert verifies_json(root, key, value, text)
        for name in ("bitmap", "leaf_key", "leaf_value_hash"):
            raw = bytes.fromhex(str(text.get(name, "")))
            for i in range(8 * len(raw)):
                changed = {**text, name: flip(raw, i).hex()}
                assert not verifies_json(root, key, value, changed)
        for n, sibling in enumerate(text["siblings"]):
            for i in range(256):
                siblings = list(text["siblings"])
                siblings[n] = flip(bytes.fromhex(sibling), i).hex()
                changed = {**text, "siblings": siblings}
                assert not verifies_json(root, key, value, changed)
        for kind in {PRESENT, EMPTY, OTHER_LEAF} - {text["kind"]}:
            assert not verifies_json(root, key, value, {**text, "kind": kind})


def test_proof_for_a_present_key_fails_as_absent_and_the_reverse() -> None:
    _, smap = build({BASE: b"v", flip(BASE, 1): b"w"})
    present, absent = smap.prove(BASE), smap.prove(flip(BASE, 2))
    assert (present.kind, absent.kind) == (PRESENT, OTHER_LEAF)
    with pytest.raises(VerificationError, match="tampered"):
        verify_state(smap.root, BASE, None, present)
    with pytest.raises(VerificationError, match="tampered"):
        verify_state(smap.root, flip(BASE, 2), b"v", absent)


# --- attacks the verifier names -------------------------------------------


def test_own_leaf_offered_as_another_leaf_does_not_prove_absence() -> None:
    # A present key "proven absent" by calling its own leaf someone else's.
    _, smap = build({BASE: b"v", flip(BASE, 1): b"w"})
    own = smap.prove(BASE)
    forged = StateProof(
        kind=OTHER_LEAF,
        bitmap=own.bitmap,
        siblings=own.siblings,
        leaf_key=BASE,
        leaf_value_hash=sha(b"v"),
    )
    with pytest.raises(VerificationError, match="own leaf"):
        verify_state(smap.root, BASE, None, forged)


def test_a_leaf_cannot_be_relocated_off_its_key_path() -> None:
    key, other = bytes(32), b"\x80" + bytes(31)
    _, smap = build({other: b"w"})
    forged = StateProof(
        kind=OTHER_LEAF,
        bitmap=b"\x80",
        siblings=(sha(b"anything"),),
        leaf_key=other,
        leaf_value_hash=sha(b"w"),
    )
    with pytest.raises(VerificationError, match="off the key's path"):
        verify_state(smap.root, key, None, forged)


def test_an_inner_node_cannot_pass_as_a_leaf() -> None:
    # Without separate 0x02 / 0x03 prefixes the root node (left, right) would
    # read as a leaf with key=left and value hash=right.
    low, high = bytes(32), b"\x80" + bytes(31)
    _, smap = build({low: b"a", high: b"b"})
    left, right = smap.prove(high).siblings[0], smap.prove(low).siblings[0]
    forged = StateProof(
        kind=OTHER_LEAF, bitmap=b"", siblings=(), leaf_key=left, leaf_value_hash=right
    )
    assert sha(b"\x03" + left + right) == smap.root
    with pytest.raises(RootMismatchError):
        verify_state(smap.root, flip(left, 0), None, forged)


def test_root_mismatch_carries_both_roots() -> None:
    _, smap = build({BASE: b"v"})
    with pytest.raises(RootMismatchError) as info:
        verify_state(EMPTY_ROOT, BASE, b"v", smap.prove(BASE))
    assert (info.value.expected, info.value.computed) == (EMPTY_ROOT, smap.root)


# --- encodings ------------------------------------------------------------


@FAST
@given(model=st.dictionaries(keys, values, max_size=20), probe=keys)
def test_proofs_round_trip_through_json_and_bytes(
    model: dict[bytes, bytes], probe: bytes
) -> None:
    _, smap = build(model)
    proof = smap.prove(probe)
    text = json.loads(json.dumps(proof.to_json()))
    assert StateProof.from_json(text) == proof
    assert StateProof.from_bytes(proof.to_bytes()) == proof


def _good() -> dict[str, object]:
    return {
        "kind": "other_leaf",
        "bitmap": "a0",
        "siblings": ["11" * 32, "22" * 32],
        "leaf_key": "33" * 32,
        "leaf_value_hash": "44" * 32,
    }


MALFORMED_JSON = [
    ("not an object", []),
    ("unknown field", {**_good(), "extra": "00"}),
    ("missing bitmap", {k: v for k, v in _good().items() if k != "bitmap"}),
    ("unknown kind", {**_good(), "kind": "maybe"}),
    ("upper-case hex", {**_good(), "leaf_key": "AB" * 32}),
    ("hex with spaces", {**_good(), "bitmap": "a0 "}),
    ("short sibling", {**_good(), "siblings": ["11" * 31, "22" * 32]}),
    ("empty sibling spelled out", {**_good(), "siblings": ["00" * 32, "22" * 32]}),
    ("bitmap and siblings disagree", {**_good(), "bitmap": "e0"}),
    ("trailing zero bitmap byte", {**_good(), "bitmap": "a000"}),
    ("bitmap over 256 bits", {**_good(), "bitmap": "a0" + "00" * 31 + "01"}),
    ("leaf fields on a present proof", {**_good(), "kind": "present"}),
    ("other_leaf with a null value hash", {**_good(), "leaf_value_hash": None}),
    ("present with null leaf fields", {**_good(), "kind": "present", "leaf_key": None}),
    ("siblings not a list", {**_good(), "siblings": "11" * 32}),
]


@pytest.mark.parametrize(
    ("desc", "data"), MALFORMED_JSON, ids=[c[0] for c in MALFORMED_JSON]
)
def test_malformed_json_proofs_are_refused(desc: str, data: object) -> None:
    with pytest.raises(VerificationError) as info:
        StateProof.from_json(data)
    assert info.value.reason == "malformed", desc


def test_malformed_byte_proofs_are_refused() -> None:
    good = StateProof.from_json(_good()).to_bytes()
    for bad in (b"", good + b"\x00", good[:-1], b"\xc1", b"\x90"):
        with pytest.raises(VerificationError) as info:
            StateProof.from_bytes(bad)
        assert info.value.reason == "malformed"


def test_a_proof_at_10_to_the_8_keys_fits_in_1200_bytes() -> None:
    # About 27 levels hold another key at 10^8 keys; paths run ~32 deep.
    bitmap = bytes([0xFF, 0xFF, 0xFF, 0x07])
    proof = StateProof(
        kind=OTHER_LEAF,
        bitmap=bitmap,
        siblings=tuple(sha(bytes([i])) for i in range(27)),
        leaf_key=BASE,
        leaf_value_hash=BASE,
    )
    assert proof.depth == 32
    assert len(proof.to_bytes()) < 1200


def check_vector(root: bytes, case: dict[str, str | dict[str, object] | None]) -> None:
    key, value = case["key"], case["value"]
    assert isinstance(key, str) and (value is None or isinstance(value, str))
    verify_state(
        root,
        bytes.fromhex(key),
        None if value is None else bytes.fromhex(value),
        StateProof.from_json(case["proof"]),
    )


def test_published_vectors() -> None:
    vectors = json.loads(VECTORS.read_text())
    model = {bytes.fromhex(k): bytes.fromhex(v) for k, v in vectors["entries"].items()}
    _, smap = build(model)
    root = bytes.fromhex(vectors["root"])
    assert smap.root == root == ref_root(model)
    for case in vectors["proofs"]:
        if case["want_err"] is None:
            proof = smap.prove(bytes.fromhex(case["key"]))
            assert proof.to_json() == case["proof"], case["desc"]
            check_vector(root, case)
        else:
            with pytest.raises(VerificationError) as info:
                check_vector(root, case)
            assert info.value.reason == case["want_err"], case["desc"]
