"""The training section of one run, and the overlay of several runs.

Curves come from ``metrics.jsonl`` (one line per evaluation: ``step``,
``epoch``, ``elapsed_seconds``, ``train_loss`` and the evaluation's metrics),
against steps and against dollars (``elapsed_seconds × price_per_hour / 3600``,
the engine's own cost formula); headline numbers and the time breakdown come
from ``summary.json``; the configuration is the resolved ``config.toml``.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoestring.report import html as h
from shoestring.report.plan_check import plan_vs_measured
from shoestring.report.plots import COLORS, STYLES, Series, bar_plot, line_plot
from shoestring.report.run_view import RunView

YLABELS = {"loss": "loss (training objective)", "accuracy": "accuracy (fraction correct)",
           "ppl": "perplexity", "mse": "MSE (target units²)", "r2": "R²",
           "mae": "MAE (target units)"}
# Summary fields shown as headline figures, with their labels, in this order.
HEADLINE = (("status", "status"), ("steps", "steps"), ("epochs_run", "epochs"),
            ("train_seconds", "training seconds"), ("cost_usd", "cost $"),
            ("samples_per_second", "samples / s"), ("tokens_per_second", "tokens / s"),
            ("mfu", "MFU (model FLOPs utilization)"), ("test_accuracy", "test accuracy"),
            ("baseline_test_accuracy", "baseline accuracy"), ("test_loss", "test loss"),
            ("test_mse", "test MSE"), ("test_r2", "test R²"), ("val_loss", "validation loss"),
            ("val_ppl", "validation perplexity"), ("epsilon", "privacy ε"),
            ("parameters", "parameters"), ("peak_memory_bytes", "peak memory bytes"),
            ("threads", "threads"), ("device_name", "device"))


HEADLINE_MFU = "MFU (model FLOPs utilization)"


def metric_groups(keys: Sequence[str]) -> dict[str, list[str]]:
    """Logged metric names grouped by what they measure (their suffix): one plot each.

    >>> metric_groups(["train_loss", "val_loss", "val_accuracy", "val_ppl"])
    {'loss': ['train_loss', 'val_loss'], 'accuracy': ['val_accuracy'], 'ppl': ['val_ppl']}
    """
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(k.rsplit("_", 1)[-1], []).append(k)
    return groups


def dollar_axis(run: RunView) -> tuple[str, float, str]:
    """(x field, scale, label) of the cost axis: dollars when the run had a price."""
    if run.price_per_hour > 0:
        return ("elapsed_seconds", run.price_per_hour / 3600.0,
                f"cost, $ (at ${run.price_per_hour:g}/hour)")
    return ("elapsed_seconds", 1.0, "wall seconds (no price per hour set, so $0)")


def _label(key: str) -> str:
    return key.replace("_", " ")


def curves(run: RunView, anchor: str) -> list[str]:
    """The run's curves: each metric group against steps, and against dollars."""
    figures = []
    x_field, scale, x_label = dollar_axis(run)
    for group, keys in metric_groups(run.metrics.keys()).items():
        ylabel = YLABELS.get(group, group)
        by_step = [Series(_label(k), *run.metrics.series(k)) for k in keys]
        by_step = [s for s in by_step if s.xs]
        if not by_step:
            continue
        figures.append(h.figure(
            line_plot(by_step, xlabel="step", ylabel=ylabel, title=f"{ylabel} by step",
                      logy=group in ("loss", "ppl")),
            f"{', '.join(_label(k) for k in keys)} against optimizer steps",
            f"{anchor}-{group}-by-step"))
        by_cost = []
        for s, k in zip(by_step, keys):
            xs, ys = run.metrics.series(k, x=x_field)
            by_cost.append(Series(s.label, [x * scale for x in xs], ys))
        by_cost = [s for s in by_cost if s.xs]
        if by_cost:
            what = "dollars" if scale != 1.0 else "wall seconds"
            figures.append(h.figure(
                line_plot(by_cost, xlabel=x_label, ylabel=ylabel,
                          title=f"{ylabel} by {what}", logy=group in ("loss", "ppl")),
                f"{', '.join(_label(k) for k in keys)} against {what} spent training",
                f"{anchor}-{group}-by-cost"))
    return figures


def time_breakdown(run: RunView, anchor: str) -> str:
    seconds = (run.summary or {}).get("seconds")
    if not isinstance(seconds, dict) or not seconds:
        return ""
    items = [(k, float(v)) for k, v in seconds.items() if isinstance(v, (int, float))]
    if not items:
        return ""
    total = sum(v for _, v in items)
    svg = bar_plot([k for k, _ in items], [v for _, v in items], xlabel="seconds",
                   title=f"where the {total:,.2f} s went")
    return h.figure(svg, "wall time by phase (summary.json 'seconds')", f"{anchor}-time")


