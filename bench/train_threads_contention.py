"""Issue 10 item 2: the thread count when another process wants the CPU too.

Trains the seed MLP on Fashion-MNIST (the fixed recipe, batch 128) as whole
``shoestring train`` processes with the default thread choice (measured during
training, see ``shoestring.train.threads``), with ``--threads 1`` and with
``--threads 2``, first on the machine as it is, then beside a CPU-bound
process this bench starts itself (a busy loop) and stops at the end. Prints
the training-loop seconds, the whole process's wall and CPU seconds (user +
system) of each, the thread count the default chose, and each setting's
slowdown beside the busy process relative to the quiet one.

Usage: python bench/train_threads_contention.py [--epochs 2] [--repeats 2] [--hogs 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"default": [], "--threads 1": ["--threads", "1"], "--threads 2": ["--threads", "2"]}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def train(workspace: Path, n: int, extra: list[str], epochs: int,
          env: dict) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds and summary of one whole ``shoestring train`` process."""
    out = workspace / f"run-{n}"
    t, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.run([sys.executable, "-m", "shoestring", "train", "--model", "seed-mlp",
                           "--data", "fashion-mnist", "--epochs", str(epochs), "--batch-size",
                           "128", "--out", str(out), *extra], cwd=workspace, env=env,
                          capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t, children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return seconds, cpu, json.loads((out / "summary.json").read_text())


def load_average() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def measure(label: str, workspace: Path, counter: list[int], args, env: dict) -> dict:
    """Median training-loop seconds per setting (and prints the table)."""
    print(f"\n== {label} (load average {load_average()})")
    print(f"{'setting':<12} {'loop s':>8} {'whole s':>8} {'cpu s':>7}  threads used")
    runs = {k: [] for k in SETTINGS}
    for _ in range(args.repeats):
        for name, extra in SETTINGS.items():  # interleaved: noise hits every setting alike
            counter[0] += 1
            runs[name].append(train(workspace, counter[0], extra, args.epochs, env))
    loops = {}
    for name, rs in runs.items():
        loops[name] = loop = statistics.median(s["train_seconds"] for _, _, s in rs)
        whole = statistics.median(t for t, _, _ in rs)
        cpu = statistics.median(c for _, c, _ in rs)
        used = ",".join(str(s["threads"]) for _, _, s in rs)
        probe = rs[-1][2].get("threads_probe_ms")
        print(f"{name:<12} {loop:8.2f} {whole:8.2f} {cpu:7.2f}  {used}"
              + (f"  (probe ms/step: {probe})" if probe else ""), flush=True)
    return loops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hogs", type=int, default=1, help="CPU-bound processes started beside it")
    ap.add_argument("--quick", action="store_true", help="1 epoch, 1 repeat: checks it runs")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.repeats = 1, 1
    workspace = Path(tempfile.mkdtemp(prefix="ss-threads-"))
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{workspace / 'ledger.db'}"}
    print(f"{os.cpu_count()} CPUs; {args.epochs} epochs of the seed MLP per run")
    counter = [0]
    train(workspace, 0, ["--threads", "1"], 1, env)  # warms the decoded-array cache
    quiet = measure("as the machine is", workspace, counter, args, env)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.hogs)]
    try:
        time.sleep(1.0)
        busy = measure(f"beside {args.hogs} CPU-bound process(es)", workspace, counter, args,
                       env)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"\ntraining loop beside the busy process(es) / as the machine is "
          f"(load average now {load_average()}):")
    for name in SETTINGS:
        print(f"  {name:<12} {busy[name] / quiet[name]:6.2f}x  "
              f"({quiet[name]:.2f} s -> {busy[name]:.2f} s)")


if __name__ == "__main__":
    main()
