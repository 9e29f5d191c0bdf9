"""The candidates table: drops, flags, the Pareto front and the choice (pure functions)."""

from __future__ import annotations

import pytest

from shoestring.compress.table import NEAR_TIE, OVER_BUDGET, SMALLER_BUT_SLOWER, metric_drop, rank


def row(name, size, p50_1, metric, p50_32=None, parent=False):
    lat = {"1": {"p50_ms": p50_1}, "32": {"p50_ms": p50_32 or p50_1 * 4}}
    return {"name": name, "is_parent": parent, "size_bytes": size, "latency": lat,
            "metric": metric}


def test_drop_is_points_for_accuracies_and_percent_for_losses():
    assert metric_drop(0.90, 0.885, True) == pytest.approx(1.5)
    assert metric_drop(0.90, 0.91, True) == pytest.approx(-1.0)
    assert metric_drop(2.0, 2.1, False) == pytest.approx(5.0)
    assert metric_drop(2.0, 1.9, False) == pytest.approx(-5.0)


def test_the_fastest_within_budget_is_chosen_and_the_rest_flagged():
    rows = [row("float32", 1000, 1.0, 0.90, parent=True),
            row("fast-but-wrong", 250, 0.2, 0.80),     # 10 points lost
            row("int8", 260, 0.5, 0.897),              # 0.3 points lost: fits
            row("slow-small", 300, 1.5, 0.90)]         # smaller, slower
    chosen = rank(rows, max_drop=0.5, higher_is_better=True, batch_sizes=[1, 32])
    by = {r["name"]: r for r in rows}
    assert chosen == "int8" and by["int8"]["chosen"] and not by["float32"]["chosen"]
    assert by["fast-but-wrong"]["flags"] == [OVER_BUDGET]
    assert by["slow-small"]["flags"] == [SMALLER_BUT_SLOWER]
    assert by["int8"]["flags"] == [] and by["float32"]["flags"] == []
    assert by["int8"]["size_ratio"] == pytest.approx(1000 / 260)
    assert by["int8"]["speedup"]["1"] == pytest.approx(2.0)
    # Pareto: fast-but-wrong (fastest, smallest) and int8 and the exact parent are undominated;
    # slow-small is dominated by nothing smaller-and-as-accurate... except int8? no: int8 is
    # less accurate, so slow-small stays on the front too.
    assert by["fast-but-wrong"]["pareto"] and by["int8"]["pareto"]


def test_a_dominated_candidate_is_off_the_front():
    rows = [row("float32", 1000, 1.0, 0.90, parent=True), row("a", 500, 0.5, 0.90),
            row("b", 600, 0.6, 0.89)]
    rank(rows, max_drop=5, higher_is_better=True, batch_sizes=[1])
    assert [r["pareto"] for r in rows] == [False, True, False]


def test_near_ties_on_speed_go_to_the_smaller():
    rows = [row("float32", 1000, 1.0, 0.9, parent=True),
            row("onnx-fp32", 1100, 0.50, 0.9),
            row("int8", 280, 0.50 * (1 + NEAR_TIE / 2), 0.9)]
    assert rank(rows, max_drop=0.5, higher_is_better=True, batch_sizes=[1]) == "int8"
    rows[2]["latency"]["1"]["p50_ms"] = 0.50 * (1 + 2 * NEAR_TIE)
    assert rank(rows, max_drop=0.5, higher_is_better=True, batch_sizes=[1]) == "onnx-fp32"


def test_nothing_within_budget_chooses_nothing_and_never_the_parent():
    rows = [row("float32", 1000, 1.0, 2.0, parent=True), row("int4", 200, 0.3, 2.5)]
    assert rank(rows, max_drop=1.0, higher_is_better=False, batch_sizes=[1]) is None
    assert rows[1]["flags"] == [OVER_BUDGET] and not any(r["chosen"] for r in rows)
