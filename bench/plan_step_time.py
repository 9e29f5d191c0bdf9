"""Predicted step time after ``--calibrate`` against a measured short ``shoestring train`` run.

For the seed MLP (Fashion-MNIST, batch 128, one epoch) and gpt-nano
(Shakespeare characters, block 64, batch 32, 60 steps), each repetition
runs both sides back to back so machine noise hits both:

  A. ``calibrate_and_store`` (what ``shoestring plan MODEL --calibrate`` runs) into a
     fresh ledger, then ``plan_with_ledger`` for this CPU: the predicted
     seconds per training step;
  B. a real ``shoestring train`` run (the Python API behind the CLI), whose
     summary gives the measured seconds per step (train_seconds / steps, so
     evaluation and checkpoints inside the run count against the prediction).

Both sides run on one thread: on a shared 2-core machine, two OpenMP threads
spin-waiting on each other turn a 4 ms MLP step into 200 ms at random, which
measures the neighbours, not Shoestring (the probe records its thread count).

Prints each pair, then the median prediction against the median measurement
over the repetitions (the promise: within 25%) and the spread of single
pairs, which on a loaded machine is mostly the neighbours' doing.

Usage: python bench/plan_step_time.py [--repeats 3] [--data DIR] [--text FILE]
Needs Debian's dataset-fashion-mnist and a text file (default: ../shared/data/shakespeare.txt).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from shoestring.data.sources import SourceOptions
from shoestring.plan.api import calibrate_and_store, plan_with_ledger
from shoestring.plan.config import resolve_plan_config
from shoestring.train.api import train
from shoestring.train.config import resolve_config

FASHION = Path("/usr/share/datasets/fashion-mnist")
TEXT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "shakespeare.txt"


def predicted(model: str, batch: int, seq: int | None, db: Path) -> tuple[float, str]:
    fields = {"model": model, "hardware": ("cpu-local",), "precision": "fp32",
              "batch_size": batch, "micro_batch": batch, "seq_len": seq}
    cfg = resolve_plan_config(fields)
    url = f"sqlite:///{db}"
    calibrate_and_store(cfg, url)
    best = plan_with_ledger(cfg, url).options[0]
    return best.fit.step_s, best.fit.rate.source


def measured(train_fields: dict, data: dict, out: Path, opts: SourceOptions | None) -> dict:
    cfg = resolve_config({"model": train_fields.pop("model"), "data": data,
                          "train": train_fields, "out": str(out)})
    return train(cfg, source_options=opts).summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=FASHION)
    ap.add_argument("--text", type=Path, default=TEXT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="ss-plan-bench-"))
    cases = [
        ("seed-mlp", dict(model={"name": "seed-mlp"}, epochs=1, batch_size=128, optimizer="adam",
                          precision="fp32", threads=1),
         {"source": f"idx:{args.data}"}, SourceOptions(fashion_mnist_dir=args.data), 128, None),
        ("gpt-nano", dict(model={"name": "gpt-nano"}, batch_size=32, max_steps=60, eval_iters=1,
                          precision="fp32", threads=1),
         {"source": f"text:{args.text}"}, None, 32, 64),
    ]
    failed = False
    for name, fields, data, opts, batch, seq in cases:
        preds, reals = [], []
        plan_ref = name
        for r in range(args.repeats):
            out = tmp / f"{name}-{r}"
            s = measured(dict(fields), data, out, opts)
            real = s["train_seconds"] / s["steps"]
            if name == "gpt-nano":
                plan_ref = str(out)  # the run's own shapes (vocabulary from its tokenizer)
            pred, source = predicted(plan_ref, batch, seq, tmp / f"cal-{name}-{r}.db")
            preds.append(pred)
            reals.append(real)
            print(f"[{r}] {name:9} predicted {pred * 1000:8.2f} ms/step ({source}); measured "
                  f"{real * 1000:8.2f} ms/step over {s['steps']} steps; ratio {pred / real:.3f}",
                  flush=True)
        ratio = statistics.median(preds) / statistics.median(reals)
        pairs = [p / m for p, m in zip(preds, reals)]
        failed |= abs(ratio - 1) > 0.25
        print(f"{name}: median predicted {statistics.median(preds) * 1000:.2f} ms/step, median "
              f"measured {statistics.median(reals) * 1000:.2f} ms/step, ratio {ratio:.3f} "
              f"(goal 0.75-1.25); single pairs {min(pairs):.2f}-{max(pairs):.2f}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
