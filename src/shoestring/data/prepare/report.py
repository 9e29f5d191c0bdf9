"""The preparation report: ``report.json`` and its readable terminal summary.

The report accounts for every input record: ``input = kept + sum(dropped)``,
where ``dropped`` maps each reason (``invalid``, ``exact_duplicate``,
``near_duplicate``, ``label_issue``, ``test_overlap``) to a count. The
invariant is checked before anything is written; a mismatch is a bug and
stops the preparation rather than publish numbers that do not add up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from shoestring.data.prepare import clusters as cl
from shoestring.errors import DataError, ShoestringError
from shoestring.io import read_text

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import RenderableType

DROP_REASONS = ("invalid", "exact_duplicate", "near_duplicate", "label_issue", "test_overlap")


def accounting(input_count: int, kept: int, dropped: dict[str, int]) -> dict:
    """The invariant, checked: raises if ``input != kept + sum(dropped)``.

    >>> accounting(10, 7, {"invalid": 2, "exact_duplicate": 1})["holds"]
    True
    """
    total = kept + sum(dropped.values())
    if total != input_count:
        raise ShoestringError(
            f"record accounting does not add up: input {input_count} != kept {kept} + "
            f"dropped {sum(dropped.values())} ({dropped})",
            hint="this is a bug in Shoestring; please report it with the source format")
    return {"input": input_count, "kept": kept, "dropped_total": sum(dropped.values()),
            "holds": True, "equation": " + ".join(
                [f"{input_count} = {kept} kept"]
                + [f"{v} {k}" for k, v in dropped.items() if v])}


def build_report(config, source, ing, d, splits: dict, stats: dict | None,
                 cluster_rows: list[dict], issue_rows: list[dict], examples: int) -> dict:
    reason = d.reason
    dropped = {
        "invalid": int(sum(ing.invalid.values())),
        "exact_duplicate": int((reason == cl.EXACT).sum()),
        "near_duplicate": int((reason == cl.NEAR).sum()),
        "label_issue": int((reason == 3).sum()),
        "test_overlap": int((reason == 4).sum()),
    }
    kept = int((reason == cl.KEEP).sum())
    exact_rows = [r for r in cluster_rows if r["kind"] == "exact"]
    near_rows = [r for r in cluster_rows if r["kind"] == "near"]
    return {
        "source": config.source,
        "kind": source.kind,
        "input": ing.input,
        "kept": kept,
        "dropped": dropped,
        "accounting": accounting(ing.input, kept, dropped),
        "invalid_reasons": dict(sorted(ing.invalid.items())),
        "converted_image_mode": ing.converted,
        "pii": dict(sorted(ing.pii.items())),
        "pii_summary": {"mode": config.pii, "records_with_pii": ing.pii_records,
                        "types_searched": list(config.pii_types),
                        "example_origins": ing.pii_examples},
        "clusters": {
            "total": len(cluster_rows),
            "exact": {"clusters": len(exact_rows),
                      "records": sum(r["size"] for r in exact_rows)},
            "near": {"clusters": len(near_rows), "records": sum(r["size"] for r in near_rows),
                     "candidate_pairs": d.near.candidates,
                     "verified_pairs": len(d.near.pairs),
                     "rejected_by_verification": d.near.below_threshold,
                     "largest_bucket": d.near.stats.largest_bucket,
                     "capped_buckets": d.near.stats.buckets_capped},
            "largest": max((r["size"] for r in cluster_rows), default=0),
            "review": [{"size": r["size"], "examples": [m["origin"] for m in r["members"][:5]]}
                       for r in cluster_rows if r["review"]],
            "examples": cluster_rows[:examples],
            "file": "clusters.jsonl",
        },
        "label_issues": {
            "found": len(issue_rows),
            "removed": dropped["label_issue"],
            "scored": (d.issues or {}).get("scored", 0),
            "skipped": (d.issues or {}).get("skipped"),
            "examples": sorted(issue_rows, key=lambda r: -r["confidence"])[:examples],
            "file": "label_issues.jsonl",
        },
        "splits": {name: s["records"] for name, s in splits.items()},
        "split_mode": "given" if d.use_given else "random",
        "duplicates_across_splits": d.across,
        "task": d.space.task,
        "classes": list(d.space.classes),
        "normalization": None if stats is None else {
            k: v for k, v in stats.items() if k in ("count", "scale", "channel_mean",
                                                      "channel_std")} | {"file": "stats.json"},
        "tokenizer": config.tokenizer,
        "notes": list(source.notes),
    }


def load_report(directory: Path) -> dict:
    path = Path(directory) / "report.json"
    try:
        return json.loads(read_text(path))
    except FileNotFoundError:
        raise DataError(f"no report in '{directory}'",
                        hint="is it a folder written by 'shoestring data prepare'?") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"'{path}' is not valid JSON: {exc.msg}",
                        hint="prepare the data again") from None


def render_report(report: dict) -> list[RenderableType]:
    """Rich tables summarising a report (the CLI prints them; plain text off a terminal).

    Cells fold rather than end in an ellipsis: on a narrow terminal a long
    label or value goes on onto the next line instead of being cut.
    """
    from rich.table import Table

    head = Table(title=f"data prepare: {report['source']} ({report['kind']})",
                 show_header=False)
    head.add_column("what")
    head.add_column("count", justify="right")
    head.add_row("input records", f"{report['input']:,}")
    head.add_row("kept", f"{report['kept']:,}")
    for reason, count in report["dropped"].items():
        head.add_row(f"dropped: {reason}", f"{count:,}")
    acc = report["accounting"]
    head.add_row("accounting", ("holds" if acc["holds"] else "BROKEN") + f": {acc['equation']}")
    for name, count in report["splits"].items():
        head.add_row(f"split: {name}", f"{count:,}")
    cl_ = report["clusters"]
    head.add_row("duplicate clusters (exact / near)",
                 f"{cl_['exact']['clusters']:,} / {cl_['near']['clusters']:,}")
    head.add_row("near pairs verified / rejected",
                 f"{cl_['near']['verified_pairs']:,} / {cl_['near']['rejected_by_verification']:,}")
    if cl_["review"]:
        head.add_row("clusters left for review", f"{len(cl_['review'])}")
    text = report.get("text")
    if text:
        head.add_row("text unit", text["unit"])
        head.add_row(f"short units (< {text['dedup_min_chars']} chars) kept / repeats among them",
                     f"{text['short_units']:,} / {text['short_repeats_kept']:,}")
    li = report["label_issues"]
    head.add_row("label issues (found / removed)", f"{li['found']:,} / {li['removed']:,}")
    head.add_row("seconds", f"{report['elapsed_seconds']:.2f}")
    out: list = [head]
    if report["invalid_reasons"]:
        t = Table(title="quarantined (quarantine.jsonl)")
        t.add_column("reason")
        t.add_column("records", justify="right")
        for k, v in report["invalid_reasons"].items():
            t.add_row(k, f"{v:,}")
        out.append(t)
    if report["pii"]:
        t = Table(title=f"PII found (mode: {report['pii_summary']['mode']})")
        t.add_column("type")
        t.add_column("items", justify="right")
        for k, v in report["pii"].items():
            t.add_row(k, f"{v:,}")
        out.append(t)
    for table in out:
        for column in table.columns:
            column.overflow = "fold"
    return out
