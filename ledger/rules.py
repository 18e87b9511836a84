"""The ledger rules: the deterministic apply of one committed batch.

Theory of operation. Every node applies the same batch (the leader's time and
the submissions' bytes, as committed by Raft) to the same state, so every
rule here depends on nothing but ``view``, ``batch``, ``log`` and ``smap``:
no clock, no randomness, no iteration over unordered sets. Identical input
gives an identical block hash on every node.

Submissions are taken in order. Each is accepted whole or rejected whole:
its changes are staged in a ``_Pending`` layered over the batch's
``_Overlay``, which is layered over the view; only when every entry passed
are they merged into the overlay. So a rejected submission changes nothing
but its nonce, while an accepted one is visible to every later submission of
the batch (a doc id anchored earlier in the batch cannot be anchored again, a
governance entry's new trust list is in force for what follows). The nonce
of a submission whose signature and time held is spent even if an entry
then fails: its bytes are public in the block, and a copy posted again must
be a replay, not one more rejected block charged to its agency.

Checks, in order, each with its reason code (the first failure decides):
submission: ``malformed``, ``unknown_agency``, ``unknown_key``,
``bad_signature``, ``replay``, ``timestamp_window``, ``too_many_entries``;
then per entry: ``malformed``, ``not_issuer`` and the kind's own rules.

Throughput: one signature check per submission; per entry only decoding,
the rule checks and one leaf hash (reused for the batch root and the log).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from ledger.block import OK, Block, BlockHeader, Cosignature, Outcome, body_hash
from ledger.codec import Field, check_record, get_int, get_list, pack, unpack
from ledger.entries import (
    Anchor,
    Entry,
    Governance,
    Record,
    Revoke,
    Supersede,
    decode_entry,
    record_key,
)
from ledger.errors import EncodingError, RuleViolation, VerificationError
from ledger.merkle import MerkleLog, leaf_hash, root_of
from ledger.status import StatusRecord
from ledger.submission import (
    MAX_ENTRIES,
    Submission,
    check_signature,
    decode_submission,
    find_issuer_key,
)
from ledger.trust import AgencyInfo, TrustList, verify_governance_approvals

# A submission's timestamp may differ from the batch time by this much
# either way; together with the nonce it bounds replays.
TIMESTAMP_WINDOW_MS: Final = 300_000


class StateView(Protocol):
    """Read access to the ledger as of the last applied block."""

    @property
    def trust(self) -> TrustList: ...
    @property
    def height(self) -> int: ...  # 0 before the first block
    @property
    def tree_size(self) -> int: ...
    @property
    def last_hash(self) -> bytes: ...  # the chain id before the first block

    def status(self, key: bytes) -> StatusRecord | None: ...
    def nonce_seen(self, agency: str, nonce: bytes) -> bool: ...


class StateWriter(Protocol):
    """What the rules need of ``ledger.statemap.StateMap``."""

    @property
    def root(self) -> bytes: ...

    def update(
        self,
        items: Mapping[bytes, bytes | None],
        *,
        before: dict[bytes, bytes | None] | None = None,
    ) -> tuple[bytes, dict[bytes, bytes | None]]: ...


BATCH_FIELDS: Final = (
    Field("time", int),
    Field("submissions", list),
    Field("cosignatures", list),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchInput:
    """One Raft entry's worth of work: the leader's time and what it carries."""

    time_ms: int
    submissions: tuple[bytes, ...]  # encoded submissions, in order
    cosignatures: tuple[Cosignature, ...] = ()

    def encode(self) -> bytes:
        return pack(
            {
                "time": self.time_ms,
                "submissions": list(self.submissions),
                "cosignatures": [c.to_value() for c in self.cosignatures],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> BatchInput:
        """Parse a batch; EncodingError unless canonical and well-formed.

        The submissions stay bytes: a bad one is a rejected submission, not
        a bad batch.
        """
        rec = check_record(unpack(data), BATCH_FIELDS, "batch")
        subs = get_list(rec, "submissions")
        raw = [s for s in subs if isinstance(s, bytes)]
        if len(raw) != len(subs):
            raise EncodingError("batch: a submission is not bytes")
        return cls(
            time_ms=get_int(rec, "time"),
            submissions=tuple(raw),
            cosignatures=tuple(
                Cosignature.from_value(v) for v in get_list(rec, "cosignatures")
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """Everything one block changes; the store writes it all in one batch."""

    block: Block
    leaves: list[bytes]  # leaf bytes, indices [first_leaf, tree_size)
    log_nodes: list[tuple[int, int, bytes]]  # MerkleLog.append output
    state: dict[bytes, StatusRecord]  # final status of every changed key
    state_writes: dict[bytes, bytes | None]  # StateMap.update node writes
    # Stored bytes (None: absent) the state map read before writing them;
    # keys it wrote without reading are not here.
    state_before: dict[bytes, bytes | None]
    nonces: list[tuple[str, bytes, int]]  # (agency, nonce, timestamp_ms)
    history: list[tuple[bytes, int]]  # (state key, leaf index) per change
    trust: TrustList  # in force after the block


@dataclass(slots=True)
class _Overlay:
    """The accepted changes of the batch so far, over the view."""

    view: StateView
    trust: TrustList
    next_leaf: int
    state: dict[bytes, StatusRecord] = field(default_factory=dict)
    nonces: set[tuple[str, bytes]] = field(default_factory=set)
    nonce_list: list[tuple[str, bytes, int]] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    history: list[tuple[bytes, int]] = field(default_factory=list)

    def status(self, key: bytes) -> StatusRecord | None:
        rec = self.state.get(key)
        return rec if rec is not None else self.view.status(key)

    def spend(self, sub: Submission) -> None:
        """``sub``'s nonce is used, whether its entries pass or not."""
        self.nonces.add((sub.agency, sub.nonce))
        self.nonce_list.append((sub.agency, sub.nonce, sub.timestamp_ms))

    def merge(self, p: _Pending) -> None:
        sub = p.sub
        self.state.update(p.state)
        self.trust = p.trust
        self.leaves.extend(sub.entries)
        self.hashes.extend(p.hashes)
        self.history.extend(p.history)
        self.next_leaf += len(sub.entries)


