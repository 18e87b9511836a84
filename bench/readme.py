"""``python -m bench.readme``: the README's figures table, from latest.json.

The table between the ``figures:start`` and ``figures:end`` markers of
README.md is rewritten from ``bench/results/latest.json``, so the figures
the README shows are always the ones a run measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results" / "latest.json"
README: Final = ROOT / "README.md"
START: Final = "<!-- figures:start -->"
END: Final = "<!-- figures:end -->"


def _num(value: object) -> str:
    if not isinstance(value, int | float):
        return "not measured"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(results: dict[str, object]) -> str:
    machine = results.get("machine", {})
    assert isinstance(machine, dict)
    figures = results.get("figures", [])
    assert isinstance(figures, list)
    lines = [
        f"Measured by `make bench` on {machine.get('cpu_model', '?')}, "
        f"{machine.get('cores', '?')} cores, Python {machine.get('python', '?')}"
        " (`bench/results/latest.json`; `docs/bench.md` says how each is"
        " measured).",
        "",
        "| figure | value | unit | goal | vs. ceiling | vs. etcd |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fig in figures:
        assert isinstance(fig, dict)
        goal = fig.get("goal")
        better = "≥" if fig.get("higher_is_better") else "≤"
        lines.append(
            "| `{}` | {} | {} | {} | {} | {} |".format(
                fig["name"],
                _num(fig.get("value")),
                fig.get("unit", ""),
                "" if goal is None else f"{better} {_num(goal)}",
                _ratio(fig.get("ceiling_ratio")),
                _ratio(fig.get("etcd_ratio")),
            )
        )
    return "\n".join(lines)


def _ratio(value: object) -> str:
    return f"{value:.3g}×" if isinstance(value, int | float) else ""


def main() -> int:
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table(results)}\n{END}{tail}", encoding="utf-8")
    print("README.md figures table rewritten from bench/results/latest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
