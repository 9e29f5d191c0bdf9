"""Per-group metrics with bootstrap intervals, and the gaps between groups.

For each group column: every group's accuracy and error rate (classification;
for a binary task also its selection rate, true- and false-positive rates) or
mean squared and absolute error (regression), each with a percentile
bootstrap interval (Efron & Tibshirani 1993, ch. 13). Resampling is done
within each group, so every resample keeps the group sizes that were
observed, which is what a comparison between groups conditions on.

The gaps are Fairlearn's definitions (Bird et al. 2020, "Fairlearn: A toolkit
for assessing and improving fairness in AI"): a metric's *difference* is its
largest minus its smallest group value; the demographic-parity difference is
that of the selection rate; the equalized-odds difference is the larger of
the true-positive-rate and false-positive-rate differences (Hardt et al. 2016).
A multi-class model is judged one class against the rest and the largest
difference over classes is reported. Point values come from Fairlearn's
``MetricFrame`` and its ``demographic_parity_difference`` /
``equalized_odds_difference``; the intervals from the vectorized bootstrap here
(Fairlearn's own bootstrap rebuilds a ``MetricFrame`` per resample, ~100×
slower). Groups smaller than ``min_group`` are listed with a warning and left
out of the gaps: their rates are too uncertain to compare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CI = (2.5, 97.5)  # a 95% percentile interval

Stat = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (y [B, n], pred [B, n]) -> [B]


def _rate(hit: np.ndarray, among: np.ndarray) -> np.ndarray:
    n = among.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (hit & among).sum(axis=-1) / np.maximum(n, 1), np.nan)


def classification_stats(classes: Sequence[int]) -> dict[str, Stat]:
    """Statistics of one group's resampled labels and predictions (rows are resamples)."""
    stats: dict[str, Stat] = {
        "accuracy": lambda y, p: (y == p).mean(axis=-1),
        "error_rate": lambda y, p: (y != p).mean(axis=-1),
    }
    if len(classes) == 2:
        pos = classes[1]
        stats.update({
            "selection_rate": lambda y, p: (p == pos).mean(axis=-1),
            "true_positive_rate": lambda y, p: _rate(p == pos, y == pos),
            "false_positive_rate": lambda y, p: _rate(p == pos, y != pos),
        })
    return stats


def regression_stats() -> dict[str, Stat]:
    return {"mse": lambda y, p: ((y - p) ** 2).mean(axis=-1),
            "mae": lambda y, p: np.abs(y - p).mean(axis=-1)}


def _ovr_stats(c: int) -> dict[str, Stat]:
    return {"selection_rate": lambda y, p: (p == c).mean(axis=-1),
            "true_positive_rate": lambda y, p: _rate(p == c, y == c),
            "false_positive_rate": lambda y, p: _rate(p == c, y != c)}