@dataclass(slots=True)
class _Pending:
    """One submission's staged changes; discarded if any entry fails."""

    base: _Overlay
    sub: Submission
    hashes: list[bytes]
    trust: TrustList
    state: dict[bytes, StatusRecord] = field(default_factory=dict)
    history: list[tuple[bytes, int]] = field(default_factory=list)

    def status(self, key: bytes) -> StatusRecord | None:
        rec = self.state.get(key)
        return rec if rec is not None else self.base.status(key)

    def put(self, key: bytes, rec: StatusRecord) -> None:
        self.state[key] = rec
        self.history.append((key, rec.leaf))

    def agency(self) -> AgencyInfo:
        # A governance entry earlier in the submission may have removed it.
        try:
            return self.trust.agency(self.sub.agency)
        except KeyError:
            gone = _not_listed(self.sub.agency)
            raise RuleViolation("unknown_agency", gone) from None


def _not_listed(agency: str) -> str:
    return f"agency {agency!r} is not in the trust list"


def apply_batch(
    view: StateView, batch: BatchInput, *, log: MerkleLog, smap: StateWriter
) -> Applied:
    """Apply ``batch`` on top of ``view``; return the block and its writes.

    Preconditions: ``log.size == view.tree_size`` and ``smap`` is at the
    view's state root (``ValueError`` for the first). Advances ``log`` and
    ``smap`` in memory: the caller persists ``Applied`` or drops both.
    """
    if log.size != view.tree_size:
        raise ValueError(f"log size {log.size} != view tree size {view.tree_size}")
    overlay = _Overlay(view=view, trust=view.trust, next_leaf=view.tree_size)
    outcomes: list[Outcome] = []
    for raw in batch.submissions:
        try:
            pending = _check_submission(overlay, raw, batch.time_ms)
        except RuleViolation as violation:
            outcomes.append(Outcome(violation.code, violation.entry))
            continue
        overlay.merge(pending)
        outcomes.append(Outcome(OK))
    return _seal(view, batch, overlay, tuple(outcomes), log=log, smap=smap)


