"""Issue 10: does training the GPT with bf16 matmuls keep fp32's quality, and how fast is it?

nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, block 64, batch 12,
AdamW 1e-3, char-level Shakespeare) trained by ``shoestring.train`` with
``precision=fp32`` and with ``precision=bf16`` (on a CPU: linear layers multiply
in bf16, all else fp32; see ``shoestring.train.bf16_matmul``), for several
seeds each, in this one process, one thread (so CPU time is comparable on a
shared machine). Prints each run's validation loss (20 batches, as the run
reports it) and training CPU seconds, then mean ± sd per precision and the CPU
time ratio.

Usage: python bench/train_bf16_quality.py [--seeds 0,1,2] [--steps 600] [--quick]
Needs ../shared/data/shakespeare.txt.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from shoestring.train.api import train
from shoestring.train.config import resolve_config

CORPUS = next((p for p in (Path(__file__).resolve().parents[n] / "shared/data/shakespeare.txt"
                           for n in (2, 3)) if p.exists()), Path("/work/shared/data/shakespeare.txt"))


def run(corpus: Path, precision: str, seed: int, steps: int, out: Path) -> tuple[float, float]:
    """(val_loss, training CPU seconds) of one run."""
    cfg = resolve_config({
        "model": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64},
        "data": {"source": f"text:{corpus}", "tokenizer": "char"},
        "train": {"batch_size": 12, "max_steps": steps, "lr": 1e-3, "optimizer": "adamw",
                  "seed": seed, "precision": precision, "threads": 1, "compile": False},
        "out": str(out)})
    cpu = time.process_time()
    summary = train(cfg, workspace=out.parent).summary
    return summary["val_loss"], time.process_time() - cpu


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--quick", action="store_true", help="2 seeds of 60 steps (a smoke test)")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    seeds = [0, 1] if args.quick else [int(s) for s in args.seeds.split(",")]
    steps = 60 if args.quick else args.steps
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="ss-bf16-"))
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}; torch {torch.__version__}; "
          f"{steps} steps, seeds {seeds}")
    results: dict[str, list[tuple[float, float]]] = {"fp32": [], "bf16": []}
    for seed in seeds:
        for precision, rows in results.items():  # interleaved: load drifts hit both alike
            loss, cpu = run(args.corpus, precision, seed, steps, tmp / f"{precision}-{seed}")
            rows.append((loss, cpu))
            print(f"  seed {seed} {precision:>4}: val_loss {loss:.4f}  cpu {cpu:6.2f} s",
                  flush=True)
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"{'precision':<9} {'val_loss mean ± sd':>20} {'cpu s mean':>10}")
    for precision, rows in results.items():
        print(f"{precision:<9} {mean_sd([r[0] for r in rows]):>20} "
              f"{statistics.mean(r[1] for r in rows):10.2f}")
    ratio = statistics.mean(r[1] for r in results["fp32"]) / \
        statistics.mean(r[1] for r in results["bf16"])
    print(f"cpu time fp32 / bf16 = {ratio:.2f} (whole train() call: data, training, evaluation)")


if __name__ == "__main__":
    main()
