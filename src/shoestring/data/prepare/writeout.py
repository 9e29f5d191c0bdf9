"""The writing pass: shards per split, statistics, clusters, label issues,
the resolved config and the report, all from the staged records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomli_w

from shoestring.data.prepare import clusters as cl
from shoestring.data.prepare.config import PrepareConfig
from shoestring.data.prepare.ingest import Ingested
from shoestring.data.prepare.labelspace import LabelSpace
from shoestring.data.prepare.near import NearPairs
from shoestring.data.prepare.records import RecordSource
from shoestring.data.prepare.report import build_report
from shoestring.data.prepare.shards import ShardWriter, write_index
from shoestring.data.prepare.split import SPLIT_NAMES, TRAIN
from shoestring.data.prepare.stats import RunningStats, summarize
from shoestring.io import atomic_write_bytes

# Records copied from staging to shards per step.
COPY_CHUNK = 20_000
# How many duplicate clusters and label issues the report lists in full.
REPORT_EXAMPLES = 10


@dataclass
class Decisions:
    """Everything decided about the staged records (per-record arrays are indexed by id)."""

    reason: np.ndarray        # KEEP, EXACT, NEAR, label issue (3) or test overlap (4)
    dedup: cl.DedupResult
    group: np.ndarray         # kept records with equal group share a split
    kept: np.ndarray          # ids of kept records, ascending
    splits: np.ndarray        # split code of each kept record
    y: np.ndarray
    space: LabelSpace
    near: NearPairs
    issues: dict | None
    use_given: bool
    across: int               # duplicate relations left across splits (0 unless review)


def _raw_scale(source: RecordSource, ing: Ingested) -> float:
    if source.raw_scale is not None:
        return float(source.raw_scale)
    return 1.0 / 255.0 if ing.staging.dtype == np.uint8 else 1.0


def _write_shards(config: PrepareConfig, source: RecordSource, work: Path, ing: Ingested,
                  d: Decisions) -> tuple[dict, dict | None]:
    st = ing.staging
    shard_dir = work / "shards"
    shard_dir.mkdir()
    stats = RunningStats() if source.kind != "text" else None
    splits = {}
    x = st.x() if source.kind != "text" else None
    for code, name in enumerate(SPLIT_NAMES):
        ids = d.kept[d.splits == code]
        # Paragraphs stay separated by a blank line, so a split is the corpus's layout.
        w = ShardWriter(shard_dir, name, source.kind, config.shard_mb << 20,
                        plain_text=source.kind == "text" and d.space.task is None,
                        separator="\n\n" if source.text_unit == "paragraph" else "\n")
        for lo in range(0, len(ids), COPY_CHUNK):
            part = ids[lo:lo + COPY_CHUNK]
            if source.kind == "text":
                labels = [None if v < 0 else (d.space.classes[v] if d.space.classes else v)
                          for v in d.y[part].tolist()]
                w.add_texts(st.texts(part), labels)
            else:
                xs = np.asarray(x[part])
                w.add_arrays(xs, d.y[part], st.groups[part] if st.group_levels else None)
                if code == TRAIN:
                    stats.update(xs)
        splits[name] = w.close()
    meta = _index_meta(source, ing, d, config.tokenizer)
    write_index(shard_dir, source.kind, splits, meta)
    summary = None
    if stats is not None:
        summary = summarize(stats, _raw_scale(source, ing), st.item_shape, source.kind)
        atomic_write_bytes(work / "stats.json", json.dumps(summary).encode())
    return splits, summary


def _index_meta(source: RecordSource, ing: Ingested, d: Decisions, tokenizer: str | None
                ) -> dict:
    st = ing.staging
    display = source.class_names or {}
    meta = {"task": d.space.task,
            "labels": list(d.space.classes),
            "class_names": [display.get(c, c) for c in d.space.classes] or None,
            "feature_names": list(source.feature_names) if source.feature_names else None}
    if source.kind == "text":
        meta["tokenizer"] = tokenizer
    else:
        meta["x"] = {"dtype": str(st.dtype), "shape": list(st.item_shape or ())}
        meta["y"] = {"dtype": "float32" if d.space.task == "regression" else "int64"}
        meta["raw_scale"] = _raw_scale(source, ing)
    if source.group_columns:
        meta["groups"] = {"names": list(source.group_columns),
                          "levels": [list(levels) for levels in st.group_levels]}
    return meta


REASON_NAMES = {cl.KEEP: "kept", cl.EXACT: "exact_duplicate", cl.NEAR: "near_duplicate",
                3: "label_issue", 4: "test_overlap"}


def _cluster_rows(ing: Ingested, d: Decisions) -> list[dict]:
    """One row per cluster with more than one record, largest first."""
    sims = {}
    for (i, j), s in zip(d.near.pairs.tolist(), d.near.similarity.tolist()):
        sims[(i, j)] = sims[(j, i)] = s
    dd = d.dedup
    cluster = cl.clusters_of(dd)
    grouped = np.flatnonzero(np.bincount(cluster)[cluster] > 1)
    if len(grouped) == 0:
        return []
    order = grouped[np.lexsort((grouped, cluster[grouped]))]
    origin = dict(zip(order.tolist(), ing.staging.origins(order)))
    review = {int(cluster[r[0]]) for r in dd.review if len(r)}

    def similarity(m: int) -> float | None:
        rep = int(dd.rep[m]) if dd.rep[m] != m else int(dd.star[m])
        if rep == m:
            return None
        if dd.exact_group[m] == dd.exact_group[rep]:
            return 1.0
        return round(sims.get((int(dd.exact_rep[m]), rep), float("nan")), 4)

    rows = []
    for members in np.split(order, np.flatnonzero(np.diff(cluster[order])) + 1):
        ms = members.tolist()
        rows.append({
            "size": len(ms),
            "kind": "near" if len(np.unique(dd.exact_group[members])) > 1 else "exact",
            "review": int(cluster[ms[0]]) in review,
            "kept": [origin[m] for m in ms if d.reason[m] == cl.KEEP],
            "members": [{"origin": origin[m], "action": REASON_NAMES[int(d.reason[m])],
                         "duplicate_of": origin.get(int(dd.rep[m])) if dd.rep[m] != m else None,
                         "similarity": similarity(m)} for m in ms]})
    rows.sort(key=lambda r: -r["size"])
    return rows


def _issue_rows(ing: Ingested, d: Decisions) -> list[dict]:
    if not d.issues or "confidence" not in d.issues:
        return []
    ids = d.issues["ids"]
    names = d.space.classes
    return [{"origin": o, "given": names[g], "suggested": names[s], "confidence": round(float(c), 4)}
            for o, g, s, c in zip(ing.staging.origins(ids), d.issues["given"],
                                  d.issues["suggested"], d.issues["confidence"])]


def _jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                     for r in rows).encode(), durable=False)


def write_output(config: PrepareConfig, source: RecordSource, work: Path, ing: Ingested,
                 d: Decisions) -> dict:
    splits, stats = _write_shards(config, source, work, ing, d)
    cluster_rows = _cluster_rows(ing, d)
    issue_rows = _issue_rows(ing, d)
    _jsonl(work / "clusters.jsonl", cluster_rows)
    _jsonl(work / "label_issues.jsonl", issue_rows)
    resolved = config.model_dump(mode="json", exclude_none=True)
    atomic_write_bytes(work / "prepare.toml", tomli_w.dumps(resolved).encode())
    report = build_report(config, source, ing, d, splits, stats, cluster_rows, issue_rows,
                          REPORT_EXAMPLES)
    if source.group_columns:
        report["groups"] = _group_counts(source, ing, d)
    return report


def _group_counts(source: RecordSource, ing: Ingested, d: Decisions) -> dict:
    """Kept records per group value and split, for the fairness audit and the model card."""
    st = ing.staging
    out = {}
    for c, name in enumerate(source.group_columns):
        levels = list(st.group_levels[c])
        codes = st.groups[d.kept, c]
        out[name] = {split: {levels[v]: int(n) for v, n in
                             enumerate(np.bincount(codes[d.splits == k], minlength=len(levels)))
                             if n}
                     for k, split in enumerate(SPLIT_NAMES)}
    return out
