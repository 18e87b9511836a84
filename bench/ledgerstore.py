"""A whole ledger store of 10^6 anchors, built block by block, and its sizes.

The store is built the way a node builds it: each block is one
``LedgerStore.apply`` of a signed submission of ``SUB_ENTRIES`` anchors (so
every entry goes through the rules and the state map), then every agency's
node key cosigns the block's checkpoint, which makes it final. The store
sits in a cluster folder made by ``ledger cluster init`` for one agency, so
``bench.restart`` can then start a real node on it.

At each size of ``SAMPLE_SIZES`` reached, proof bundles of documents
anchored so far are sized, in their binary form (``ledger.bundle_binary``,
the figures with a goal) and in compact JSON; bundles grow with the depth
of the trees, so those points are fitted (``bench.fit``) to extrapolate to
sizes nobody can build here. (State proofs are measured at 10^8 keys by
``bench.statesize``.)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import plyvel

from bench import ceiling
from bench.figures import Figure, Results, missing, ratio, since_start, timed
from bench.fit import LogFit
from bench.leaves import LeafMaker
from bench.procs import dir_bytes, free_base_port
from bench.profile import Profile
from ledger.block import Cosignature
from ledger.bundle import build_bundle
from ledger.bundle_binary import decode_bundle, encode_bundle
from ledger.checkpoint import sign_checkpoint
from ledger.keys import SigningKey
from ledger.rules import BatchInput
from ledger.store import LedgerStore
from ledger.submission import encode_submission, sign_submission
from ledger.trust import TrustList
from ledger.verify import verify_bundle

REPO: Final = Path(__file__).resolve().parent.parent
AGENCY: Final = "bench-agency"
SUB_ENTRIES: Final = 10_000  # entries per submission (MAX_ENTRIES)
SAMPLE_SIZES: Final = (10_000, 100_000, 1_000_000, 10_000_000)
SAMPLE_DOCS: Final = 40  # bundles and state proofs sized per sample size
KEEP_DOCS: Final = 2_000  # random anchored doc ids kept for sampling
BUNDLE_TARGET: Final = 10**9
# Even a late start builds this long, so the store reaches 10^5 entries.
MIN_BUILD_S: Final = 30.0


@dataclass(slots=True)
class BuiltStore:
    """What the build left behind for the restart and audit phases."""

    cluster: Path  # the ``ledger cluster init`` folder
    agency: str
    genesis: TrustList
    tree_size: int
    height: int
    raft_index: int
    last_hash: bytes
    apply_seconds: float
    build_seconds: float
    doc_ids: list[bytes] = field(default_factory=list)
    # (tree size, mean bundle bytes): the binary form, and compact JSON.
    bundle_points: list[tuple[int, float]] = field(default_factory=list)
    bundle_json_points: list[tuple[int, float]] = field(default_factory=list)
    complete: bool = True  # False: stopped by the time bound

    @property
    def ledger_path(self) -> Path:
        return self.cluster / self.agency / "data" / "ledger"


def init_cluster(directory: Path, agencies: list[str]) -> None:
    """``ledger cluster init`` on free loopback ports."""
    count = len(agencies)
    base = free_base_port([*range(count), *range(100, 100 + count)])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "cluster",
            "init",
            "--dir",
            str(directory),
            "--agencies",
            ",".join(agencies),
            "--base-port",
            str(base),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )


def build(profile: Profile, tmp: Path) -> BuiltStore:
    """Build the store up to ``profile.ledger_entries`` or the time bound:
    ``ledger_seconds``, or less if the run would overshoot its total."""
    cluster = tmp / "store-cluster"
    init_cluster(cluster, [AGENCY])
    genesis = TrustList.load(cluster / "genesis.json")
    issuer = SigningKey.load(cluster / AGENCY / "issuer.key")
    node_key = SigningKey.load(cluster / AGENCY / "node.key")
    path = cluster / AGENCY / "data" / "ledger"
    path.parent.mkdir(parents=True, exist_ok=True)
    store = LedgerStore.open(path, genesis)
    maker = LeafMaker(issuer=AGENCY)
    rng = random.Random(5)
    built = BuiltStore(
        cluster=cluster,
        agency=AGENCY,
        genesis=genesis,
        tree_size=0,
        height=0,
        raft_index=0,
        last_hash=b"",
        apply_seconds=0.0,
        build_seconds=0.0,
    )
    started = time.perf_counter()
    budget = profile.ledger_seconds
    if profile.total_seconds is not None:
        left = profile.total_seconds - profile.reserve_seconds - since_start()
        budget = max(min(budget, left), MIN_BUILD_S)
    deadline = started + budget
    try:
        while store.tree_size < profile.ledger_entries:
            if time.perf_counter() > deadline:
                built.complete = False
                break
            _one_block(store, built, maker, issuer, node_key, genesis.origin, rng)
            if store.tree_size in SAMPLE_SIZES:
                _sample(store, built, genesis, rng)
        if store.tree_size and store.tree_size not in SAMPLE_SIZES:
            # Stopped between sample sizes: the size reached is a point too.
            _sample(store, built, genesis, rng)
        built.tree_size = store.tree_size
        built.height = store.height
        built.last_hash = store.last_hash
    finally:
        store.close()
    built.build_seconds = time.perf_counter() - started
    return built


def _one_block(
    store: LedgerStore,
    built: BuiltStore,
    maker: LeafMaker,
    issuer: SigningKey,
    node_key: SigningKey,
    origin: str,
    rng: random.Random,
) -> None:
    leaves = maker.leaves(SUB_ENTRIES)
    sub = sign_submission(origin, AGENCY, leaves, issuer)
    batch = BatchInput(
        time_ms=time.time_ns() // 1_000_000, submissions=(encode_submission(sub),)
    )
    built.raft_index += 1
    with timed() as t:
        block = store.apply(batch, raft_index=built.raft_index)
    built.apply_seconds += t.elapsed
    codes = {o.code for o in block.outcomes}
    if codes != {"ok"}:
        raise RuntimeError(f"bench block {block.header.height} rejected: {codes}")
    # The agency's node cosigns, as the node does after each block; with
    # one agency that makes the checkpoint final, so bundles can be built.
    height = block.header.height
    cp = store.checkpoint(height)
    sig = sign_checkpoint(cp, AGENCY, node_key)
    store.add_cosignatures(
        height, [Cosignature(height=height, agency=AGENCY, signature=sig.signature)]
    )
    # Reservoir sampling keeps a uniform sample of every anchored document.
    off = maker.offset
    for n, leaf in enumerate(leaves):
        seen = block.header.first_leaf + n
        if len(built.doc_ids) < KEEP_DOCS:
            built.doc_ids.append(leaf[off : off + 32])
        else:
            slot = rng.randrange(seen + 1)
            if slot < KEEP_DOCS:
                built.doc_ids[slot] = leaf[off : off + 32]


def _sample(
    store: LedgerStore, built: BuiltStore, genesis: TrustList, rng: random.Random
) -> None:
    docs = rng.sample(built.doc_ids, min(SAMPLE_DOCS, len(built.doc_ids)))
    binary_sizes = []
    json_sizes = []
    for n, doc_id in enumerate(docs):
        bundle = build_bundle(store, doc_id)
        binary = encode_bundle(bundle)
        if n == 0:
            # A bundle that does not verify would make its size meaningless,
            # and so would a binary form that verifies otherwise.
            verdict = verify_bundle(bundle, genesis)
            if verdict.status != "valid":
                raise RuntimeError(f"bench bundle verifies as {verdict.status}")
            if verify_bundle(decode_bundle(binary), genesis) != verdict:
                raise RuntimeError("the binary bundle verifies otherwise")
        binary_sizes.append(len(binary))
        text = json.dumps(bundle, separators=(",", ":"))
        json_sizes.append(len(text.encode()))
    size = store.tree_size
    built.bundle_points.append((size, sum(binary_sizes) / len(binary_sizes)))
    built.bundle_json_points.append((size, sum(json_sizes) / len(json_sizes)))


STORE_FIGURES: Final = (
    ("store_apply_entries_per_s", "entries/s", 50_000, True),
    ("stored_bytes_per_leaf", "bytes", 300, False),
    ("disk_bytes_per_document", "bytes", 300, False),
    ("bundle_bytes", "bytes", 3_000, False),
    ("bundle_bytes_at_1e9", "bytes", 3_000, False),
    ("bundle_json_bytes", "bytes", None, False),
)


def not_built(why: str) -> list[Figure]:
    """The store figures when the store could not be built."""
    return [
        missing(name, unit, why, goal=goal, higher_is_better=higher)
        for name, unit, goal, higher in STORE_FIGURES
    ]


def figures(built: BuiltStore, ceilings: Results) -> list[Figure]:
    """Apply rate, disk, bundles and state proofs of the built store."""
    size = built.tree_size
    where = f"{size:,} anchors in {built.height:,} blocks"
    if not built.complete:
        where += " (build stopped by its time bound)"
    logical, disk = _bytes(built.ledger_path)
    rate = size / built.apply_seconds
    out = [
        Figure(
            name="store_apply_entries_per_s",
            value=rate,
            unit="entries/s",
            goal=50_000,
            # Each entry is at least its leaf's put (and its status's).
            ceiling_ratio=ratio(rate, ceilings.value(ceiling.LEVELDB)),
            note=(
                f"LedgerStore.apply of blocks of {SUB_ENTRIES:,}-anchor "
                f"submissions (rules, state map, one synced batch), {where}; "
                "every node does this for every batch, so it bounds "
                "batched_anchors_per_s; ceiling: one LevelDB put per entry"
            ),
        ),
        Figure(
            name="stored_bytes_per_leaf",
            value=logical / size,
            unit="bytes",
            goal=300,
            higher_is_better=False,
            note=f"keys + values in LevelDB before compression, {where}",
        ),
        Figure(
            name="disk_bytes_per_document",
            value=disk / size,
            unit="bytes",
            goal=300,
            higher_is_better=False,
            note=f"LevelDB files after a full compaction, {where}",
        ),
    ]
    out += _bundle_figures(built)
    return out


def _bytes(path: Path) -> tuple[int, int]:
    """(logical key+value bytes, on-disk bytes after compaction)."""
    db = plyvel.DB(str(path))
    try:
        logical = sum(len(k) + len(v) for k, v in db.iterator())
        db.compact_range()
    finally:
        db.close()
    return logical, dir_bytes(path)


def _bundle_figures(built: BuiltStore) -> list[Figure]:
    if not built.bundle_points:
        why = "the store build reached no sample size"
        return [
            Figure(name="bundle_bytes", value=None, unit="bytes", note=why),
            Figure(name="bundle_bytes_at_1e9", value=None, unit="bytes", note=why),
            Figure(name="bundle_json_bytes", value=None, unit="bytes", note=why),
        ]
    size, last = built.bundle_points[-1]
    _, last_json = built.bundle_json_points[-1]
    points = ", ".join(f"{n:,}: {b:.0f}" for n, b in built.bundle_points)
    fit = LogFit.of(built.bundle_points)
    return [
        Figure(
            name="bundle_bytes",
            value=last,
            unit="bytes",
            goal=3_000,
            higher_is_better=False,
            note=(
                f"mean binary size (ledger.bundle_binary) of {SAMPLE_DOCS} "
                f"bundles of valid documents at {size:,} entries"
            ),
        ),
        Figure(
            name="bundle_bytes_at_1e9",
            value=fit.at(BUNDLE_TARGET),
            unit="bytes",
            goal=3_000,
            higher_is_better=False,
            note=(
                f"EXTRAPOLATED, not measured: binary bundle sizes at {points} "
                f"entries fitted as {fit.describe()}, evaluated at 10^9 entries"
            ),
        ),
        Figure(
            name="bundle_json_bytes",
            value=last_json,
            unit="bytes",
            higher_is_better=False,
            note=(
                f"the same {SAMPLE_DOCS} bundles as bundle_bytes in compact JSON "
                f"(the API's default form), at {size:,} entries"
            ),
        ),
    ]
