"""``ledger governance``'s pre-checks (cli/governance.py): they must count
approvals, and judge the change itself, exactly as the ledger does
(ledger.trust), or they would pass what the ledger refuses after a round of
consensus, or refuse what it takes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.governance import _check_approvals, _check_change, _write
from cli.main import app
from cli.verifying import UsageError
from ledger.codec import Value
from ledger.entries import Governance, sign_approval
from ledger.errors import RuleViolation
from ledger.trust import verify_governance_approvals
from tests.cli.chain import make_keys, make_trust

KEYS = make_keys(1)
TRUST = make_trust(KEYS)
PARAMS: dict[str, Value] = {"id": "health", "doc_types": ["land_survey"]}


def _entry(*signers: tuple[str, str]) -> Governance:
    """A grant approved by (agency, which of its keys) in that order."""
    approvals = tuple(
        sign_approval(
            TRUST.origin,
            action="grant_doc_types",
            params=PARAMS,
            version=TRUST.version + 1,
            agency=agency,
            key=getattr(KEYS[agency], which),
        )
        for agency, which in signers
    )
    return Governance(
        issuer="health",
        action="grant_doc_types",
        params=PARAMS,
        version=TRUST.version + 1,
        approvals=approvals,
    )


@pytest.mark.parametrize(
    "signers",
    [
        (("police", "admin"), ("justice", "admin")),
        (("police", "issuer"), ("justice", "admin")),
        # A bad approval then a good one by the same agency: the ledger
        # tries only the first.
        (("police", "issuer"), ("police", "admin"), ("justice", "admin")),
        (("police", "admin"), ("police", "admin")),
    ],
    ids=["two admins", "a wrong key", "bad then good", "one agency twice"],
)
def test_the_pre_check_agrees_with_the_ledger(
    signers: tuple[tuple[str, str], ...],
) -> None:
    entry = _entry(*signers)
    try:
        verify_governance_approvals(entry, TRUST)
        ledger_takes = True
    except RuleViolation:
        ledger_takes = False
    try:
        _check_approvals(entry, TRUST)
        cli_takes = True
    except UsageError:
        cli_takes = False
    assert cli_takes == ledger_takes


@pytest.mark.parametrize(
    ("ahead", "says"),
    [(0, "already: it was applied"), (2, "but the node's is")],
    ids=["applied", "skips-a-version"],
)
def test_a_proposal_for_the_wrong_version_says_why(ahead: int, says: str) -> None:
    # A proposal makes the version after the node's; one made for the
    # node's own version was applied already (or beaten by another change).
    entry = dataclasses.replace(_entry(), version=TRUST.version + ahead)
    with pytest.raises(UsageError, match=says):
        _check_approvals(entry, TRUST)


def test_approving_twice_says_so_and_keeps_one_approval(tmp_path: Path) -> None:
    proposal = tmp_path / "proposal.json"
    proposal.write_text(
        json.dumps(
            {
                "origin": TRUST.origin,
                "action": "grant_doc_types",
                "params": PARAMS,
                "version": TRUST.version + 1,
                "approvals": [],
            }
        )
    )
    key = tmp_path / "police" / "admin.key"
    key.parent.mkdir()
    KEYS["police"].admin.save(key)
    args = ["governance", "approve", str(proposal), "--key", str(key)]
    first = CliRunner().invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "police approved; 1 approval(s)" in first.output
    again = CliRunner().invoke(app, args, terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "police approved again (its earlier approval replaced); 1 approval(s)" in (
        again.output
    )
    assert len(json.loads(proposal.read_text())["approvals"]) == 1


@pytest.mark.parametrize(
    ("action", "params", "says"),
    [
        ("remove_agency", {"id": "zulu"}, "zulu"),
        (
            "rotate_issuer_key",
            {"id": "police", "issuer_key": "11" * 32, "retire": "22" * 32},
            "not an active issuer key",
        ),
    ],
    ids=["unknown-agency", "retire-inactive-key"],
)
def test_a_change_the_ledger_would_refuse_is_refused_with_its_reason(
    action: str, params: dict[str, Value], says: str
) -> None:
    """The block of a refused change keeps only `governance_invalid`; the
    command says why, before anything is sent (propose and submit)."""
    entry = Governance(
        issuer="health", action=action, params=params, version=TRUST.version + 1
    )
    with pytest.raises(RuleViolation):
        TRUST.apply_governance(entry)  # what the ledger does when applied
    with pytest.raises(UsageError, match=f"would refuse this change: .*{says}"):
        _check_change(entry, TRUST)


def test_the_pre_check_passes_what_the_ledger_takes() -> None:
    entry = _entry()
    TRUST.apply_governance(entry)
    _check_change(entry, TRUST)


def test_a_proposal_that_cannot_be_written_is_an_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    with pytest.raises(UsageError, match="cannot write"):
        _write(tmp_path / "no-folder" / "p.json", {"origin": TRUST.origin})