def _seal(
    view: StateView,
    batch: BatchInput,
    overlay: _Overlay,
    outcomes: tuple[Outcome, ...],
    *,
    log: MerkleLog,
    smap: StateWriter,
) -> Applied:
    """Append to the log and the state map and build the block."""
    log_nodes = log.append(overlay.hashes) if overlay.hashes else []
    state_root = smap.root
    writes: dict[bytes, bytes | None] = {}
    before: dict[bytes, bytes | None] = {}
    if overlay.state:
        items = {key: rec.encode() for key, rec in overlay.state.items()}
        state_root, writes = smap.update(items, before=before)
    header = BlockHeader(
        height=view.height + 1,
        prev_hash=view.last_hash,
        time_ms=batch.time_ms,
        first_leaf=view.tree_size,
        tree_size=log.size,
        log_root=log.root(),
        state_root=state_root,
        body_hash=body_hash(batch.submissions, outcomes, batch.cosignatures),
        trust_version=overlay.trust.version,
    )
    block = Block(
        header=header,
        submissions=batch.submissions,
        outcomes=outcomes,
        cosignatures=batch.cosignatures,
    )
    return Applied(
        block=block,
        leaves=overlay.leaves,
        log_nodes=log_nodes,
        state=overlay.state,
        state_writes=writes,
        state_before=before,
        nonces=overlay.nonce_list,
        history=overlay.history,
        trust=overlay.trust,
    )


def _check_submission(overlay: _Overlay, raw: bytes, time_ms: int) -> _Pending:
    """Stage one submission's changes, or raise the RuleViolation that sinks it.

    Steps follow the order of the reason codes in the module docstring.
    """
    # (1): the bytes must be a canonical submission.
    try:
        sub = decode_submission(raw)
    except EncodingError as exc:
        raise RuleViolation("malformed", str(exc)) from None

    # (2): a known agency, signing with one of its active issuer keys.
    # Retired keys are refused here: after a rotation (maybe for a
    # compromise) the old key must not issue anything new.
    try:
        agency = overlay.trust.agency(sub.agency)
    except KeyError:
        raise RuleViolation("unknown_agency", _not_listed(sub.agency)) from None
    key = find_issuer_key(sub, agency.issuer_keys)

    # (3): one signature over the root of the leaf hashes; the hashes are
    # kept for the log so each entry is hashed once.
    hashes = [leaf_hash(e) for e in sub.entries]
    try:
        check_signature(sub, overlay.trust.origin, key, root_of(hashes))
    except VerificationError as exc:
        raise RuleViolation("bad_signature", exc.message) from None

    # (4): replay protection. A nonce seen before, in the store or earlier in
    # this batch, is a replay; the window bounds how long nonces matter.
    if (sub.agency, sub.nonce) in overlay.nonces or overlay.view.nonce_seen(
        sub.agency, sub.nonce
    ):
        raise RuleViolation("replay", f"nonce {sub.nonce.hex()} already used")
    if abs(sub.timestamp_ms - time_ms) > TIMESTAMP_WINDOW_MS:
        raise RuleViolation(
            "timestamp_window", f"timestamp {sub.timestamp_ms}, batch {time_ms}"
        )

    # From here on the submission is the agency's own and fresh: whatever
    # follows, its nonce is spent.
    overlay.spend(sub)

    # (5): the size bound, then every entry in order.
    if len(sub.entries) > MAX_ENTRIES:
        raise RuleViolation("too_many_entries", f"{len(sub.entries)} entries")
    pending = _Pending(base=overlay, sub=sub, hashes=hashes, trust=overlay.trust)
    _check_entries(pending, overlay.next_leaf)
    return pending


# Entry refusals that no submission still pending can undo: a stored
# status only moves on (revoked stays revoked), an issuer never changes. A
# node may refuse these before proposing (``precheck_entries``); the others
# (``unknown_document``: its anchor may be pending; ``bad_version``, grants,
# governance versions) wait for the apply.
FINAL_CODES: Final = frozenset(
    {
        "malformed",
        "not_issuer",
        "not_owner",
        "already_anchored",
        "already_revoked",
        "already_superseded",
    }
)


def precheck_entries(view: StateView, sub: Submission) -> None:
    """The entry rules of ``sub`` against ``view``, as if it came next:
    raise the RuleViolation (with its entry index) if it would be refused
    for a reason in ``FINAL_CODES``. Changes nothing; the rules run again
    when a block is applied."""
    overlay = _Overlay(view=view, trust=view.trust, next_leaf=view.tree_size)
    pending = _Pending(base=overlay, sub=sub, hashes=[], trust=view.trust)
    try:
        _check_entries(pending, view.tree_size)
    except RuleViolation as violation:
        if violation.code in FINAL_CODES:
            raise


