"""The after-replay half of the audit: checkpoints, proofs, documents.

Runs once the auditor's own chain is complete (``Replay``): finality and
the consistency of final checkpoints, the served and the kept checkpoint, a
sample of served proofs, and the served status of each document.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from cli.audit_replay import Replay, history_leaves
from cli.audit_report import AuditError, DocumentsProgress, KeptCheckpoint
from ledger.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from ledger.errors import VerificationError
from ledger.keys import key_id
from ledger.merkle import verify_consistency
from ledger.note import Signature, format_note, parse_note
from ledger.status import StatusRecord


def check_finals(
    replay: Replay, served_note: str | None, keep: KeptCheckpoint | None
) -> None:
    """Finality, consistency of finals, the served and the kept checkpoint."""
    report, store = replay.report, replay.store

    # (1): finals in the carried record, each consistent with the one before.
    previous: Checkpoint | None = None
    finals = replay.finals()
    report.final_checkpoints = len(finals)
    for height in finals:
        cp = store.checkpoint(height)
        _check_consistent(replay, previous, cp)
        previous = cp

    # (2): the served final checkpoint: a quorum of the trust list of its
    # height, and exactly the re-derived checkpoint of that height.
    newest = previous
    if served_note is not None:
        cp = _verify_served_note(replay, served_note)
        if newest is None or cp.height > newest.height:
            _check_consistent(replay, newest, cp)
            newest = cp
        report.final_note = served_note
    elif previous is not None:
        report.final_note = _note_from_record(replay, previous.height)
    report.final_height = None if newest is None else newest.height

    # (3): the kept checkpoint. A history rewritten from some height on is
    # self-consistent; only an earlier verified checkpoint shows it.
    if keep is None:
        return
    if keep.chain_id != report.chain_id:
        raise AuditError("tampered", "the kept checkpoint is of another chain")
    kept = keep.checkpoint
    report.kept_height = kept.height
    if kept.height > store.height:
        raise AuditError(
            "tampered",
            f"the source's chain ends at {store.height}, below the kept "
            f"checkpoint's height {kept.height} (history truncated)",
            height=kept.height,
        )
    mine = store.checkpoint(kept.height)
    if mine.body() != kept.body():
        raise AuditError(
            "tampered",
            "history rewritten: the kept checkpoint has root "
            f"{kept.root.hex()} and block hash {kept.block_hash.hex()}, the "
            f"source's chain {mine.root.hex()} and {mine.block_hash.hex()}",
            height=kept.height,
        )
    if newest is not None:
        _check_consistent(replay, kept, newest)


def _verify_served_note(replay: Replay, note: str) -> Checkpoint:
    store = replay.store
    try:
        parsed = parse_checkpoint(parse_note(note).text)
    except VerificationError as exc:
        raise AuditError("malformed", f"served checkpoint: {exc}") from None
    h = parsed.height
    if not 1 <= h <= store.height:
        raise AuditError(
            "tampered",
            f"served checkpoint at height {h}, the chain has {store.height}",
            height=h,
        )
    trust = replay.trust_at(h)
    try:
        cp, _ = verify_checkpoint(
            note, trust.note_verifiers(), trust.quorum, origin=trust.origin
        )
    except VerificationError as exc:
        raise AuditError(
            "tampered", f"served final checkpoint: {exc.message}", height=h
        ) from None
    mine = store.checkpoint(h)
    if mine.body() != cp.body():
        raise AuditError(
            "tampered",
            "served final checkpoint differs from the re-derived one "
            f"(root {cp.root.hex()} vs {mine.root.hex()})",
            height=h,
        )
    return cp


def _check_consistent(
    replay: Replay, older: Checkpoint | None, newer: Checkpoint
) -> None:
    """The source's consistency proof from ``older`` to ``newer`` holds."""
    if older is None or older.size == 0 or newer.size <= older.size:
        return
    proof = replay.source.consistency_proof(older.size, newer.size)
    try:
        verify_consistency(older.size, newer.size, proof, older.root, newer.root)
    except VerificationError as exc:
        raise AuditError(
            "tampered",
            f"checkpoint at height {newer.height} is not consistent with the one "
            f"at height {older.height}: {exc.message}",
            height=newer.height,
        ) from None
    replay.report.consistency_proofs += 1


def _note_from_record(replay: Replay, height: int) -> str:
    """The signed note of checkpoint ``height`` made of the carried
    cosignatures that verified under the trust list of that height (the ones
    that made it final), so it verifies under that trust list."""
    trust = replay.trust_at(height)
    lines = [
        Signature(agency, key_id(agency, trust.agency(agency).node_key), sig)
        for agency, sig in sorted(replay.signed[height].items())
    ]
    return format_note(replay.store.checkpoint(height).body(), lines)