def headline(run: RunView) -> str:
    s = run.summary or {}
    if isinstance(s.get("privacy"), dict):  # a DP run: ε spent (train/privacy.py's layout)
        s = {**s, "epsilon": s["privacy"].get("epsilon")}
    items = [("status", run.status)] + [(label, s[k]) for k, label in HEADLINE[1:]
                                       if s.get(k) is not None]
    if s.get("mfu") is not None:
        items = [(lbl, v) if lbl != HEADLINE_MFU else (lbl, f"{100 * s['mfu']:.2f}%")
                 for lbl, v in items]
    if "peak_memory_bytes" in s:
        items = [(lbl, v) if lbl != "peak memory bytes" else
                 ("peak memory (MiB)", s["peak_memory_bytes"] / 2**20) for lbl, v in items]
    return h.key_values(items)


def plan_table(run: RunView) -> str:
    rows, why = plan_vs_measured(run.card, run.config_text, run.summary)
    if not rows:
        return f"<p class=\"sub\">Plan vs measured: {h.esc(why)}.</p>"
    body = [[r.what, r.unit, r.planned, r.measured,
             None if r.ratio is None else f"{r.ratio:.2f}×", r.note] for r in rows]
    return ("<h3>The plan's prediction vs what was measured</h3>"
            + h.table(["", "unit", "planned", "measured", "measured / planned", "note"], body))


def training_section(run: RunView, anchor: str) -> str:
    parts = [h.notes(run.notes), headline(run)]
    figs = curves(run, anchor)
    tb = time_breakdown(run, anchor)
    if tb:
        figs.append(tb)
    if not figs:
        parts.append("<p class=\"sub\">No curves: metrics.jsonl has no evaluation yet.</p>")
    parts.append(h.plots(figs))
    if run.summary is not None:
        parts.append(plan_table(run))
    if run.config_text:
        parts.append("<h3>Resolved configuration (config.toml)</h3>" + h.pre(run.config_text))
    return "".join(parts)


def short_source(spec: str | None) -> str | None:
    """``text:/long/path/corpus.txt`` → ``text:…/corpus.txt`` (the folders are in the subtitle).

    >>> short_source("text:/a/b/corpus.txt"), short_source("digits")
    ('text:…/corpus.txt', 'digits')
    """
    if not spec or ":" not in spec:
        return spec
    scheme, rest = spec.split(":", 1)
    parts = rest.rstrip("/").rsplit("/", 1)
    return f"{scheme}:…/{parts[1]}" if len(parts) == 2 and parts[0] else spec


def _headline_metric(run: RunView) -> tuple[str, float | None]:
    s = run.summary or {}
    for k in ("test_accuracy", "test_mse", "val_loss", "test_loss"):
        if s.get(k) is not None:
            return k, s[k]
    return "", None


def comparison_section(runs: Sequence[RunView]) -> str:
    """Several runs: a table of their headline numbers and their losses overlaid."""
    rows = []
    for r in runs:
        s = r.summary or {}
        metric, value = _headline_metric(r)
        rows.append([r.name, r.status, s.get("model"), short_source(s.get("data")),
                     s.get("steps"), s.get("train_seconds"), s.get("cost_usd"),
                     s.get("samples_per_second"), metric, value])
    table = h.table(["run", "status", "model", "data", "steps", "seconds", "cost $",
                     "samples/s", "metric", "value"], rows)
    figures = []
    groups: dict[str, None] = {}
    for r in runs:
        for g in metric_groups(r.metrics.keys()):
            groups.setdefault(g)
    priced = all(r.price_per_hour > 0 for r in runs)
    for group in groups:
        by_step, by_cost = [], []
        for i, r in enumerate(runs):
            color = COLORS[i % len(COLORS)]
            for j, k in enumerate(metric_groups(r.metrics.keys()).get(group, [])):
                style = STYLES[j % len(STYLES)]
                xs, ys = r.metrics.series(k)
                if xs:
                    by_step.append(Series(f"{r.name}: {_label(k)}", xs, ys, color, style))
                cx, cy = r.metrics.series(k, x="elapsed_seconds")
                scale = r.price_per_hour / 3600.0 if priced else 1.0
                if cx:
                    by_cost.append(Series(f"{r.name}: {_label(k)}", [x * scale for x in cx], cy,
                                          color, style))
        ylabel = YLABELS.get(group, group)
        if by_step:
            figures.append(h.figure(
                line_plot(by_step, xlabel="step", ylabel=ylabel, title=f"{ylabel} by step",
                          logy=group in ("loss", "ppl"), height=3.6),
                "runs overlaid: one colour per run, one line style per split",
                f"compare-{group}-by-step"))
        if by_cost:
            xl = "cost, $" if priced else "wall seconds (not every run has a price per hour)"
            figures.append(h.figure(
                line_plot(by_cost, xlabel=xl, ylabel=ylabel,
                          title=f"{ylabel} by {'dollars' if priced else 'wall seconds'}",
                          logy=group in ("loss", "ppl"), height=3.6),
                "runs overlaid against what they spent", f"compare-{group}-by-cost"))
    return table + h.plots(figures)
