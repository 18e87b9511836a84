"""The simulation as a test: many seeded runs, each checking safety throughout."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from tests.consensus import sim, simulate
from tests.consensus.sim import Result, run_seed
from tests.consensus.simulate import main

SEEDS = 1000


def test_simulation_has_no_violations() -> None:
    failures = [r for r in map(run_seed, range(SEEDS)) if r.violation]
    first = failures[0] if failures else None
    assert not failures, f"seed {first.seed}: {first.violation}" if first else ""


def test_same_seed_same_run() -> None:
    first, again = run_seed(7, trace=True), run_seed(7, trace=True)
    assert first.trace and first.trace == again.trace
    assert first.stats == again.stats


def test_simulate_cli_reports_clean_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "20", "--start", "5000", "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "seeds=20 violations=0"


def test_simulate_cli_prints_the_failing_seed_and_its_trace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checker that finds a violation at seed 5003: the run stops there,
    # prints the seed, the violation, the trace and how to replay it.
    def fake(seed: int, *, trace: bool = False) -> Result:
        bad = "two leaders in term 3: n1 and n2" if seed == 5003 else None
        return Result(seed, bad, {}, [f"t={i} event {i}" for i in range(3)])

    monkeypatch.setattr(simulate, "run_seed", fake)
    assert main(["--seeds", "20", "--start", "5000", "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert "seed=5003 violation: two leaders in term 3" in out
    assert "  t=2 event 2" in out
    assert "--seeds 1 --start 5003" in out
    assert "violations=0" not in out


def test_the_chaos_reaches_every_kind_of_fault() -> None:
    # A simulation that never crashed, partitioned or snapshotted would pass
    # vacuously; over a few seeds every kind of event must happen.
    stats: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for seed in range(50):
        result = run_seed(seed, trace=True)
        assert result.violation is None, result.violation
        stats.update(result.stats)
        for line in result.trace:
            text = line.split(" ", 1)[1]
            for kind in (
                "crash",
                "restart",
                "partition",
                "heal",
                "snapshot",
                "transfer",
                "conf change",
            ):
                if kind in text:
                    events[kind] += 1
            if text.startswith("crash") and "before" in text:
                events["crash mid-ready"] += 1
    assert all(stats[k] > 0 for k in ("commits", "elections", "reads", "snap_sent"))
    assert stats["elections"] > 50  # many leaders, not one per seed
    for kind in ("crash", "crash mid-ready", "restart", "partition", "heal"):
        assert events[kind] > 0, (kind, events)
    for kind in ("snapshot", "transfer", "conf change"):
        assert events[kind] > 0, (kind, events)


def test_the_checker_catches_a_term_forgotten_across_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mutation check: a node that restarts without its durable term and vote
    # (the bug the durable Raft log exists to prevent) must be caught by the
    # safety checks within a few hundred seeds, or the checks prove nothing.
    start = sim.Sim._start

    def forgetful(self: sim.Sim, node: sim.SimNode) -> None:
        hard = node.storage.hard_state
        node.storage.set_hard_state(dataclasses.replace(hard, term=0, vote=None))
        start(self, node)

    monkeypatch.setattr(sim.Sim, "_start", forgetful)
    found = next((r for r in map(run_seed, range(300)) if r.violation), None)
    assert found is not None, "300 seeds of a forgetful node broke no invariant"
    assert found.violation is not None
    assert "two leaders" in found.violation or "log matching" in found.violation


def test_a_stale_term_leader_elected_by_late_votes_breaks_no_invariant() -> None:
    # Regression (seed 134178): n2 granted n3 a vote for term 4, then voted
    # for n1 in term 5 and acknowledged n1's entry 9, which n1 committed; the
    # term-4 vote arrived late and made n3 leader of a term that can commit
    # nothing. Lacking entry 9 (committed in term 5) breaks no Raft property.
    result = run_seed(134178, trace=True)
    assert result.violation is None
    assert any("n3 leads term 4" in line for line in result.trace)
