"""Benchmarks decide their own verdicts (benches/_common.Target): the rule, at its edges."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))

from _common import Target, verdicts


def test_upper_bound_is_inclusive_and_strict_beyond() -> None:
    t = Target("x", "<=", 2.0)
    assert t.met(2.0)
    assert t.met(0.0)
    assert not t.met(2.0000001)
    assert t.cell(1.5) == "<= 2: met"
    assert t.cell(2.5) == "<= 2: MISSED"


def test_lower_bound_is_inclusive_and_strict_below() -> None:
    t = Target("rate", ">=", 0.8)
    assert t.met(0.8)
    assert t.met(3.0)
    assert not t.met(0.79)


def test_zero_target_counts_any_exit_as_missed() -> None:
    t = Target("exits per rpc", "<=", 0.0)
    assert t.met(0.0)
    assert not t.met(2e-7)


def test_verdicts_record_value_target_and_decision() -> None:
    decided = verdicts([(Target("a", ">=", 1.0), 0.5), (Target("b", "<=", 1.0), 0.5)])
    assert decided == {
        "a": {"target": ">= 1", "value": 0.5, "met": False},
        "b": {"target": "<= 1", "value": 0.5, "met": True},
    }
