"""The candidates table: which candidate wins, which are flagged, and its stable JSON format.

Pure functions over measured rows. ``compress/candidates.json`` in the new
run folder (format ``shoestring.compress.candidates/1``)::

    {"format": "shoestring.compress.candidates/1",
     "parent": {"dir": str, "run_id": str | null},
     "metric": "test_accuracy", "higher_is_better": true,
     "max_drop": 0.5, "drop_unit": "points" | "percent",
     "target": "cpu", "threads": 1, "batch_sizes": [1, 32],
     "chosen": "dynamic-int8" | null,
     "candidates": [
       {"name": "float32", "methods": [], "is_parent": true,
        "size_bytes": int, "params": int,
        "latency": {"1": {"p50_ms", "p95_ms", "throughput_per_s", "calls"}, "32": {…}},
        "metric": float, "metric_drop": float,
        "size_ratio": float,            # parent size / this size
        "speedup": {"1": float, …},      # parent p50 / this p50, per batch size
        "tokens_per_second": float | null,  # language models: greedy generation, batch 1
        "kept_float": [str],            # layers the sensitivity pass kept in float32
        "transforms": [{"kind", "config", "version"}],
        "flags": ["smaller but slower", "over the accuracy budget"],
        "pareto": bool, "chosen": bool, "notes": [str]}]}

``metric_drop`` is in ``drop_unit``: accuracy points (``(parent − cand)·100``)
or percent of a loss (``(cand − parent)/parent·100``); positive is worse.
The parent row is measured in the same run, never copied from its summary.
"""

from __future__ import annotations

from typing import Any

FORMAT = "shoestring.compress.candidates/1"
SMALLER_BUT_SLOWER = "smaller but slower"
# Candidates whose p50 is within this fraction of the fastest one's are a tie on speed
# (the spread of repeated timings of one model on a busy machine), and the smaller wins.
NEAR_TIE = 0.10
OVER_BUDGET = "over the accuracy budget"


def metric_drop(parent: float, value: float, higher_is_better: bool) -> float:
    """How much worse ``value`` is than ``parent``: points for accuracies, percent for losses.

    >>> round(metric_drop(0.88, 0.875, True), 6)
    0.5
    >>> round(metric_drop(2.0, 2.01, False), 6)
    0.5
    """
    if higher_is_better:
        return (parent - value) * 100.0
    return (value - parent) / abs(parent) * 100.0 if parent else value * 100.0


def p50(row: dict[str, Any], batch: int) -> float:
    return row["latency"][str(batch)]["p50_ms"]


def _dominates(a: dict, b: dict, batch: int, hib: bool) -> bool:
    """``a`` is at least as small, fast and accurate as ``b``, and better in one."""
    better_metric = a["metric"] >= b["metric"] if hib else a["metric"] <= b["metric"]
    strictly = (a["size_bytes"] < b["size_bytes"] or p50(a, batch) < p50(b, batch) or
                a["metric"] != b["metric"])
    return (a["size_bytes"] <= b["size_bytes"] and p50(a, batch) <= p50(b, batch) and
            better_metric and strictly)


def rank(rows: list[dict[str, Any]], *, max_drop: float, higher_is_better: bool,
         batch_sizes: list[int]) -> str | None:
    """Fill drops, ratios, flags, the Pareto front and the choice in place; return the chosen
    name: the fastest candidate (p50 at the first batch size) within ``max_drop``, the
    smallest of those within :data:`NEAR_TIE` of the fastest."""
    parent = next(r for r in rows if r["is_parent"])
    first = batch_sizes[0]
    for r in rows:
        r["metric_drop"] = metric_drop(parent["metric"], r["metric"], higher_is_better)
        r["size_ratio"] = parent["size_bytes"] / max(r["size_bytes"], 1)
        r["speedup"] = {str(b): p50(parent, b) / max(p50(r, b), 1e-12) for b in batch_sizes}
        flags = []
        if not r["is_parent"] and r["size_bytes"] < parent["size_bytes"] and \
                p50(r, first) > p50(parent, first):
            flags.append(SMALLER_BUT_SLOWER)
        if r["metric_drop"] > max_drop:
            flags.append(OVER_BUDGET)
        r["flags"] = flags
    for r in rows:
        r["pareto"] = not any(_dominates(o, r, first, higher_is_better)
                              for o in rows if o is not r)
    fits = [r for r in rows if not r["is_parent"] and OVER_BUDGET not in r["flags"]]
    chosen = None
    if fits:
        fastest = min(p50(r, first) for r in fits)
        ties = [r for r in fits if p50(r, first) <= fastest * (1 + NEAR_TIE)]
        chosen = min(ties, key=lambda r: (r["size_bytes"], p50(r, first)))["name"]
    for r in rows:
        r["chosen"] = r["name"] == chosen
    return chosen


def document(rows: list[dict[str, Any]], *, chosen: str | None, parent_dir: str,
             parent_id: str | None, metric: str, higher_is_better: bool, drop_unit: str,
             max_drop: float, target: str, threads: int, batch_sizes: list[int]
             ) -> dict[str, Any]:
    """The ``candidates.json`` document."""
    return {"format": FORMAT, "parent": {"dir": parent_dir, "run_id": parent_id},
            "metric": metric, "higher_is_better": higher_is_better, "max_drop": max_drop,
            "drop_unit": drop_unit, "target": target, "threads": threads,
            "batch_sizes": list(batch_sizes), "chosen": chosen, "candidates": rows}
