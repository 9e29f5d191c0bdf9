"""The audit section: the files ``shoestring audit`` leaves in ``RUN/audit/``
(named in docs/audit.md): explanation heatmaps (``heatmaps/*.png``), the surrogate tree
(``surrogate.png`` / ``surrogate.txt``), the fairness table with bootstrap intervals
(``fairness.json``: per group column, ``columns[name].groups[].metrics[m] = {value, ci}``,
``gaps``, ``warnings``), and the
generated model card (``model_card.md``). Each part appears when its file exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoestring.io import read_bytes, read_text
from shoestring.report import html as h

MAX_HEATMAPS = 8


def _interval(cell: Any) -> str:
    if not isinstance(cell, dict):
        return h.fmt(cell)
    ci = cell.get("ci")
    value = h.fmt(cell.get("value"))
    return f"{value} [{h.fmt(ci[0])}, {h.fmt(ci[1])}]" if isinstance(ci, list) and \
        len(ci) == 2 else value


def _fairness(data: dict[str, Any]) -> str:
    """fairness.json holds one table per group column under ``columns`` (a single
    column's table, ``{groups, gaps, warnings}``, is accepted on its own too)."""
    columns = data.get("columns")
    if isinstance(columns, dict):
        return "".join(_fairness_column(name, col) for name, col in columns.items()
                       if isinstance(col, dict))
    return _fairness_column(None, data)


def _fairness_column(name: str | None, data: dict[str, Any]) -> str:
    groups = data.get("groups")
    if not isinstance(groups, list) or not groups:
        return ""
    metrics = list(dict.fromkeys(m for g in groups for m in (g.get("metrics") or {})))
    rows = [[g.get("group"), g.get("n"), *[_interval((g.get("metrics") or {}).get(m))
                                           for m in metrics]] for g in groups]
    title = "Fairness by group" + (f" ({h.esc(name)})" if name else "")
    out = [f"<h3>{title}, 95% bootstrap intervals</h3>",
           h.table(["group", "examples", *metrics], rows)]
    gaps = {k: v for k, v in (data.get("gaps") or {}).items()
            if isinstance(v, dict) and "value" in v}
    if gaps:
        out.append(h.table(["gap (highest − lowest group)", "value [interval]", "highest",
                            "lowest"], [[k, _interval(v), v.get("highest"), v.get("lowest")]
                                        for k, v in gaps.items()]))
    out.append(h.notes(data.get("warnings") or []))
    return "".join(out)


def audit_section(audit_dir: Path, summary: dict[str, Any] | None) -> str:
    parts: list[str] = []
    dp = (summary or {}).get("privacy")  # as training writes it (train/privacy.py)
    if isinstance(dp, dict) and dp.get("epsilon") is not None:
        parts.append(h.key_values([("privacy ε spent (DP-SGD)", dp["epsilon"]),
                                   ("δ", dp.get("delta")),
                                   ("noise multiplier σ", dp.get("noise_multiplier")),
                                   ("sample rate", dp.get("sample_rate")),
                                   ("max grad norm", dp.get("max_grad_norm")),
                                   ("accountant", dp.get("accountant"))]))
    heatmaps = sorted((audit_dir / "heatmaps").glob("*.png"))[:MAX_HEATMAPS]
    if heatmaps:
        parts.append("<h3>Explanations</h3><div>" + "".join(
            h.png_img(read_bytes(p), f"explanation heatmap {p.stem}", "wide")
            for p in heatmaps) + "</div>")
    if (audit_dir / "surrogate.png").is_file():
        parts.append("<h3>Surrogate decision tree</h3>"
                     + h.png_img(read_bytes(audit_dir / "surrogate.png"),
                                 "surrogate decision tree", "wide"))
    elif (audit_dir / "surrogate.txt").is_file():
        parts.append("<h3>Surrogate decision tree</h3>"
                     + h.pre(read_text(audit_dir / "surrogate.txt", errors="replace")))
    fairness = audit_dir / "fairness.json"
    if fairness.is_file():
        try:
            parts.append(_fairness(json.loads(read_text(fairness))))
        except ValueError as exc:
            parts.append(h.notes([f"fairness.json could not be read ({exc})"]))
    card = audit_dir / "model_card.md"
    if card.is_file():
        parts.append("<h3>Model card</h3>" + h.pre(read_text(card, errors="replace")))
    return "".join(parts)
