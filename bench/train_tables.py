"""Table defaults: Shoestring with no options vs scikit-learn's linear models, same splits.

Issue 16 item 1. scikit-learn's bundled tables (iris, wine, breast cancer,
digits, diabetes) are written to CSV, as a user would have them. For each
hold-out seed both sides get the very same split: the one
``shoestring train --data csv:T.csv --label target --seed S`` makes
(``load_dataset`` with that seed). Shoestring trains with its defaults only
(source, target column, seed, run folder); scikit-learn fits
``StandardScaler`` + ``LogisticRegression`` (classification) or ``Ridge``
(regression) with their defaults, as their user guide shows. Reported per
table: test accuracy or R² (mean over seeds, with the spread), the trivial
baseline Shoestring prints beside it, and the wall time of each side's fit.

The default seeds (10-14) are not the hold-out seeds (0-4) on which the
table defaults were chosen, so the comparison is not tuned to its test rows.

Usage: python bench/train_tables.py [--seeds 10,11,12,13,14] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TABLES = ("iris", "wine", "breast_cancer", "digits", "diabetes")


def write_tables(folder: Path) -> dict[str, Path]:
    """Each bundled table as CSV: its feature columns and a ``target`` column."""
    import sklearn.datasets as sk

    paths = {}
    for name in TABLES:
        bunch = getattr(sk, f"load_{name}")()
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([str(c).replace(" ", "_") for c in bunch.feature_names] + ["target"])
            for x, y in zip(bunch.data, bunch.target):
                w.writerow([repr(float(v)) for v in x] + [y.item()])
        paths[name] = path
    return paths


def sklearn_side(ds) -> tuple[float, float]:
    """Score and fit seconds of StandardScaler + LogisticRegression / Ridge."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, ytr = ds.train.x.numpy(), ds.train.y.numpy()
    xte, yte = ds.test.x.numpy(), ds.test.y.numpy()
    classify = ds.task.value == "classification"
    t0 = time.perf_counter()
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=5000) if classify else Ridge())
    model.fit(xtr, ytr)
    seconds = time.perf_counter() - t0
    pred = model.predict(xte)
    return (float((pred == yte).mean()) if classify else float(r2_score(yte, pred))), seconds


def shoestring_side(path: Path, seed: int, out: Path) -> tuple[dict, float]:
    """Summary and wall seconds of ``train`` with defaults only."""
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    cfg = resolve_config({"data": {"source": f"csv:{path}", "target": "target"},
                          "train": {"seed": seed}, "out": str(out)})
    t0 = time.perf_counter()
    result = train(cfg, handle_signals=False, workspace=out.parent)
    return result.summary, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="10,11,12,13,14",
                        help="hold-out seeds, comma-separated (default: 10-14)")
    parser.add_argument("--quick", action="store_true", help="one seed only")
    parser.add_argument("--tables", default=",".join(TABLES), help="which tables")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]

    from shoestring.data.sources import SourceOptions, load_dataset

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average {' '.join(load)}; seeds {seeds}")
    header = (f"{'table':14} {'metric':9} {'rows':>9} {'baseline':>8} {'sklearn':>15} "
              f"{'shoestring':>15} {'diff':>7} {'sk s':>6} {'ss s':>6}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_tables(Path(tmp))
        for name in args.tables.split(","):
            sk_scores, ss_scores, base, sk_s, ss_s = [], [], [], [], []
            for seed in seeds:
                ds = load_dataset(f"csv:{paths[name]}", SourceOptions(label="target", seed=seed))
                score, seconds = sklearn_side(ds)
                sk_scores.append(score)
                sk_s.append(seconds)
                summary, seconds = shoestring_side(paths[name], seed, Path(tmp) / f"{name}-{seed}")
                classify = "test_accuracy" in summary
                ss_scores.append(summary["test_accuracy" if classify else "test_r2"])
                base.append(summary["baseline_test_accuracy" if classify else "baseline_test_r2"])
                ss_s.append(seconds)

            def cell(xs: list[float]) -> str:
                spread = statistics.stdev(xs) if len(xs) > 1 else 0.0
                return f"{statistics.mean(xs):.4f} ±{spread:.3f}"

            rows = f"{len(ds.train)}/{len(ds.test)}"
            diff = statistics.mean(ss_scores) - statistics.mean(sk_scores)
            print(f"{name:14} {'accuracy' if classify else 'R²':9} {rows:>9} "
                  f"{statistics.mean(base):8.4f} {cell(sk_scores):>15} {cell(ss_scores):>15} "
                  f"{diff:+7.4f} {np.mean(sk_s):6.2f} {np.mean(ss_s):6.2f}", flush=True)
    print("diff = shoestring - sklearn (mean over seeds; ± is the standard deviation over "
          "seeds); times are per fit, wall clock, Shoestring's including its run folder.")


if __name__ == "__main__":
    main()
