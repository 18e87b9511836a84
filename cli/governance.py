"""``ledger governance``: change the trust list with a quorum of agencies.

A change travels as one proposal file, the way agencies would pass it
around: ``propose`` writes it (the action, its parameters, the origin and
the trust-list version it will make), each agency's administrator
``approve``\\ s it with the agency's admin key (a signature over exactly
those fields), and any agency ``submit``\\ s it once a majority approved.
The ledger rules check the approvals again when the block is applied.

Actions and their parameters (JSON, keys in hex): ``add_agency`` {"agency":
an agency as in genesis.json}, ``remove_agency`` {"id"}, ``rotate_node_key``
{"id", "node_key"}, ``rotate_issuer_key`` {"id", "issuer_key", "retire"},
``grant_doc_types`` {"id", "doc_types": [...]}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli import common, render
from cli.common import AgencyOpt, KeyOpt, NodeOpt, TimeoutOpt, handled
from cli.verifying import UsageError, load_json
from ledger.codec import Value
from ledger.entries import (
    GOVERNANCE_ACTIONS,
    Approval,
    Governance,
    encode_entry,
    governance_message,
    sign_approval,
)
from ledger.errors import EncodingError, RuleViolation, VerificationError
from ledger.keys import verify_ed25519
from ledger.submission import sign_submission
from ledger.trust import TrustList

app = typer.Typer(
    help="Change the trust list: propose, approve (a majority), submit.",
    no_args_is_help=True,
)
ProposalArg = Annotated[Path, typer.Argument(help="The proposal file.")]


def _read(path: Path) -> dict[str, Value]:
    obj = load_json(path, "proposal")
    fields = {"origin", "action", "params", "version", "approvals"}
    if not isinstance(obj, dict) or set(obj) != fields:
        raise UsageError(f"{path}: a proposal has exactly the fields {sorted(fields)}")
    if obj["action"] not in GOVERNANCE_ACTIONS or not isinstance(obj["params"], dict):
        raise UsageError(f"{path}: unknown action or parameters not an object")
    if not isinstance(obj["version"], int) or not isinstance(obj["approvals"], list):
        raise UsageError(f"{path}: version must be a number, approvals a list")
    proposal: dict[str, Value] = obj
    return proposal


def _write(path: Path, proposal: dict[str, Value]) -> None:
    try:
        path.write_text(json.dumps(proposal, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_change(entry: Governance, trust: TrustList) -> None:
    """Refuse, with its reason, a change the ledger would refuse when
    applied (``governance_invalid``, whose block keeps only the code): an
    unknown agency to remove, a malformed agency to add, a key to retire
    that is not active, a change that leaves no agency."""
    try:
        trust.apply_governance(entry)
    except RuleViolation as exc:
        raise UsageError(
            f"the ledger would refuse this change: {exc.message}"
        ) from None


def _approvals(proposal: dict[str, Value]) -> tuple[Approval, ...]:
    out = []
    for item in proposal["approvals"]:  # type: ignore[union-attr]
        if not isinstance(item, dict) or set(item) != {"agency", "signature"}:
            raise UsageError("an approval is {agency, signature}")
        try:
            signature = bytes.fromhex(str(item["signature"]))
            out.append(Approval(agency=str(item["agency"]), signature=signature))
        except (ValueError, EncodingError) as exc:
            raise UsageError(f"bad approval: {exc}") from exc
    return tuple(out)


def _check_approvals(entry: Governance, trust: TrustList) -> None:
    """Refuse, naming each bad approval, what the ledger would refuse
    (``governance_quorum``) only after a round of consensus."""
    if entry.version <= trust.version:
        raise UsageError(
            f"the proposal would make trust-list version {entry.version}, and the "
            f"node's is {trust.version} already: it was applied, or another "
            "change came first (the node's GET /v1/trust shows it); propose again"
        )
    if entry.version != trust.version + 1:
        raise UsageError(
            f"the proposal would make trust-list version {entry.version}, but the "
            f"node's is {trust.version}: propose again"
        )
    message = governance_message(
        trust.origin, entry.action, entry.params, entry.version
    )
    # As the ledger counts them: an agency's first approval only, once.
    good, bad, tried = set(), [], set()
    for approval in entry.approvals:
        if approval.agency in tried:
            continue
        tried.add(approval.agency)
        try:
            keys = trust.agency(approval.agency).admin_keys
        except KeyError:
            bad.append(f"{approval.agency} (not an agency of the trust list)")
            continue
        for key in keys:
            try:
                verify_ed25519(key, message, approval.signature)
            except VerificationError:
                continue
            good.add(approval.agency)
            break
        else:
            bad.append(f"{approval.agency} (not signed with its admin key)")
    if len(good) < trust.quorum:
        why = f"; refused approvals: {', '.join(bad)}" if bad else ""
        raise UsageError(f"{len(good)} valid approval(s), {trust.quorum} needed{why}")


@app.command()
def propose(
    node: NodeOpt,
    action: Annotated[
        str, typer.Argument(help=f"One of {', '.join(GOVERNANCE_ACTIONS)}.")
    ],
    params: Annotated[Path, typer.Option("--params", help="The parameters (JSON).")],
    out: Annotated[Path, typer.Option("--out", help="The proposal file to write.")],
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Write a proposal for the next trust-list version of the node's chain."""
    with handled():
        if action not in GOVERNANCE_ACTIONS:
            raise UsageError(f"action must be one of {', '.join(GOVERNANCE_ACTIONS)}")
        values = load_json(params, "parameters")
        names = GOVERNANCE_ACTIONS[action]
        if not isinstance(values, dict) or set(values) != set(names):
            raise UsageError(f"{params}: {action} takes exactly {', '.join(names)}")
        # The approvals sign the canonical encoding: fields in schema order.
        values = {name: values[name] for name in names}
        if out.exists():
            raise UsageError(f"{out} exists already")
        with common.make_client(node, timeout=timeout) as client:
            trust = client.trust_list()
        try:
            change = Governance(
                issuer=trust.agencies[0].id,
                action=action,
                params=values,
                version=trust.version + 1,
                approvals=(),
            )
        except EncodingError as exc:
            raise UsageError(f"{params}: {exc}") from exc
        _check_change(change, trust)
        proposal: dict[str, Value] = {
            "origin": trust.origin,
            "action": action,
            "params": values,
            "version": trust.version + 1,
            "approvals": [],
        }
        _write(out, proposal)
    render.out.print(
        f"proposal for trust-list version {trust.version + 1} written to {out}; "
        f"a majority ({trust.quorum} of {len(trust.agencies)}) must approve it"
    )


