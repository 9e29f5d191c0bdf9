"""Seed workload: Shoestring vs a plain hand-written PyTorch loop, same run.

The seed example (a Keras MLP 784→128→64→10, Adam 1e-3, batch 128, 10 epochs)
on Fashion-MNIST. Both sides load the same IDX files, train the same
architecture on in-memory tensors, and evaluate on the test split after each
epoch; each is timed end to end (data loading included) and the runs are
interleaved so that machine noise hits both alike. Then the fast recipe is
timed against the fixed seed recipe to reach val_accuracy 0.87 (a validation
split carved from the training data; test accuracy is reported too).

Usage: python bench/train_seed_mlp.py [--repeats 3] [--data DIR]
Needs Debian's dataset-fashion-mnist (or --data pointing at IDX files).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shoestring.data.sources import SourceOptions
from shoestring.train.api import train
from shoestring.train.config import resolve_config

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")


def _idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", ndim, 4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def plain_pytorch(data_dir: Path, seed: int = 0, epochs: int = 10, bs: int = 128) -> tuple[float, float]:
    """The hand-written baseline: what a user would write without Shoestring."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    xtr = torch.from_numpy(_idx(data_dir / "train-images-idx3-ubyte.gz").reshape(-1, 784)).float() / 255
    ytr = torch.from_numpy(_idx(data_dir / "train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.from_numpy(_idx(data_dir / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)).float() / 255
    yte = torch.from_numpy(_idx(data_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    acc = 0.0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
    return time.perf_counter() - t0, acc


def shoestring_run(data_dir: Path, out: Path, **train_fields) -> tuple[float, dict]:
    cfg = resolve_config({"model": {"name": "seed-mlp"}, "data": {"source": f"idx:{data_dir}"},
                          "train": {"epochs": 10, "batch_size": 128, "optimizer": "adam",
                                    "lr": 1e-3, "seed": 0, **train_fields},
                          "out": str(out)})
    t0 = time.perf_counter()
    result = train(cfg, source_options=SourceOptions(fashion_mnist_dir=data_dir))
    return time.perf_counter() - t0, result.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args()
    if not (args.data / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"Fashion-MNIST not found in {args.data}: "
                         "apt-get install dataset-fashion-mnist")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-"))
    plain_t, ours_t, fixed_t, fast_t = [], [], [], []
    fixed_train, fast_train = [], []
    for r in range(args.repeats):
        t, acc = plain_pytorch(args.data)
        plain_t.append(t)
        print(f"[{r}] plain PyTorch loop       {t:7.2f} s  test_accuracy {acc:.4f}")
        t, s = shoestring_run(args.data, tmp / f"seed-{r}")
        ours_t.append(t)
        print(f"[{r}] shoestring seed recipe   {t:7.2f} s  test_accuracy {s['test_accuracy']:.4f}")
        t, s = shoestring_run(args.data, tmp / f"fixed-{r}", target="val_accuracy=0.87")
        fixed_t.append(t)
        fixed_train.append(s["train_seconds"])
        print(f"[{r}] seed recipe to val 0.87 {t:7.2f} s  reached={s['target_reached']} "
              f"epochs {s['epochs_run']}  (training loop {s['train_seconds']:.2f} s)")
        t, s = shoestring_run(args.data, tmp / f"fast-{r}", target="val_accuracy=0.87",
                              recipe="fast")
        fast_t.append(t)
        fast_train.append(s["train_seconds"])
        print(f"[{r}] fast recipe to val 0.87 {t:7.2f} s  reached={s['target_reached']} "
              f"epochs {s['epochs_run']} batch {s['batch_size']}  "
              f"(training loop {s['train_seconds']:.2f} s)")
    med = statistics.median
    print()
    print(f"seed workload, 10 epochs: shoestring {med(ours_t):.2f} s, plain {med(plain_t):.2f} s, "
          f"ratio shoestring/plain = {med(ours_t) / med(plain_t):.3f} (goal <= 1.10)")
    print(f"time to val_accuracy 0.87: fast {med(fast_t):.2f} s, seed recipe {med(fixed_t):.2f} s, "
          f"speed-up = {med(fixed_t) / med(fast_t):.2f}x end to end (goal >= 5x); training loop "
          f"alone {med(fixed_train):.2f} s vs {med(fast_train):.2f} s = "
          f"{med(fixed_train) / med(fast_train):.2f}x")


if __name__ == "__main__":
    main()
