"""The simulation as a test: many seeded runs, each checking safety throughout."""

from __future__ import annotations

from tests.consensus.sim import run_seed
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


def test_simulate_cli_reports_clean_runs(capsys: object) -> None:
    assert main(["--seeds", "20", "--start", "5000", "--jobs", "1"]) == 0
