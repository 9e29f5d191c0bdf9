"""Privacy against utility: the seed MLP on Fashion-MNIST without DP and at ε ∈ {8, 3, 1}.

Each setting is one whole ``shoestring train`` process (what a user waits for),
all for the same number of epochs, and the bench prints, per setting: test
accuracy, ε spent (δ = 1/N^1.1, the default), the noise multiplier, wall
seconds and CPU seconds (user + sys of the training process, less disturbed
by other load than wall time) per epoch, and the process's peak resident
memory (``ru_maxrss`` of the child from ``wait4``: a high-water mark over the
whole run, i.e. the peak of the largest epoch; every epoch does the same
work, so it is the per-epoch peak too; it includes the data and torch
itself, so the rows' differences are what DP costs). Seconds per epoch are
the loop's ``elapsed_seconds`` at the last evaluation in ``metrics.jsonl``
divided by the epochs (training and the per-epoch evaluation, not start-up or
data loading); CPU seconds per epoch are the process's user + sys time times
the training share of its wall time, divided by the epochs.

Hyper-parameters: DP-SGD is run as practice recommends (De et al. 2022,
"Unlocking High-Accuracy Differentially Private Image Classification through
Scale"; Ponomareva et al. 2023, "How to DP-fy ML", §5.4): a large batch
(1024: the noise on the averaged gradient shrinks as 1/B), a clipping norm of
1, Adam at a learning rate a few times the non-private default (2e-3), a
constant schedule. Two non-private rows separate the effect of DP from that of
the batch: Shoestring's defaults (batch 128, lr 1e-3) and DP's
hyper-parameters without noise or clipping (batch 1024, lr 2e-3).

Usage:
  python bench/privacy_utility.py                 # 10 epochs per setting (the table)
  python bench/privacy_utility.py --quick         # 1 epoch per setting, a fast check
  python bench/privacy_utility.py --epochs 20 --threads 2 --data /path/to/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FMNIST = Path("/usr/share/datasets/fashion-mnist")
DP_BATCH, DP_LR = 1024, 2e-3
SETTINGS = [  # (label, epsilon or None, batch size, learning rate)
    ("no DP (defaults)", None, 128, 1e-3),
    ("no DP (DP's batch and lr)", None, DP_BATCH, DP_LR),
    ("ε = 8", 8.0, DP_BATCH, DP_LR),
    ("ε = 3", 3.0, DP_BATCH, DP_LR),
    ("ε = 1", 1.0, DP_BATCH, DP_LR),
]


def run_one(work: Path, label: str, epsilon: float | None, batch: int, lr: float,
            epochs: int, threads: int, data: Path) -> dict:
    out = work / label.replace(" ", "_").replace("(", "").replace(")", "").replace("'", "")
    cmd = [sys.executable, "-m", "shoestring", "train", "--model", "seed-mlp",
           "--data", f"fashion-mnist:{data}", "--epochs", str(epochs), "--batch-size", str(batch),
           "--lr", str(lr), "--optimizer", "adam", "--schedule", "constant", "--seed", "0",
           "--threads", str(threads), "--out", str(out)]
    if epsilon is not None:
        cmd += ["--dp", f"epsilon={epsilon:g},max-grad-norm=1"]
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{work / 'ledger.db'}"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label}: shoestring train failed:\n{err[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["elapsed_seconds"] for r in records]
    per_epoch = (times[-1] / len(times)) if times else float("nan")
    privacy = summary.get("privacy") or {}
    train_share = summary["train_seconds"] / max(wall, 1e-9)
    return {"setting": label, "batch": batch, "lr": lr, "epochs": summary["epochs_run"],
            "test_accuracy": summary["test_accuracy"], "epsilon": privacy.get("epsilon"),
            "delta": privacy.get("delta"), "noise_multiplier": privacy.get("noise_multiplier"),
            "s_per_epoch": per_epoch,
            # CPU of the whole process, apportioned to training by its share of the wall time.
            "cpu_s_per_epoch": (usage.ru_utime + usage.ru_stime) * train_share / max(epochs, 1),
            "cpu_s_process": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "wall_s": wall,
            "epsilon_per_eval": [r.get("epsilon") for r in records]}


def markdown(rows: list[dict]) -> str:
    head = ("| setting | batch | lr | test accuracy | ε spent | σ | s / epoch | CPU s / epoch "
            "| peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        eps = "–" if r["epsilon"] is None else f"{r['epsilon']:.3f}"
        sigma = "–" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.3f}"
        lines.append(f"| {r['setting']} | {r['batch']} | {r['lr']:g} | {r['test_accuracy']:.4f} "
                     f"| {eps} | {sigma} | {r['s_per_epoch']:.2f} | {r['cpu_s_per_epoch']:.2f} "
                     f"| {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch per setting")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per setting (default 10)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads of each run (pinned: the same for every setting)")
    ap.add_argument("--data", type=Path, default=FMNIST, help="Fashion-MNIST IDX folder")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    if not (args.data / "train-images-idx3-ubyte.gz").exists() and \
            not (args.data / "train-images-idx3-ubyte").exists():
        raise SystemExit(f"no Fashion-MNIST IDX files in {args.data} "
                         "(Debian: apt-get install dataset-fashion-mnist; or --data DIR)")
    epochs = args.epochs or (1 if args.quick else 10)
    work = args.work or Path(tempfile.mkdtemp(prefix="privacy-utility-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"seed MLP on Fashion-MNIST, {epochs} epoch(s) per setting, {args.threads} thread(s); "
          f"load average {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    rows = []
    for label, eps, batch, lr in SETTINGS:
        row = run_one(work, label, eps, batch, lr, epochs, args.threads, args.data)
        rows.append(row)
        print(f"  {label}: test accuracy {row['test_accuracy']:.4f}, ε {row['epsilon']}, "
              f"{row['s_per_epoch']:.2f} s/epoch, {row['cpu_s_per_epoch']:.2f} CPU s/epoch, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
    print(f"\nload average at the end {Path('/proc/loadavg').read_text().split()[0]}\n")
    print(markdown(rows))
    base = next(r for r in rows if r["setting"].startswith("no DP (DP"))
    for r in rows:
        if r["epsilon"] is not None:
            time_x = r["s_per_epoch"] / base["s_per_epoch"]
            cpu_x = r["cpu_s_per_epoch"] / base["cpu_s_per_epoch"]
            mem_x = r["peak_rss_mib"] / base["peak_rss_mib"]
            print(f"\n{r['setting']}: {time_x:.2f}x the time per epoch ({cpu_x:.2f}x the CPU) of "
                  f"the same batch without DP, {mem_x:.2f}x its peak memory, accuracy "
                  f"{r['test_accuracy'] - base['test_accuracy']:+.4f}", end="")
    print()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