def _interval(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    lo, hi = np.percentile(values, CI)
    return [round(float(lo), 6), round(float(hi), 6)]


def _boot_index(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


def _fairlearn_points(y: np.ndarray, pred: np.ndarray, groups: np.ndarray,
                      metrics: dict[str, Callable]) -> dict[str, dict[str, float]]:
    from fairlearn.metrics import MetricFrame

    frame = MetricFrame(metrics=metrics, y_true=y, y_pred=pred, sensitive_features=groups)
    table = frame.by_group
    return {str(g): {m: float(table.loc[g, m]) for m in metrics} for g in table.index}


def _fairlearn_metrics(task: str, classes: Sequence[int]) -> dict[str, Callable]:
    from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error

    if task != "classification":
        return {"mse": mean_squared_error, "mae": mean_absolute_error}
    metrics: dict[str, Callable] = {
        "accuracy": accuracy_score,
        "error_rate": lambda y, p: 1.0 - accuracy_score(y, p)}
    if len(classes) == 2:
        pos = classes[1]
        metrics.update({
            "selection_rate": lambda y, p: selection_rate(y, p, pos_label=pos),
            "true_positive_rate": lambda y, p: true_positive_rate(y, p, pos_label=pos),
            "false_positive_rate": lambda y, p: false_positive_rate(y, p, pos_label=pos)})
    return metrics


def group_fairness(y: np.ndarray, pred: np.ndarray, groups: Sequence[str], *, task: str,
                   classes: Sequence[int] = (), class_names: Sequence[str] | None = None,
                   n_boot: int = 300, seed: int = 0, min_group: int = 30) -> dict[str, Any]:
    """Metrics per group of one column, their intervals, and the gaps between groups."""
    y, pred, groups = np.asarray(y), np.asarray(pred), np.asarray(groups, dtype=object)
    rng = np.random.default_rng(seed)
    stats = classification_stats(classes) if task == "classification" else regression_stats()
    points = _fairlearn_points(y, pred, groups, _fairlearn_metrics(task, classes))
    levels = sorted(points, key=lambda g: (-int((groups == g).sum()), g))
    rows, boots, warnings = [], {}, []
    for g in levels:
        idx = np.flatnonzero(groups == g)
        small = len(idx) < min_group
        if small:
            warnings.append(f"group {g!r} has {len(idx)} examples (fewer than {min_group}): "
                            "too small to judge; left out of the gaps")
        b = _boot_index(len(idx), n_boot, rng)
        yb, pb = y[idx][b], pred[idx][b]
        sampled = {name: stat(yb, pb) for name, stat in stats.items()}
        if task == "classification" and len(classes) > 2:
            for c in classes:
                for name, stat in _ovr_stats(c).items():
                    sampled[f"{name}[{c}]"] = stat(yb, pb)
                    points[g][f"{name}[{c}]"] = float(stat(y[idx][None], pred[idx][None])[0])
        if not small:
            boots[g] = sampled
        rows.append({"group": g, "n": len(idx), "too_small": small,
                     "metrics": {m: {"value": round(points[g][m], 6),
                                     "ci": _interval(sampled[m])}
                                 for m in stats}})
    result: dict[str, Any] = {"groups": rows, "gaps": {}, "warnings": warnings}
    judged = [g for g in levels if g in boots]
    if len(judged) < 2:
        warnings.append("fewer than two groups are large enough to compare: no gaps reported")
        return result
    result["gaps"] = _gaps(points, boots, judged, stats, task, classes)
    if task == "classification" and len(classes) == 2:
        result["gaps"]["fairlearn"] = _fairlearn_differences(y, pred, groups, judged, classes)
    if class_names is not None and task == "classification" and len(classes) == 2:
        result["positive_class"] = class_names[classes[1]]
    return result


def _difference(values: dict[str, Any], judged: list[str]) -> Any:
    stacked = np.stack([np.asarray(values[g], dtype=float) for g in judged])
    return np.nanmax(stacked, axis=0) - np.nanmin(stacked, axis=0)


def _gaps(points, boots, judged, stats, task, classes) -> dict[str, Any]:
    gaps: dict[str, Any] = {}
    for m in stats:
        point = {g: points[g][m] for g in judged}
        gaps[m] = {"value": round(float(_difference(point, judged)), 6),
                   "ci": _interval(_difference({g: boots[g][m] for g in judged}, judged)),
                   "highest": max(judged, key=point.get), "lowest": min(judged, key=point.get)}
    if task != "classification":
        return gaps
    names = ["selection_rate", "true_positive_rate", "false_positive_rate"]
    if len(classes) > 2:  # one class against the rest, the largest difference over classes
        def per(name, source):
            return np.nanmax(np.stack([_difference({g: source[g][f"{name}[{c}]"]
                                                    for g in judged}, judged)
                                       for c in classes]), axis=0)
    else:
        def per(name, source):
            return _difference({g: source[g][name] for g in judged}, judged)
    point = {n: per(n, points) for n in names}
    boot = {n: per(n, boots) for n in names}
    gaps["demographic_parity_difference"] = {
        "value": round(float(point["selection_rate"]), 6),
        "ci": _interval(boot["selection_rate"])}
    gaps["equalized_odds_difference"] = {
        "value": round(float(max(point["true_positive_rate"], point["false_positive_rate"])), 6),
        "ci": _interval(np.fmax(boot["true_positive_rate"], boot["false_positive_rate"]))}
    return gaps


def _fairlearn_differences(y, pred, groups, judged, classes) -> dict[str, float]:
    """Fairlearn's own numbers for the same groups (a check on the ones above)."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    keep = np.isin(groups, judged)
    pos = classes[1]
    yb, pb = (y[keep] == pos).astype(int), (pred[keep] == pos).astype(int)
    return {"demographic_parity_difference": round(float(demographic_parity_difference(
                yb, pb, sensitive_features=groups[keep])), 6),
            "equalized_odds_difference": round(float(equalized_odds_difference(
                yb, pb, sensitive_features=groups[keep])), 6)}


def fairness_report(y: np.ndarray, pred: np.ndarray, groups: dict[str, Sequence[str]], *,
                    task: str, classes: Sequence[int] = (),
                    class_names: Sequence[str] | None = None, n_boot: int = 300,
                    seed: int = 0, min_group: int = 30) -> dict[str, Any]:
    """:func:`group_fairness` for every group column."""
    import fairlearn

    return {"task": task, "binary": task == "classification" and len(classes) == 2,
            "examples": len(y),
            "bootstrap": {"resamples": n_boot, "interval": "95% percentile",
                          "resampled": "within each group", "seed": seed},
            "min_group": min_group, "fairlearn_version": fairlearn.__version__,
            "columns": {name: group_fairness(y, pred, values, task=task, classes=classes,
                                             class_names=class_names, n_boot=n_boot,
                                             seed=seed + k, min_group=min_group)
                        for k, (name, values) in enumerate(groups.items())}}
