"""Run the Raft simulation over a range of seeds.

    python -m tests.consensus.simulate --seeds N --start S [--jobs J]

Ends with ``seeds=N violations=0``, or prints the first failing seed, its
violation and the full trace of that seed's run (the same seed replays the
same run: ``--seeds 1 --start SEED``) and exits with status 1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Iterator

from tests.consensus.sim import Result, run_seed

TRACE_TAIL = 400


def _check(seed: int) -> tuple[int, str | None]:
    return seed, run_seed(seed).violation


def _results(start: int, count: int, jobs: int) -> Iterator[tuple[int, str | None]]:
    seeds = range(start, start + count)
    if jobs <= 1:
        yield from map(_check, seeds)
        return
    with multiprocessing.Pool(jobs) as pool:
        yield from pool.imap(_check, seeds, chunksize=64)


def report(result: Result, tail: int = TRACE_TAIL) -> str:
    lines = [f"seed={result.seed} violation: {result.violation}"]
    shown = result.trace[-tail:]
    skipped = len(result.trace) - len(shown)
    lines.append(
        f"trace (last {len(shown)} events; --trace prints all {skipped + len(shown)}):"
    )
    lines += [f"  {line}" for line in shown]
    lines.append(
        f"replay: python -m tests.consensus.simulate --seeds 1 --start {result.seed}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trace", action="store_true", help="print whole traces")
    args = parser.parse_args(argv)
    for seed, violation in _results(args.start, args.seeds, args.jobs):
        if violation is not None:
            # Replay the seed with tracing on: same seed, same run.
            tail = 10**9 if args.trace else TRACE_TAIL
            print(report(run_seed(seed, trace=True), tail))
            return 1
    print(f"seeds={args.seeds} violations=0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
