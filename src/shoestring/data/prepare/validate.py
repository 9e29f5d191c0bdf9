"""Value rules applied to every batch: finiteness, ranges, label set, text length.

Readers already reject what cannot be decoded; these rules reject what decodes
but is wrong. Each rejection names the record's origin and the rule, and goes
to the quarantine file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoestring.data.prepare.records import Batch, Kind, Reject


@dataclass(frozen=True)
class Rules:
    """The value rules of one preparation (from :class:`PrepareConfig`)."""

    labels: frozenset[str] | None = None
    ranges: dict[str, tuple[float, float]] | None = None
    min_chars: int = 1
    needs_label: bool = False


def check_ranges_known(ranges: dict[str, tuple[float, float]] | None,
                       feature_names: tuple[str, ...] | None) -> list[str]:
    """Range rules that name no feature column (reported as configuration problems)."""
    known = set(feature_names or ())
    return sorted(set(ranges or {}) - known)


def validate_batch(batch: Batch, kind: Kind, rules: Rules,
                   feature_names: tuple[str, ...] | None = None) -> Batch:
    """``batch`` without the records that break a rule; those join ``batch.rejects``."""
    n = len(batch)
    ok = np.ones(n, dtype=bool)
    why: dict[int, Reject] = {}

    def reject(mask: np.ndarray, reason: str, detail) -> None:
        for i in np.flatnonzero(mask & ok):
            why[int(i)] = Reject(batch.origins[i], reason, detail(int(i)))
        ok[mask] = False

    if batch.x is not None and batch.x.dtype.kind == "f":
        flat = batch.x.reshape(n, -1)
        finite = np.isfinite(flat)
        bad = ~finite.all(axis=1)
        cols = feature_names or ()
        reject(bad, "non_finite", lambda i: _first_bad(flat[i], finite[i], cols))
        if kind == "table":
            # Features are stored as float32; larger magnitudes would become inf.
            fits = np.abs(np.where(finite, flat, 0.0)) <= np.finfo(np.float32).max
            reject(~fits.all(axis=1), "non_finite",
                   lambda i: _first_bad(flat[i], fits[i], cols) + " (beyond float32)")
    if kind == "table" and rules.ranges and feature_names:
        for col, (lo, hi) in rules.ranges.items():
            if col not in feature_names:
                continue
            v = batch.x[:, feature_names.index(col)]
            reject((v < lo) | (v > hi), "out_of_range",
                   lambda i, col=col, v=v, lo=lo, hi=hi: f"{col}={v[i]:g} outside [{lo:g}, {hi:g}]")
    if batch.texts is not None:
        short = np.array([len(t.strip()) < rules.min_chars for t in batch.texts], dtype=bool)
        reject(short, "too_short" if rules.min_chars > 1 else "empty_text",
               lambda i: f"{len(batch.texts[i].strip())} characters, minimum {rules.min_chars}")
    if rules.needs_label:
        missing = np.array([lab is None for lab in batch.labels], dtype=bool)
        reject(missing, "missing_label", lambda i: "the record has no label")
    if rules.labels is not None:
        unknown = np.array([lab is not None and lab not in rules.labels for lab in batch.labels],
                           dtype=bool)
        reject(unknown, "unknown_label", lambda i: f"label {batch.labels[i]!r} is not allowed")
    if ok.all():
        return batch
    kept = batch.keep(ok)
    kept.rejects = batch.rejects + [why[i] for i in sorted(why)]
    return kept


def _first_bad(row: np.ndarray, finite: np.ndarray, cols: tuple[str, ...]) -> str:
    j = int(np.flatnonzero(~finite)[0])
    where = f"column {cols[j]!r}" if j < len(cols) else f"value {j}"
    return f"{where} is {row[j]}"
