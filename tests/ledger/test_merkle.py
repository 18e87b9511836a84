"""The RFC 9162 log: public probes, exhaustive small trees, properties."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import RootMismatchError, StorageError, VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    DictNodeStore,
    MerkleLog,
    TreeLevels,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import SHARED_TESTDATA

# Exhaustive checks cover every tree up to this size; flipped sizes may
# reach just under twice it, so the shared log holds that many leaves.
SMALL = 300
LOG_LEAVES = 2 * SMALL
FAST = settings(max_examples=60, deadline=None)


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _vector_files(kind: str) -> list[str]:
    base = SHARED_TESTDATA / "merkle"
    return sorted(str(p.relative_to(base)) for p in (base / kind).glob("*/**/*.json"))


def _load(testdata: Path, relative: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (testdata / "merkle" / relative).read_text(encoding="utf-8")
    )
    return data


def _hashes(value: object) -> list[bytes]:
    assert value is None or isinstance(value, list)
    return [_b64(str(h)) for h in value or []]


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


class _Tree(NamedTuple):
    leaves: list[bytes]
    store: DictNodeStore
    log: MerkleLog
    roots: list[bytes]  # roots[n] = root_of(leaves[:n])


@functools.cache
def _tree() -> _Tree:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(LOG_LEAVES)]
    store = DictNodeStore()
    log = MerkleLog(store, 0)
    store.put(log.append(leaves))
    roots = [root_of(leaves[:n]) for n in range(LOG_LEAVES + 1)]
    return _Tree(leaves, store, log, roots)


def _fails(check: functools.partial[None]) -> bool:
    try:
        check()
    except VerificationError:
        return True
    return False


# --- public probes (transparency-dev/merkle) ----------------------------------


def test_every_probe_file_is_collected(testdata: Path) -> None:
    base = testdata / "merkle"
    on_disk = sorted(str(p.relative_to(base)) for p in base.rglob("*.json"))
    collected = _vector_files("inclusion") + _vector_files("consistency")
    assert on_disk == sorted(collected)
    assert len(on_disk) > 150


@pytest.mark.parametrize("relative", _vector_files("inclusion"))
def test_inclusion_probe_outcome(testdata: Path, relative: str) -> None:
    case = _load(testdata, relative)
    check = functools.partial(
        verify_inclusion,
        _b64(str(case["leafHash"])),
        _int(case["leafIdx"]),
        _int(case["treeSize"]),
        _hashes(case["proof"]),
        _b64(str(case["root"])),
    )
    assert _fails(check) is case["wantErr"], case["desc"]


@pytest.mark.parametrize("relative", _vector_files("consistency"))
def test_consistency_probe_outcome(testdata: Path, relative: str) -> None:
    case = _load(testdata, relative)
    check = functools.partial(
        verify_consistency,
        _int(case["size1"]),
        _int(case["size2"]),
        _hashes(case["proof"]),
        _b64(str(case["root1"])),
        _b64(str(case["root2"])),
    )
    assert _fails(check) is case["wantErr"], case["desc"]


# The probes' 8-leaf tree is the RFC 6962 reference tree over these inputs.
RFC6962_INPUTS = (
    *("", "00", "10", "2021", "3031", "40414243", "5051525354555657"),
    "606162636465666768696a6b6c6d6e6f",
)


def test_generated_proofs_equal_the_probes(testdata: Path) -> None:
    leaves = [leaf_hash(bytes.fromhex(x)) for x in RFC6962_INPUTS]
    store = DictNodeStore()
    log = MerkleLog(store, 0)
    store.put(log.append(leaves))
    for relative in ("inclusion/1/happy-path.json", "inclusion/2/happy-path.json"):
        case = _load(testdata, relative)
        index = _int(case["leafIdx"])
        assert leaves[index] == _b64(str(case["leafHash"]))
        assert root_of(leaves) == log.root() == _b64(str(case["root"]))
        assert inclusion_path(leaves, index) == _hashes(case["proof"])
        assert log.inclusion_proof(index, 8) == _hashes(case["proof"])
    case = _load(testdata, "consistency/2/happy-path.json")
    assert log.root(6) == _b64(str(case["root1"]))
    assert log.consistency_proof(6, 8) == _hashes(case["proof"])


# --- hashing ------------------------------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(b"") != EMPTY_ROOT
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) != node_hash(b, a)
    assert root_of([]) == EMPTY_ROOT
    assert root_of([a]) == a
    assert root_of([a, b]) == node_hash(a, b)


def test_root_of_splits_at_the_largest_power_of_two_below_n() -> None:
    leaves = _tree().leaves[:7]
    left = node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3]))
    right = node_hash(node_hash(leaves[4], leaves[5]), leaves[6])
    assert root_of(leaves) == node_hash(left, right)


# --- exhaustive small trees ---------------------------------------------------


def test_every_inclusion_proof_up_to_300_leaves_verifies() -> None:
    tree = _tree()
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = tree.log.inclusion_proof(index, size)
            verify_inclusion(tree.leaves[index], index, size, proof, tree.roots[size])
        assert tree.log.root(size) == tree.roots[size]


def test_stored_and_in_memory_paths_agree() -> None:
    # inclusion_path costs O(size) per call, so a sample of sizes suffices
    # next to the exhaustive check above.
    tree = _tree()
    for size in [*range(1, 70), 127, 128, 129, 255, 256, 257, 299, 300]:
        batch = tree.leaves[:size]
        for index in range(size):
            want = inclusion_path(batch, index)
            assert tree.log.inclusion_proof(index, size) == want


def test_a_path_above_a_node_completes_the_path_below_it() -> None:
    tree = _tree()
    for size in [*range(1, 40), 127, 128, 129, 299, 300]:
        for level in range(4):
            for node in range(size >> level):
                below = tree.leaves[node << level : (node + 1) << level]
                for offset in range(len(below)):
                    index = (node << level) + offset
                    path = inclusion_path(below, offset)
                    path += tree.log.path_above(level, node, size)
                    assert path == tree.log.inclusion_proof(index, size)
    for args in [(0, 5, 5), (2, 1, 7), (0, -1, 5), (0, 0, LOG_LEAVES + 1)]:
        with pytest.raises(ValueError):
            tree.log.path_above(*args)


def test_kept_levels_give_the_same_paths() -> None:
    tree = _tree()
    for size in [*range(1, 70), 127, 128, 129, 255, 256, 257, 299, 300]:
        batch = tree.leaves[:size]
        levels = TreeLevels(batch)
        for index in range(size):
            assert levels.path(index) == inclusion_path(batch, index)
    with pytest.raises(ValueError):
        TreeLevels([]).path(0)


def test_every_consistency_proof_up_to_300_leaves_verifies() -> None:
    tree = _tree()
    for second in range(1, SMALL + 1):
        for first in range(1, second + 1):
            proof = tree.log.consistency_proof(first, second)
            verify_consistency(
                first, second, proof, tree.roots[first], tree.roots[second]
            )


def test_append_returns_each_perfect_subtree_once_with_its_hash() -> None:
    tree = _tree()
    store = DictNodeStore()
    log = MerkleLog(store, 0)
    nodes = [
        n
        for chunk in range(0, 100, 7)
        for n in log.append(tree.leaves[chunk : min(chunk + 7, 100)])
    ]
    ids = [(level, index) for level, index, _ in nodes]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        (level, index) for level in range(7) for index in range(100 >> level)
    }
    for level, index, h in nodes:
        assert h == root_of(tree.leaves[index << level : (index + 1) << level])


# --- properties at larger sizes -----------------------------------------------


@FAST
@given(chunks=st.lists(st.integers(1, 420), min_size=1, max_size=12), data=st.data())
def test_appends_in_any_chunks_agree_with_root_of(
    chunks: list[int], data: st.DataObject
) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(sum(chunks))]
    store = DictNodeStore()
    log = MerkleLog(store, 0)
    done = 0
    for size in chunks:
        store.put(log.append(leaves[done : done + size]))
        done += size
        assert log.size == done
        assert log.root() == root_of(leaves[:done])
    older = data.draw(st.integers(0, done), label="older")
    assert log.root(older) == root_of(leaves[:older])
    index = data.draw(st.integers(0, done - 1), label="index")
    proof = log.inclusion_proof(index, done)
    verify_inclusion(leaves[index], index, done, proof, log.root())
    if older:
        proof = log.consistency_proof(older, done)
        verify_consistency(older, done, proof, log.root(older), log.root())


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@FAST
@given(data=st.data())
def test_one_bit_change_to_an_inclusion_claim_fails(data: st.DataObject) -> None:
    tree = _tree()
    size = data.draw(st.integers(1, SMALL), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf, root = tree.leaves[index], tree.roots[size]
    proof = tree.log.inclusion_proof(index, size)
    targets = ["leaf", "root", "index"] + (["proof"] if proof else [])
    target = data.draw(st.sampled_from(targets), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    elif target == "index":
        index ^= 1 << (bit % (size.bit_length() + 1))
    else:
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        proof[at] = _flip(proof[at], bit)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


@FAST
@given(data=st.data())
def test_one_bit_change_to_a_consistency_claim_fails(data: st.DataObject) -> None:
    tree = _tree()
    second = data.draw(st.integers(2, SMALL), label="second")
    first = data.draw(st.integers(1, second - 1), label="first")
    roots = [tree.roots[first], tree.roots[second]]
    proof = tree.log.consistency_proof(first, second)
    target = data.draw(st.sampled_from(["root1", "root2", "first", "proof"]))
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == "first":
        first ^= 1 << (bit % (second.bit_length() + 1))
    elif target == "proof":
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        proof[at] = _flip(proof[at], bit)
    else:
        which = 1 if target == "root2" else 0
        roots[which] = _flip(roots[which], bit)
    with pytest.raises(VerificationError):
        verify_consistency(first, second, proof, roots[0], roots[1])


# The same one-bit changes at random sizes past the exhaustive range.
LARGE = 5000


@functools.cache
def _large_tree() -> _Tree:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(LARGE)]
    store = DictNodeStore()
    log = MerkleLog(store, 0)
    store.put(log.append(leaves))
    return _Tree(leaves, store, log, [])


@FAST
@given(data=st.data())
def test_one_bit_change_at_larger_sizes_fails(data: st.DataObject) -> None:
    tree = _large_tree()
    size = data.draw(st.integers(SMALL + 1, LARGE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    first = data.draw(st.integers(1, size - 1), label="first")
    leaf, root = tree.leaves[index], tree.log.root(size)
    first_root = tree.log.root(first)
    proof = tree.log.inclusion_proof(index, size)
    consistency = tree.log.consistency_proof(first, size)
    verify_inclusion(leaf, index, size, proof, root)
    verify_consistency(first, size, consistency, first_root, root)
    bit = data.draw(st.integers(0, 255), label="bit")
    target = data.draw(
        st.sampled_from(["leaf", "root", "index", "proof", "first", "cproof", "root1"])
    )
    at = data.draw(st.integers(0, 63), label="at")
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    elif target == "index":
        index ^= 1 << (bit % (size.bit_length() + 1))
    elif target == "proof":
        proof[at % len(proof)] = _flip(proof[at % len(proof)], bit)
    elif target == "first":
        first ^= 1 << (bit % (size.bit_length() + 1))
    elif target == "cproof":
        where = at % len(consistency)
        consistency[where] = _flip(consistency[where], bit)
    else:
        first_root = _flip(first_root, bit)
    if target in ("leaf", "root", "index", "proof"):
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, index, size, proof, root)
    if target in ("root", "first", "cproof", "root1"):
        with pytest.raises(VerificationError):
            verify_consistency(first, size, consistency, first_root, root)


# A proof carries no size of its own: the verifier only learns from a size
# how to combine the hashes, and the signed checkpoint binds the size to its
# root. So a flipped tree size (or second size) is caught exactly when it
# changes how the proof combines, which shows as: the claim with the flipped
# size passes iff the flipped size's genuine proof passes under the true size.


@FAST
@given(data=st.data())
def test_flipped_tree_size_passes_only_where_indistinguishable(
    data: st.DataObject,
) -> None:
    tree = _tree()
    size = data.draw(st.integers(1, SMALL), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    other = size ^ (1 << data.draw(st.integers(0, SMALL.bit_length() - 1)))
    leaf = tree.leaves[index]
    passes = not _fails(
        functools.partial(
            verify_inclusion,
            leaf,
            index,
            other,
            tree.log.inclusion_proof(index, size),
            tree.roots[size],
        )
    )
    if other <= index:
        assert not passes
        return
    mirrored = not _fails(
        functools.partial(
            verify_inclusion,
            leaf,
            index,
            size,
            tree.log.inclusion_proof(index, other),
            tree.roots[other],
        )
    )
    assert passes is mirrored


@FAST
@given(data=st.data())
def test_flipped_second_size_passes_only_where_indistinguishable(
    data: st.DataObject,
) -> None:
    tree = _tree()
    second = data.draw(st.integers(2, SMALL), label="second")
    first = data.draw(st.integers(1, second - 1), label="first")
    other = second ^ (1 << data.draw(st.integers(0, SMALL.bit_length() - 1)))
    roots = tree.roots
    proof = tree.log.consistency_proof(first, second)
    passes = not _fails(
        functools.partial(
            verify_consistency, first, other, proof, roots[first], roots[second]
        )
    )
    if other < first:
        assert not passes
        return
    mirrored = not _fails(
        functools.partial(
            verify_consistency,
            first,
            second,
            tree.log.consistency_proof(first, other),
            roots[first],
            roots[other],
        )
    )
    assert passes is mirrored


def test_a_flipped_size_can_pass_when_it_does_not_change_the_proof() -> None:
    # Pins the limitation above: leaf 0 of 5 and of 7 combine the same way.
    tree = _tree()
    proof = tree.log.inclusion_proof(0, 5)
    verify_inclusion(tree.leaves[0], 0, 7, proof, tree.roots[5])


# --- verifier edges -----------------------------------------------------------


def test_root_mismatch_carries_expected_and_computed() -> None:
    tree = _tree()
    proof = tree.log.inclusion_proof(3, 10)
    with pytest.raises(RootMismatchError) as caught:
        verify_inclusion(tree.leaves[3], 3, 10, proof, tree.roots[9])
    assert caught.value.expected == tree.roots[9]
    assert caught.value.computed == tree.roots[10]
    assert caught.value.reason == "tampered"
    assert root_from_inclusion(tree.leaves[3], 3, 10, proof) == tree.roots[10]


@pytest.mark.parametrize(
    ("index", "size"), [(-1, 5), (5, 5), (0, 0), (2**64 - 1, 1), (0, -3)]
)
def test_out_of_range_inclusion_is_a_verification_error(index: int, size: int) -> None:
    with pytest.raises(VerificationError, match="outside"):
        root_from_inclusion(_tree().leaves[0], index, size, [])


@pytest.mark.parametrize(("first", "second"), [(0, 0), (0, 4), (-1, 4), (5, 4)])
def test_impossible_consistency_sizes_are_verification_errors(
    first: int, second: int
) -> None:
    root = _tree().roots[4]
    with pytest.raises(VerificationError, match="no consistency proof"):
        verify_consistency(first, second, [], root, root)


def test_short_hashes_are_refused_before_hashing() -> None:
    tree = _tree()
    proof = tree.log.inclusion_proof(1, 4)
    proof[0] = proof[0][:31]
    with pytest.raises(VerificationError, match=r"proof\[0\] is 31 bytes"):
        verify_inclusion(tree.leaves[1], 1, 4, proof, tree.roots[4])
    with pytest.raises(VerificationError, match="leaf hash is 31 bytes"):
        verify_inclusion(tree.leaves[0][:31], 0, 1, [], tree.roots[1])
    with pytest.raises(VerificationError, match="first root is 3 bytes"):
        verify_consistency(2, 4, [tree.roots[4]], b"abc", tree.roots[4])


# --- MerkleLog over a store ---------------------------------------------------


class _CountingReader:
    """A ``NodeReader`` that counts reads and can refuse them all."""

    def __init__(self, store: DictNodeStore) -> None:
        self.store = store
        self.reads = 0
        self.refuse = False

    def node(self, level: int, index: int) -> bytes:
        if self.refuse:
            raise AssertionError(f"unexpected read level={level} index={index}")
        self.reads += 1
        return self.store.node(level, index)


class _NoLeafLevelReader:
    """Like the LevelDB store: level 0 is derived from the leaves, not kept."""

    def __init__(self, leaves: Sequence[bytes], store: DictNodeStore) -> None:
        self.leaves = leaves
        self.store = store

    def node(self, level: int, index: int) -> bytes:
        if level == 0:
            return self.leaves[index]
        return self.store.node(level, index)


def test_append_and_current_root_read_nothing() -> None:
    tree = _tree()
    reader = _CountingReader(tree.store)
    log = MerkleLog(reader, 77)
    assert reader.reads == bin(77).count("1")
    reader.refuse = True
    for start in range(77, LOG_LEAVES, 61):
        log.append(tree.leaves[start : start + 61])
        assert log.root() == tree.roots[log.size]


def test_older_roots_at_peak_boundaries_are_served_from_memory() -> None:
    tree = _tree()
    reader = _CountingReader(tree.store)
    log = MerkleLog(reader, 300)  # peaks end at 256, 288, 296 and 300
    reader.refuse = True
    for size in (256, 288, 296, 300):
        assert log.root(size) == tree.roots[size]


def test_proofs_read_logarithmically_many_nodes() -> None:
    tree = _tree()
    reader = _CountingReader(tree.store)
    log = MerkleLog(reader, LOG_LEAVES)
    for size in range(1, LOG_LEAVES + 1, 37):
        for index in range(0, size, 13):
            reader.reads = 0
            log.inclusion_proof(index, size)
            assert reader.reads <= 2 * size.bit_length()
        reader.reads = 0
        log.consistency_proof(max(size // 3, 1), size)
        assert reader.reads <= 2 * size.bit_length() + 1


def test_reopened_log_gives_the_same_roots_and_proofs() -> None:
    tree = _tree()
    for size in (1, 2, 3, 64, 127, 200, 299):
        reopened = MerkleLog(tree.store, size)
        assert reopened.root() == tree.roots[size]
        assert reopened.root(size // 2) == tree.roots[size // 2]
        for index in range(0, size, 11):
            want = tree.log.inclusion_proof(index, size)
            assert reopened.inclusion_proof(index, size) == want
        for first in range(1, size + 1, 7):
            want = tree.log.consistency_proof(first, size)
            assert reopened.consistency_proof(first, size) == want


def test_reopened_log_continues_appending_without_leaf_level_nodes() -> None:
    tree = _tree()
    store = DictNodeStore()
    first = MerkleLog(store, 0)
    # Persist as the LevelDB store does: everything but level 0.
    store.put(n for n in first.append(tree.leaves[:150]) if n[0] > 0)
    reopened = MerkleLog(_NoLeafLevelReader(tree.leaves, store), 150)
    store.put(n for n in reopened.append(tree.leaves[150:SMALL]) if n[0] > 0)
    assert reopened.root() == tree.roots[SMALL]
    assert reopened.root(149) == tree.roots[149]
    proof = reopened.inclusion_proof(149, SMALL)
    verify_inclusion(tree.leaves[149], 149, SMALL, proof, tree.roots[SMALL])


def test_caller_bugs_raise_value_error() -> None:
    log = _tree().log
    calls: list[Callable[[], object]] = [
        lambda: log.inclusion_proof(5, 5),
        lambda: log.inclusion_proof(-1, 5),
        lambda: log.inclusion_proof(0, LOG_LEAVES + 1),
        lambda: log.consistency_proof(0, 5),
        lambda: log.consistency_proof(6, 5),
        lambda: log.consistency_proof(1, LOG_LEAVES + 1),
        lambda: log.root(LOG_LEAVES + 1),
        lambda: log.root(-1),
        lambda: inclusion_path([], 0),
        lambda: MerkleLog(DictNodeStore(), -1),
        lambda: MerkleLog(DictNodeStore(), 0).append([b"short"]),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_rejected_append_adds_nothing() -> None:
    log = MerkleLog(DictNodeStore(), 0)
    with pytest.raises(ValueError):
        log.append([leaf_hash(b"ok"), b"short"])
    assert log.size == 0
    assert log.root() == EMPTY_ROOT


def test_missing_node_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="level=3 index=1"):
        DictNodeStore().node(3, 1)