def sample_proofs(replay: Replay, count: int, rng: random.Random) -> None:
    """Served proofs for random leaves and sizes equal the re-derived ones."""
    store, source = replay.store, replay.source
    size = store.tree_size
    if size == 0 or count <= 0:
        return
    sizes = sorted({store.header(h).tree_size for h in range(1, store.height + 1)})
    sizes = [s for s in sizes if s > 0]
    for _ in range(count):
        second = rng.choice(sizes)
        index = rng.randrange(second)
        served = source.inclusion_proof(index, second)
        if served != store.inclusion_proof(index, second):
            raise AuditError(
                "tampered",
                f"served inclusion proof at size {second} differs from the "
                "re-derived tree (a stored subtree hash is wrong)",
                leaf=index,
            )
        replay.report.inclusion_proofs += 1
        first = rng.choice([s for s in sizes if s <= second])
        if first < second:
            served = source.consistency_proof(first, second)
            if served != store.consistency_proof(first, second):
                raise AuditError(
                    "tampered",
                    f"served consistency proof {first} -> {second} differs from "
                    "the re-derived tree",
                )
            replay.report.consistency_proofs += 1


DOCUMENTS_TICK: Final = 100  # documents between two progress calls


def check_documents(
    replay: Replay,
    limit: int | None,
    rng: random.Random,
    *,
    progress: DocumentsProgress | None = None,
    replay_to: Callable[[int], None] | None = None,
) -> None:
    """The served status of each document (a sample of ``limit``) is the
    re-derived one. A document served as of a block the replay has not
    reached (``as_of_block``) is compared once ``replay_to`` replayed the
    chain up to it."""
    # A copy: the documents known when the check begins. The replay's list
    # grows as replay_to replays more blocks, and the check must end on a
    # live chain (later documents are for the next audit).
    ids = list(replay.doc_ids)
    if limit is not None and limit < len(ids):
        ids = rng.sample(ids, limit)
    for n, doc_id in enumerate(ids):
        if progress is not None and n % DOCUMENTS_TICK == 0:
            progress(n, len(ids))
        served = replay.source.document(doc_id)
        as_of = served.get("as_of_block") if isinstance(served, Mapping) else None
        if replay_to is not None and type(as_of) is int and as_of > replay.store.height:
            replay_to(as_of)
        mine = replay.store.status(doc_id)
        problem = _status_difference(doc_id, mine, served, _now_ms())
        if problem is None and mine is not None and served is not None:
            problem = _history_difference(replay, doc_id, served)
        if problem is not None:
            raise AuditError(
                "tampered",
                f"document {doc_id.hex()}: {problem}",
                leaf=None if mine is None else mine.leaf,
            )
        replay.report.documents += 1
    if progress is not None:
        progress(len(ids), len(ids))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# A node serves a valid document as expired or not yet valid by its own
# clock when it answers; the auditor's may differ by this much.
CLOCK_TOLERANCE_MS: Final = 5 * 60 * 1000
# The order a valid document's served status moves in, as time passes.
_BY_TIME: Final = ("not_yet_valid", "valid", "expired")


def _statuses_near(rec: StatusRecord, now: int) -> tuple[str, ...]:
    """The statuses a node may serve for ``rec`` with its clock within the
    tolerance of ``now``."""
    if rec.status != "valid":
        return (rec.status,)
    first = _BY_TIME.index(rec.shown_status(now - CLOCK_TOLERANCE_MS))
    last = _BY_TIME.index(rec.shown_status(now + CLOCK_TOLERANCE_MS))
    return _BY_TIME[first : last + 1]


def _status_difference(
    doc_id: bytes, mine: StatusRecord | None, served: object, now: int
) -> str | None:
    if mine is None and served is None:
        return None
    if served is not None and not isinstance(served, Mapping):
        return f"served {type(served).__name__}, not a JSON object"
    if mine is None or served is None:
        return f"served {served!r}, re-derived {mine!r}"
    status = served.get("status")
    allowed = _statuses_near(mine, now)
    if status not in allowed:
        return f"served status {status!r}, re-derived {' or '.join(allowed)}"
    expected: dict[str, object] = {
        "doc_id": doc_id.hex(),
        "issuer": mine.issuer,
        "doc_type": mine.doc_type,
        "issued_at": mine.issued_at,
        "valid_from": mine.valid_from,
        "valid_until": mine.valid_until,
        "revoked_at": mine.revoked_at,
        "reason": mine.reason,
        "superseded_by": _hex_or_none(mine.superseded_by),
        "leaf": mine.leaf,
    }
    for name, value in expected.items():
        if name not in served:
            return f"served no {name}, re-derived {value!r}"
        # The same type too: 1 == True, and a served true is no leaf index.
        if served[name] != value or type(served[name]) is not type(value):
            return f"served {name} {served[name]!r}, re-derived {value!r}"
    return None


def _history_difference(
    replay: Replay, doc_id: bytes, served: Mapping[str, Any]
) -> str | None:
    history = served.get("history")
    if not isinstance(history, list):
        return f"served history {history!r}, not a list"
    theirs = history_leaves(served)
    ours = [leaf for leaf, *_ in replay.store.history(doc_id)]
    if theirs != ours or len(history) != len(ours):
        return f"served history leaves {theirs}, re-derived {ours}"
    return None


def _hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
