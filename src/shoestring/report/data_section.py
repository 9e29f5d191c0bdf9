"""The data section: the ``report.json`` of the ``data prepare`` run a run trained on.

Fields (data/prepare/report.py): ``input``, ``kept``, ``dropped`` by reason,
``accounting``, ``invalid_reasons``, ``pii`` counts by type, ``clusters``
(exact/near counts and the largest clusters with their members), ``label_issues``
(found, removed, examples with given/suggested label and confidence),
``splits`` (records per split), ``notes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoestring.report import html as h
from shoestring.report.plots import bar_plot
from shoestring.report.thumbnails import Thumbnailer

MAX_CLUSTERS = 5
MAX_ISSUES = 12


def data_section(report: dict[str, Any], data_dir: Path, anchor: str) -> str:
    parts = [(f"<p class=\"sub\">Prepared by <code>shoestring data prepare</code> from "
             f"<code>{h.esc(report.get('source'))}</code> into <code>{h.esc(data_dir)}</code>."
             "</p>")]
    dropped = report.get("dropped") or {}
    parts.append(h.key_values([("input records", report.get("input")),
                               ("kept", report.get("kept")),
                               ("dropped", sum(dropped.values()) if dropped else 0)]
                              + [(f"split: {k}", v) for k, v in
                                 (report.get("splits") or {}).items()]))
    figs = []
    if dropped:
        figs.append(h.figure(bar_plot(list(dropped), [float(v) for v in dropped.values()],
                                      xlabel="records dropped", title="records dropped by reason",
                                      annotate="{:,.0f}"),
                             "every input record is kept or dropped for one reason",
                             f"{anchor}-drops"))
    splits = report.get("splits") or {}
    if splits:
        figs.append(h.figure(bar_plot(list(splits), [float(v) for v in splits.values()],
                                      xlabel="records", title="records per split",
                                      annotate="{:,.0f}"),
                             "split sizes after cleaning", f"{anchor}-splits"))
    parts.append(h.plots(figs))
    acc = report.get("accounting") or {}
    if acc:
        parts.append(f"<p>Accounting {'holds' if acc.get('holds') else 'is BROKEN'}: "
                     f"{h.esc(acc.get('equation', ''))}.</p>")
    if report.get("invalid_reasons"):
        parts.append("<h3>Invalid records by reason</h3>"
                     + h.table(["reason", "records"], report["invalid_reasons"].items()))
    pii = report.get("pii") or {}
    summary = report.get("pii_summary") or {}
    if pii or summary:
        parts.append("<h3>Personal data found</h3>"
                     f"<p class=\"sub\">mode: {h.esc(summary.get('mode', '—'))}; records with "
                     f"PII: {h.esc(h.fmt(summary.get('records_with_pii', 0)))}</p>"
                     + (h.table(["type", "matches"], pii.items()) if pii else ""))
    thumbs = Thumbnailer(report.get("source"))
    parts.append(_clusters(report.get("clusters") or {}, thumbs))
    parts.append(_issues(report.get("label_issues") or {}, thumbs))
    if report.get("notes"):
        parts.append("<h3>Notes</h3>" + h.notes(report["notes"]))
    return "".join(parts)


def _thumb(thumbs: Thumbnailer, origin: str, caption: str) -> str:
    png = thumbs.png(origin)
    img = h.png_img(png, origin) if png else ""
    return f"<figure>{img}<figcaption>{h.esc(caption)}</figcaption></figure>"


def _clusters(clusters: dict[str, Any], thumbs: Thumbnailer) -> str:
    if not clusters:
        return ""
    exact, near = clusters.get("exact") or {}, clusters.get("near") or {}
    out = ["<h3>Duplicate clusters</h3>", h.table(
        ["kind", "clusters", "records in them"],
        [["exact", exact.get("clusters", 0), exact.get("records", 0)],
         ["near", near.get("clusters", 0), near.get("records", 0)]])]
    for c in (clusters.get("examples") or [])[:MAX_CLUSTERS]:
        members = c.get("members") or []
        out.append(f"<p>{h.esc(c.get('kind'))} cluster of {h.esc(c.get('size'))} records"
                   f"{' (left for review)' if c.get('review') else ''}:</p>")
        out.append('<div class="thumbs">' + "".join(
            _thumb(thumbs, str(m.get("origin")), f"{m.get('origin')} — {m.get('action')}"
                   + (f" (similarity {m['similarity']:.2f})"
                      if isinstance(m.get("similarity"), float) else ""))
            for m in members[:8]) + "</div>")
    return "".join(out)


def _issues(issues: dict[str, Any], thumbs: Thumbnailer) -> str:
    if not issues:
        return ""
    out = [(f"<h3>Label issues</h3><p class=\"sub\">found {h.esc(h.fmt(issues.get('found', 0)))},"
           f" removed {h.esc(h.fmt(issues.get('removed', 0)))}, scored "
           f"{h.esc(h.fmt(issues.get('scored', 0)))} (cleanlab, confident learning)</p>")]
    examples = (issues.get("examples") or [])[:MAX_ISSUES]
    if examples:
        out.append('<div class="thumbs">' + "".join(
            _thumb(thumbs, str(e.get("origin")),
                   f"{e.get('origin')}: labelled {e.get('given')}, looks like "
                   f"{e.get('suggested')} ({h.fmt(e.get('confidence'))})")
            for e in examples) + "</div>")
    return "".join(out)
