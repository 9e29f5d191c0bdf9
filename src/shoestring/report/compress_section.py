"""The compression section: ``compress/candidates.json`` (format
``shoestring.compress.candidates/1``, documented in docs/compress.md), as a Pareto chart
and the candidates table with the chosen one marked."""

from __future__ import annotations

from typing import Any

from shoestring.report import html as h
from shoestring.report.plots import Point, scatter_plot


def _p50(row: dict[str, Any], batch: int) -> float | None:
    return ((row.get("latency") or {}).get(str(batch)) or {}).get("p50_ms")


def compress_section(table: dict[str, Any], anchor: str) -> str:
    rows = [r for r in table.get("candidates") or [] if isinstance(r, dict)]
    if not rows:
        return "<p class=\"sub\">The compression table lists no candidates.</p>"
    batches = [int(b) for b in table.get("batch_sizes") or [1]]
    first = batches[0]
    metric = table.get("metric", "metric")
    unit = table.get("drop_unit", "")
    chosen = table.get("chosen")
    parts = [(f"<p class=\"sub\">Parent <code>{h.esc((table.get('parent') or {}).get('dir'))}"
             f"</code>; budget: at most {h.esc(h.fmt(table.get('max_drop')))} {h.esc(unit)} of "
             f"{h.esc(metric)}; {h.esc(h.fmt(table.get('threads')))} thread(s) on "
             f"{h.esc(table.get('target', 'cpu'))}. Chosen: <b>"
             f"{h.esc(chosen or 'none (no candidate met the budget)')}</b>.</p>")]
    pts_lat, pts_size = [], []
    for r in rows:
        p50 = _p50(r, first)
        label = r.get("name", "?")
        if p50 is not None and r.get("metric") is not None:
            pts_lat.append(Point(label, p50, r["metric"], r.get("chosen", False),
                                 r.get("pareto", False)))
        if r.get("size_bytes") and r.get("metric") is not None:
            pts_size.append(Point(label, r["size_bytes"] / 1024, r["metric"],
                                  r.get("chosen", False), r.get("pareto", False)))
    figs = []
    if pts_lat:
        figs.append(h.figure(scatter_plot(pts_lat, xlabel=f"p50 latency at batch {first}, ms",
                                          ylabel=metric, title=f"{metric} vs latency"),
                             "each candidate measured on this machine; dashed: the Pareto "
                             "front (size, latency, metric); circled: chosen",
                             f"{anchor}-pareto-latency"))
    if pts_size:
        figs.append(h.figure(scatter_plot(pts_size, xlabel="size on disk, KiB", ylabel=metric,
                                          title=f"{metric} vs size", logx=True),
                             "model.safetensors of each candidate", f"{anchor}-pareto-size"))
    parts.append(h.plots(figs))
    headers = ["candidate", "KiB", *[f"p50 @{b} ms" for b in batches],
               *[f"×faster @{b}" for b in batches], "×smaller", metric, f"drop ({unit})",
               "Pareto", "flags"]
    body, classes = [], []
    for r in rows:
        speed = r.get("speedup") or {}
        body.append([r.get("name"), (r.get("size_bytes") or 0) / 1024,
                     *[_p50(r, b) for b in batches], *[speed.get(str(b)) for b in batches],
                     r.get("size_ratio"), r.get("metric"), r.get("metric_drop"),
                     bool(r.get("pareto")), ", ".join(r.get("flags") or [])])
        classes.append("chosen" if r.get("chosen") else "")
    parts.append(h.table(headers, body, row_classes=classes))
    return "".join(parts)
