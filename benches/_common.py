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
from pathlib import Path
from typing import Any

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