@app.command()
def approve(
    proposal_file: ProposalArg,
    key: Annotated[Path, typer.Option("--key", help="The agency's admin key.")],
    agency: AgencyOpt = None,
) -> None:
    """Add this agency's approval (signed with its admin key) to a proposal."""
    with handled():
        proposal = _read(proposal_file)
        signer = common.load_key(key)
        who = common.agency_for_key(key, agency)
        before = _approvals(proposal)
        kept = [a for a in before if a.agency != who]
        again = len(kept) != len(before)
        mine = sign_approval(
            str(proposal["origin"]),
            action=str(proposal["action"]),
            params=proposal["params"],  # type: ignore[arg-type]
            version=int(proposal["version"]),  # type: ignore[arg-type]
            agency=who,
            key=signer,
        )
        proposal["approvals"] = [
            {"agency": a.agency, "signature": a.signature.hex()} for a in (*kept, mine)
        ]
        _write(proposal_file, proposal)
    done = "approved again (its earlier approval replaced)" if again else "approved"
    render.out.print(f"{who} {done}; {len(kept) + 1} approval(s) in {proposal_file}")


@app.command()
def submit(
    proposal_file: ProposalArg,
    node: NodeOpt,
    key: KeyOpt,
    agency: AgencyOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Submit an approved proposal, signed with this agency's issuer key."""
    with handled():
        proposal = _read(proposal_file)
        signer, issuer = common.load_key(key), common.agency_for_key(key, agency)
        try:
            entry = Governance(
                issuer=issuer,
                action=str(proposal["action"]),
                params=proposal["params"],  # type: ignore[arg-type]
                version=int(proposal["version"]),  # type: ignore[arg-type]
                approvals=_approvals(proposal),
            )
        except EncodingError as exc:
            raise UsageError(f"{proposal_file}: {exc}") from exc
        with common.make_client(node, timeout=timeout) as client:
            if client.origin() != proposal["origin"]:
                raise RuleViolation("governance_invalid", "proposal of another chain")
            trust = client.trust_list()
            common.check_issuer(trust, issuer, signer.public_key)
            _check_approvals(entry, trust)
            _check_change(entry, trust)
            sub = sign_submission(
                str(proposal["origin"]), issuer, [encode_entry(entry)], signer
            )
            result = client.submit(sub, wait="final")
    version = proposal["version"]
    render.out.print(
        f"trust list version {version!r} in force from block {result.height}"
    )
