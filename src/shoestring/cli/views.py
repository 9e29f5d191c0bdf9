"""What the CLI's list-like commands print: one function per view, each given a Console.

The commands fetch their rows through the Python API and hand them here;
:mod:`shoestring.cli.layout` fits them to the console's width (a table, or
stacked rows), so names, values and paths are never cut.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console

from shoestring.cli.layout import Column, print_table

# The metric `runs` shows: the first of these a run recorded.
RUN_METRICS = ("test_accuracy", "test_mse", "val_accuracy", "val_mse", "val_loss")


def run_metric(row: dict[str, Any]) -> str:
    """The headline metric of a ledger row, e.g. ``test_accuracy 0.9722``.

    >>> run_metric({"test_accuracy": None, "val_loss": 1.83421})
    'val_loss 1.8342'
    """
    key = next((k for k in RUN_METRICS if row.get(k) is not None), None)
    return f"{key} {row[key]:.4f}" if key else ""


def _started(iso: str | None) -> str:
    """``2026-11-29T11:49:41+00:00`` as ``2026-11-29 11:49:41`` (the ledger writes UTC)."""
    return (iso or "")[:19].replace("T", " ")


def print_runs(console: Console, rows: Sequence[dict[str, Any]], title: str) -> None:
    """``shoestring runs``: the latest runs, with their stop reason and run folder."""
    columns = [Column("name"), Column("status"), Column("stop reason"), Column("model"),
               Column("data"), Column("metric"), Column("started (UTC)", wrap=False),
               Column("wall s", "right", wrap=False),
               Column("$", "right", wrap=False, label="cost $"), Column("folder")]
    print_table(console, title, columns, [
        [r["name"], r["status"], r.get("stop_reason") or r.get("error") or "", r["model"],
         r["data"], run_metric(r), _started(r["started_at"]), f"{r['wall_seconds'] or 0:.2f}",
         f"{r['cost_usd'] or 0:.4f}", r.get("out_dir") or ""]
        for r in rows], groups=[(1, 2), (3, 4, 5), (6, 7, 8), (9,)])


def print_quickstart(console: Console, stages: Sequence[dict[str, Any]]) -> None:
    """The quickstart's stages: what each did, its result, time, cost and where it is."""
    columns = [Column("stage"), Column("what"), Column("result"),
               Column("seconds", "right", wrap=False), Column("cost $", "right", wrap=False),
               Column("where")]
    print_table(console, "Shoestring quickstart", columns, [
        [s["stage"], s["what"], s["result"], f"{s['seconds']:.2f}", f"{s['cost_usd']:.4f}",
         s["where"]] for s in stages], heading=(0, 1), groups=[(2,), (3, 4), (5,)])


def print_metrics(console: Console, title: str, metrics: dict[str, Any]) -> None:
    """``eval``: one metric a row."""
    print_table(console, title, [Column("metric"), Column("value", "right")], [
        [k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in metrics.items()])


def print_keys(console: Console, keys: Sequence[dict[str, Any]]) -> None:
    """``keys list``: ids in full (``keys revoke`` takes them), secrets never."""
    columns = [Column("id", wrap=False), Column("prefix", wrap=False), Column("project"),
               Column("plan"), Column("quota", "right"), Column("created (UTC)", wrap=False),
               Column("state")]
    print_table(console, "API keys", columns, [
        [k["id"], k["prefix"] + "…", k["project"], k["plan"],
         str(k["monthly_quota_units"] or "plan"), _started(k["created_at"]),
         "active" if k["active"] else f"revoked {_started(k['revoked_at'])}"] for k in keys])


def print_usage(console: Console, project: str, summary: dict[str, Any]) -> None:
    """``usage``: requests, units and cost per key, and the total."""
    columns = [Column("key"), Column("requests", "right", wrap=False),
               Column("units", "right", wrap=False), Column("cost $", "right", wrap=False)]
    rows = [[f"{k['prefix']}… ({k['key_id']})", str(k["requests"]), str(k["units"]),
             f"{k['cost_usd']:.4f}"] for k in summary["keys"]]
    rows.append(["total", str(summary["requests"]), str(summary["units"]),
                 f"{summary['cost_usd']:.4f}"])
    print_table(console, f"usage of {project} in {summary['month']}", columns, rows)


def print_invoice(console: Console, project: str, invoice: dict[str, Any]) -> None:
    """``invoice``: a line per plan and model, and the total."""
    columns = [Column("plan"), Column("model"), Column("requests", "right", wrap=False),
               Column("units", "right", wrap=False),
               Column("$ / 1000 units", "right", wrap=False),
               Column("amount $", "right", wrap=False)]
    rows = [[ln["plan"], ln["model"], str(ln["requests"]), str(ln["units"]),
             f"{ln['price_per_1000_units_usd']:.4f}", f"{ln['amount_usd']:.4f}"]
            for ln in invoice["lines"]]
    rows.append(["total", "", "", "", "", f"{invoice['total_usd']:.4f}"])
    print_table(console, f"Invoice: {project}, {invoice['month']}", columns, rows)


def print_leakage_examples(console: Console, examples: Sequence[dict[str, Any]]) -> None:
    """``data leakage``: test records found in train, with the train record they match."""
    columns = [Column("kind"), Column("test"), Column("train"),
               Column("similarity", "right", wrap=False)]
    print_table(console, "examples", columns, [
        [e["kind"], str(e["test"]), str(e["train"]), f"{e['similarity']:.3f}"]
        for e in examples], heading=(1,))


__all__ = ["print_invoice", "print_keys", "print_leakage_examples", "print_metrics",
           "print_quickstart", "print_runs", "print_usage", "run_metric"]
