"""How heavy is the report of a long run? Size and time for a 10,000-step run.

Trains the seed MLP on digits for 10,000 optimizer steps, evaluating after every
step (so metrics.jsonl holds 10,000 lines of train loss, validation loss and
accuracy), then times:

- ``shoestring report RUN`` as a whole process (what a user waits for), and
  ``write_report`` in-process (without the interpreter and import start-up);
- the same page without downsampling (every logged point drawn), the baseline
  that the min/max-per-bucket thinning (M4) is measured against.

Usage:
  python bench/report_size.py                 # 10,000 steps (the figure for the docs)
  python bench/report_size.py --quick         # 1,000 steps: checks the bench works
  python bench/report_size.py --run DIR       # reuse a run trained earlier
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_run(out: Path, steps: int) -> Path:
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    train(resolve_config({"data": {"source": "digits"}, "out": str(out),
                          "train": {"max_steps": steps, "epochs": 10_000, "batch_size": 32,
                                    "eval_every": 1, "threads": 1, "seed": 0,
                                    "price_per_hour": 1.2}}), ledger=None)
    return out


def whole_process(run: Path, out: Path) -> float:
    exe = Path(sys.executable).with_name("shoestring")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "report", str(run), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "SHOESTRING_DB": "sqlite://"})
    return time.perf_counter() - t0


def in_process(run: Path, out: Path, repeats: int = 3) -> tuple[float, int]:
    from shoestring.report import ReportConfig, write_report

    best, size = float("inf"), 0
    for _ in range(repeats):
        r = write_report(ReportConfig(runs=[run], out=out))
        best, size = min(best, r.seconds), r.bytes
    return best, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="1,000 steps")
    ap.add_argument("--run", type=Path, help="an existing run folder to report on")
    args = ap.parse_args()
    steps = 1_000 if args.quick else args.steps
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    run = args.run
    if run is None:
        t0 = time.perf_counter()
        run = train_run(tmp / "run", steps)
        print(f"trained {steps:,} steps with an evaluation after each in "
              f"{time.perf_counter() - t0:.1f} s: {run}")
    lines = sum(1 for _ in (run / "metrics.jsonl").open())
    print(f"metrics.jsonl: {lines:,} lines, {(run / 'metrics.jsonl').stat().st_size / 1024:,.0f}"
          " KiB")
    wall = whole_process(run, tmp / "whole.html")
    seconds, size = in_process(run, tmp / "report.html")

    import shoestring.report.plots as plots

    thin = plots.min_max_buckets
    plots.min_max_buckets = lambda xs, ys, buckets=0: (list(xs), list(ys))   # draw every point
    try:
        full_seconds, full_size = in_process(run, tmp / "full.html", repeats=1)
    finally:
        plots.min_max_buckets = thin
    print(f"{'page':<36}{'KiB':>10}{'seconds':>10}")
    print(f"{'shoestring report (whole process)':<36}{size / 1024:>10,.0f}{wall:>10.2f}")
    print(f"{'write_report (in-process, best of 3)':<36}{size / 1024:>10,.0f}{seconds:>10.2f}")
    print(f"{'every point drawn (no downsampling)':<36}{full_size / 1024:>10,.0f}"
          f"{full_seconds:>10.2f}")
    print(f"downsampling: {full_size / size:.1f}x smaller, {full_seconds / seconds:.1f}x faster; "
          f"load average {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores")
    print(f"pages in {tmp}")


if __name__ == "__main__":
    main()
