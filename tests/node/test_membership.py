"""Raft membership follows the trust list: the leader's plan, one change at a time."""

from __future__ import annotations

from consensus.messages import ConfChange, ConfChangeKind, ConfState
from node.membership import PROMOTE_LAG, initial_conf, plan_change

ADD_LEARNER, ADD_VOTER, REMOVE = (
    ConfChangeKind.ADD_LEARNER,
    ConfChangeKind.ADD_VOTER,
    ConfChangeKind.REMOVE,
)


def _plan(
    trusted: tuple[str, ...],
    conf: ConfState,
    match: dict[str, int] | None = None,
    committed: int = 100,
) -> ConfChange | None:
    return plan_change(
        trusted=trusted,
        conf=conf,
        match=match or {},
        committed=committed,
        leader="a1",
    )


def test_genesis_has_at_most_seven_voters_the_rest_learn() -> None:
    ids = [f"a{i}" for i in range(9)]
    conf = initial_conf(ids[::-1])
    assert conf.voters == tuple(sorted(ids)[:7])
    assert conf.learners == tuple(sorted(ids)[7:])


def test_nothing_to_do_when_raft_matches_the_trust_list() -> None:
    assert _plan(("a1", "a2", "a3"), ConfState(voters=("a1", "a2", "a3"))) is None


def test_a_new_agency_joins_as_a_learner_first() -> None:
    conf = ConfState(voters=("a1", "a2", "a3"))
    assert _plan(("a1", "a2", "a3", "a4"), conf) == ConfChange(ADD_LEARNER, "a4")


def test_a_learner_is_promoted_only_once_caught_up() -> None:
    conf = ConfState(voters=("a1", "a2", "a3"), learners=("a4",))
    trusted = ("a1", "a2", "a3", "a4")
    assert _plan(trusted, conf, {"a4": 0}) is None
    assert _plan(trusted, conf, {"a4": 100 - PROMOTE_LAG - 1}) is None
    assert _plan(trusted, conf, {"a4": 100 - PROMOTE_LAG}) == ConfChange(
        ADD_VOTER, "a4"
    )


def test_no_promotion_beyond_seven_voters() -> None:
    voters = tuple(f"a{i}" for i in range(1, 8))
    conf = ConfState(voters=voters, learners=("a8",))
    assert _plan((*voters, "a8"), conf, {"a8": 100}) is None


def test_removal_comes_first_and_never_of_the_leader() -> None:
    conf = ConfState(voters=("a1", "a2", "a3"))
    assert _plan(("a1", "a3", "a4"), conf) == ConfChange(REMOVE, "a2")
    assert _plan(("a2", "a3"), conf) is None  # the leader hands over first
