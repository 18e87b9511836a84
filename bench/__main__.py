"""``python -m bench``: measure the figures DESIGN.md sets, print, and save.

Suites run in order: the machine ceiling, the in-process figures, the real
cluster, then etcd under the same load. A suite that fails is reported (its
figures stay in the results with no value and the reason) and the others
still run; but an acknowledged write found missing fails the whole run with
exit status 1, since every throughput figure would then be a lie.

The results go to ``bench/results/latest.json`` (``--out``) as
``{"machine", "versions", "figures"}``; docs/bench.md explains each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table

from bench import ceiling, cluster, core, etcd, load, machine
from bench.figures import Figure, Results, ratio, say
from bench.http1 import KINDS
from bench.load import LostWriteError
from bench.profile import FULL, QUICK, Profile

RESULTS: Final = Path(__file__).resolve().parent / "results" / "latest.json"
SUITES: Final = ("ceiling", "core", "cluster", "etcd")
# Ours over etcd's: (our figure, etcd's figure).
ETCD_PAIRS: Final = (
    ("single_submissions_per_s", etcd.SINGLE),
    ("batched_anchors_per_s", etcd.BATCHED),
    ("commit_latency_p99_ms", etcd.LATENCY_P99),
)

Suite = Callable[[Profile, Path, Results], list[Figure]]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Measure the figures of DESIGN.md."
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the 10-million-entry figures (hours); default: the quick profile",
    )
    parser.add_argument(
        "--only",
        default=",".join(SUITES),
        help=f"comma-separated suites to run, of: {', '.join(SUITES)}",
    )
    parser.add_argument(
        "--client",
        choices=KINDS,
        default="raw",
        help="HTTP client of the load generator (see bench/http1.py)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data folders"
    )
    args = parser.parse_args(argv)
    args.suites = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    return args


def _suites() -> dict[str, Suite]:
    return {
        "ceiling": lambda p, tmp, _: ceiling.run(p.ceiling_seconds, tmp),
        "core": core.run,
        "cluster": cluster.run,
        "etcd": lambda p, tmp, _: etcd.run(p, tmp),
    }


def _failed(name: str, why: str) -> list[Figure]:
    """Figures of a suite that stopped before producing any."""
    if name == "core":
        return []  # core reports its own failures phase by phase
    if name == "cluster":
        return cluster.not_run(why)
    if name == "etcd":
        return etcd.unavailable(why)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    profile = FULL if args.full else QUICK
    load.CLIENT[0] = args.client
    results = Results()
    lost: list[str] = []
    say(
        f"profile {profile.name}, suites {', '.join(args.suites)}, "
        f"load average {machine.load_average():.2f} on {os.cpu_count()} cores"
    )
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
            say(f"data folders kept in {tmp}")
        else:
            scratch = tempfile.TemporaryDirectory(prefix="ledger-bench-")
            tmp = Path(stack.enter_context(scratch))
        for name in args.suites:
            suite_dir = tmp / name
            suite_dir.mkdir()
            say(f"suite {name}")
            try:
                results.extend(_suites()[name](profile, suite_dir, results))
            except LostWriteError as exc:
                lost.append(f"{name}: {exc}")
                say(f"suite {name} LOST ACKNOWLEDGED WRITES: {exc}")
                results.extend(_failed(name, f"acknowledged writes lost: {exc}"))
            except Exception as exc:  # one suite's failure must not hide the rest
                traceback.print_exc()
                say(f"suite {name} failed: {type(exc).__name__}: {exc}")
                results.extend(_failed(name, f"{type(exc).__name__}: {exc}"))
    _etcd_ratios(results)
    _print(results, profile, time.perf_counter() - started)
    _save(args.out, results)
    say(f"wrote {args.out}")
    if lost:
        Console(stderr=True).print(
            "[bold white on red] ACKNOWLEDGED WRITES WERE LOST [/] " + "; ".join(lost)
        )
        return 1
    return 0


def _etcd_ratios(results: Results) -> None:
    for ours, theirs in ETCD_PAIRS:
        figure = results.get(ours)
        if figure is not None:
            figure.etcd_ratio = ratio(figure.value, results.value(theirs))


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _print(results: Results, profile: Profile, seconds: float) -> None:
    table = Table(
        title=f"Agency Ledger benchmark ({profile.name}, {seconds:.0f} s)",
        show_lines=False,
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("goal", justify="right")
    table.add_column("of goal", justify="right")
    table.add_column("of ceiling", justify="right")
    table.add_column("of etcd", justify="right")
    for f in results.figures:
        met = f.goal_ratio()
        mark = "" if met is None else ("green" if met >= 1 else "red")
        goal = "" if f.goal is None else ("≥ " if f.higher_is_better else "< ")
        goal += _fmt(f.goal) if f.goal is not None else ""
        table.add_row(
            f.name,
            _fmt(f.value) if f.value is not None else "[yellow]not measured[/]",
            f.unit,
            goal,
            f"[{mark}]{_fmt(met)}[/]" if mark else "",
            _fmt(f.ceiling_ratio) if f.ceiling_ratio is not None else "",
            _fmt(f.etcd_ratio) if f.etcd_ratio is not None else "",
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for f in results.figures:
        if f.note:
            console.print(f"[bold]{f.name}[/]: {f.note}", highlight=False)


def _save(path: Path, results: Results) -> None:
    body = {
        "machine": machine.machine(),
        "versions": machine.versions(),
        "figures": [f.to_json() for f in results.figures],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