def _check_entries(p: _Pending, first_leaf: int) -> None:
    for i, data in enumerate(p.sub.entries):
        try:
            try:
                entry = decode_entry(data)
            except EncodingError as exc:
                raise RuleViolation("malformed", str(exc)) from None
            if entry.issuer != p.sub.agency:
                raise RuleViolation(
                    "not_issuer", f"entry issuer {entry.issuer} != {p.sub.agency}"
                )
            _check_entry(p, entry, first_leaf + i)
        except RuleViolation as violation:
            raise RuleViolation(violation.code, violation.message, entry=i) from None


def _check_entry(p: _Pending, entry: Entry, leaf: int) -> None:
    if isinstance(entry, Anchor):
        _anchor(p, entry, leaf)
    elif isinstance(entry, Revoke):
        _revoke(p, entry, leaf)
    elif isinstance(entry, Supersede):
        _supersede(p, entry, leaf)
    elif isinstance(entry, Record):
        _record(p, entry, leaf)
    else:
        _governance(p, entry)


def _anchor(p: _Pending, entry: Anchor, leaf: int) -> None:
    if entry.doc_type not in p.agency().doc_types:
        raise RuleViolation(
            "doc_type_not_granted", f"{entry.doc_type} not granted to {entry.issuer}"
        )
    if p.status(entry.doc_id) is not None:
        raise RuleViolation("already_anchored", entry.doc_id.hex())
    p.put(entry.doc_id, StatusRecord.anchored(entry, leaf=leaf))


def _owned_document(p: _Pending, doc_id: bytes) -> StatusRecord:
    """The status of a document the submitting agency issued, or raise."""
    rec = p.status(doc_id)
    # A record key is not a document, whatever a revoke entry says.
    if rec is None or not rec.is_document:
        raise RuleViolation("unknown_document", doc_id.hex())
    if rec.issuer != p.sub.agency:
        raise RuleViolation("not_owner", f"{doc_id.hex()} issued by {rec.issuer}")
    return rec


def _revoke(p: _Pending, entry: Revoke, leaf: int) -> None:
    rec = _owned_document(p, entry.doc_id)
    if rec.status == "revoked":
        raise RuleViolation("already_revoked", entry.doc_id.hex())
    p.put(entry.doc_id, rec.revoked(entry, leaf=leaf))


def _supersede(p: _Pending, entry: Supersede, leaf: int) -> None:
    old = _owned_document(p, entry.old_doc_id)
    _require_valid(old, entry.old_doc_id)
    # The new document must already be on the ledger (this submission or
    # earlier), issued by the same agency and itself in force; so no chain
    # of supersessions can loop back on itself.
    new = _owned_document(p, entry.new_doc_id)
    _require_valid(new, entry.new_doc_id)
    p.put(entry.old_doc_id, old.superseded(entry, leaf=leaf))
    p.history.append((entry.new_doc_id, leaf))


def _require_valid(rec: StatusRecord, doc_id: bytes) -> None:
    if rec.status == "revoked":
        raise RuleViolation("already_revoked", doc_id.hex())
    if rec.status == "superseded":
        raise RuleViolation("already_superseded", doc_id.hex())


def _record(p: _Pending, entry: Record, leaf: int) -> None:
    key = record_key(entry.registry, entry.record_id)
    prev = p.status(key)
    # First writer owns the record. A doc id is chosen by its issuer, so an
    # agency could anchor a "document" at someone's record key to squat it;
    # such a key is treated as owned by that document.
    if prev is not None and (prev.is_document or prev.issuer != p.sub.agency):
        raise RuleViolation("not_owner", f"record owned by {prev.issuer}")
    expected = 1 if prev is None else (prev.version or 0) + 1
    if entry.version != expected:
        raise RuleViolation(
            "bad_version", f"version {entry.version}, expected {expected}"
        )
    p.put(key, StatusRecord.recorded(entry, leaf=leaf))


def _governance(p: _Pending, entry: Governance) -> None:
    if entry.version != p.trust.version + 1:
        raise RuleViolation(
            "governance_invalid",
            f"version {entry.version}, expected {p.trust.version + 1}",
        )
    verify_governance_approvals(entry, p.trust)
    p.trust = p.trust.apply_governance(entry)
