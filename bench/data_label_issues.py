"""Label issues: ``data prepare`` vs cleanlab's default rule with a scikit-learn MLP.

Issue 16 item 4. Takes the first ``--n`` (15,000) Fashion-MNIST training
images, flips the labels of ``--flips`` (750) of them to another class chosen
at random (seeded), and writes them as an IDX folder. Then, on the very same
images and noisy labels:

- **Shoestring**: ``prepare`` on ``idx:DIR#train`` with its defaults, as
  ``shoestring data prepare`` runs it (reading, deduplication, label issues,
  split, shards), timed end to end; the label step alone is timed too.
- **cleanlab**: 5-fold ``cross_val_predict`` of scikit-learn's
  ``MLPClassifier`` on the pixels scaled to [0, 1], then
  ``cleanlab.filter.find_label_issues`` with its defaults
  (``filter_by='prune_by_noise_rate'``).

Reported: flagged, precision, recall and F1 against the planted flips, and
seconds. Records that ``prepare`` drops as duplicates are not scored; they
count as not flagged (they are few: about 0.1% of Fashion-MNIST).

Usage: python bench/data_label_issues.py [--n 15000] [--flips 750] [--data DIR]
Needs Debian's dataset-fashion-mnist (or --data pointing at its IDX files).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")


def planted(data: Path, n: int, flips: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, noisy labels and the indices whose label was flipped."""
    from shoestring.data.idx import read_idx_split

    x, y = read_idx_split(data, "train")
    x, y = np.asarray(x[:n]), np.asarray(y[:n]).astype(np.int64)
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(n, flips, replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, flips)) % 10  # never the true class
    return x, noisy, flipped


def write_idx(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from idx_files import idx_bytes

    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(x.reshape(len(x), 28, 28)))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(y.astype(np.uint8)))


def scores(found: np.ndarray, truth: np.ndarray) -> tuple[int, float, float, float]:
    hit = len(np.intersect1d(found, truth))
    p = hit / len(found) if len(found) else 0.0
    r = hit / len(truth)
    return len(found), p, r, (2 * p * r / (p + r) if p + r else 0.0)


def shoestring_side(folder: Path, out: Path) -> tuple[np.ndarray, float, float]:
    from shoestring.data.prepare import pipeline, prepare, resolve_prepare_config

    label_seconds = []
    inner = pipeline._label_issues

    def timed(*args, **kwargs):  # the label step alone, inside the real pipeline
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            label_seconds.append(time.perf_counter() - t)

    pipeline._label_issues = timed
    try:
        t = time.perf_counter()
        prepare(resolve_prepare_config({"source": f"idx:{folder}#train", "out": out}))
        seconds = time.perf_counter() - t
    finally:
        pipeline._label_issues = inner
    rows = (out / "label_issues.jsonl").read_text().splitlines()
    found = np.array(sorted(int(re.search(r"#(\d+)\"", r).group(1)) for r in rows), dtype=int)
    return found, seconds, sum(label_seconds)


def cleanlab_side(x: np.ndarray, y: np.ndarray, seed: int, hidden: int, max_iter: int
                  ) -> tuple[np.ndarray, float]:
    import warnings

    from cleanlab.filter import find_label_issues
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import cross_val_predict
    from sklearn.neural_network import MLPClassifier

    t = time.perf_counter()
    features = x.reshape(len(x), -1).astype(np.float32) / 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = cross_val_predict(
            MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=max_iter, random_state=seed),
            features, y, cv=5, method="predict_proba")
    mask = find_label_issues(y, probs)
    return np.flatnonzero(mask), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--n", type=int, default=15_000)
    ap.add_argument("--flips", type=int, default=750)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mlp-hidden", type=int, default=100,
                    help="scikit-learn MLP hidden units (its default: 100)")
    ap.add_argument("--mlp-iter", type=int, default=20, help="scikit-learn MLP epochs")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        print(f"load average {' '.join(f.read().split()[:3])}", flush=True)
    x, y, truth = planted(args.data, args.n, args.flips, args.seed)
    print(f"{args.n:,} Fashion-MNIST images, {len(truth):,} planted label flips", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "idx"
        write_idx(folder, x, y)
        found, seconds, label_s = shoestring_side(folder, Path(tmp) / "prepared")
        rows.append((f"shoestring data prepare (label step {label_s:.1f} s)", found, seconds))
        found, seconds = cleanlab_side(x, y, args.seed, args.mlp_hidden, args.mlp_iter)
        rows.append((f"cleanlab + sklearn MLP({args.mlp_hidden}, {args.mlp_iter} it)", found,
                     seconds))
    print(f"{'side':52} {'flagged':>7} {'precision':>9} {'recall':>6} {'F1':>6} {'seconds':>7}")
    for name, found, seconds in rows:
        n, p, r, f1 = scores(found, truth)
        print(f"{name:52} {n:7,} {p:9.3f} {r:6.3f} {f1:6.3f} {seconds:7.1f}")
    print(f"time ratio shoestring/cleanlab: {rows[0][2] / rows[1][2]:.2f}")


if __name__ == "__main__":
    main()
