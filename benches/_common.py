"""Helpers shared by the benchmark scripts: statistics, the table, the JSON file.

Benchmarks print a table, write JSON to benches/results/<name>.json and report each
number as a ratio to a baseline measured in the same run (absolute times are noisy
on shared and nested-virtualised hosts).
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

RESULTS = Path(__file__).resolve().parent / "results"

BENCH_LINE = re.compile(r"BENCH name=(\S+) n=(\d+) median_ns=(\d+) p99_ns=(\d+) min_ns=(\d+)")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p99 and min of ``values``."""
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "min": min(values),
    }


def guest_bench_lines(console: str) -> dict[str, dict[str, int]]:
    """The ``BENCH`` lines a benchmark guest printed (guest/lib/bench.c), by name."""
    return {
        m[1]: {"n": int(m[2]), "median": int(m[3]), "p99": int(m[4]), "min": int(m[5])}
        for m in BENCH_LINE.finditer(console)
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """A goal a benchmark number must reach: ``value <op> bound``.

    The verdict is computed from the numbers of the same run, never written by hand.
    """

    name: str
    op: Literal["<=", ">="]
    bound: float

    def met(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def cell(self, value: float) -> str:
        """The table cell: the target and whether this run met it."""
        return f"{self.op} {self.bound:g}: {'met' if self.met(value) else 'MISSED'}"

    def record(self, value: float) -> dict[str, Any]:
        """The JSON form: what was asked, what was measured, and the verdict."""
        return {"target": f"{self.op} {self.bound:g}", "value": value, "met": self.met(value)}


def verdicts(pairs: Sequence[tuple[Target, float]]) -> dict[str, dict[str, Any]]:
    """Every target of a run with its measured value and verdict, by target name."""
    return {target.name: target.record(value) for target, value in pairs}


def print_verdicts(decided: dict[str, dict[str, Any]]) -> None:
    """One line per target, missed ones first, so a reader cannot overlook them."""
    print()
    for name, v in sorted(decided.items(), key=lambda item: item[1]["met"]):
        word = "met   " if v["met"] else "MISSED"
        print(f"{word} {name}: {v['value']:.4g} (target {v['target']})")


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` plus machine facts to benches/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"kernel": platform.release(), "python": platform.python_version()},
        **data,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def us(ns: float) -> str:
    """Nanoseconds as microseconds with two decimals."""
    return f"{ns / 1000:.2f}"
