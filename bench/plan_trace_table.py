"""Analytic planner estimates against the exact fake-tensor trace, over the preset table.

Every preset model × {fp32, bf16 mixed} × {no, full activation checkpointing}
× two micro-batch sizes: one training step (AdamW) of Shoestring's own module
is traced under FakeTensorMode (MemTracker + FlopCounterMode), and the
planner's analytic FLOPs and peak memory are set beside it. Prints every row
and the worst case per model; exits non-zero if any row breaks the promise
(FLOPs within 2%, peak memory within 10%).

Usage: python bench/plan_trace_table.py [--models gpt2-124m,bert-base] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

from shoestring.plan.presets import load_preset, preset_names
from shoestring.plan.setup import StepSetup
from shoestring.plan.validate import compare

# (sequence length, two micro-batches) per family: the model's own context
# (capped at 1024 for decoders, to keep the 70B rows near a minute each).
SEQ = {"decoder": 1024, "encoder": 512, "mlp": 1}
BATCHES = {"mlp": (128, 4096), "decoder": (1, 8), "encoder": (4, 32)}


def rows(models: list[str]):
    for name in models:
        spec = load_preset(name)
        seq = min(SEQ[spec.family], spec.max_seq or SEQ[spec.family])
        for precision, ckpt, batch in itertools.product(
                ("fp32", "bf16-mixed"), ("none", "full"), BATCHES[spec.family]):
            if spec.family == "mlp" and ckpt == "full":
                continue  # an MLP has no blocks to checkpoint
            yield name, spec, StepSetup(micro_batch=batch, seq_len=seq, precision=precision,
                                        checkpointing=ckpt, kernels="cpu")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(preset_names()))
    ap.add_argument("--json", default=None, help="write every row to this file")
    args = ap.parse_args()
    worst: dict[str, tuple[float, float]] = {}
    out, failed = [], 0
    print(f"{'model':13} {'precision':10} {'ckpt':4} {'batch':>5} {'seq':>5} "
          f"{'FLOPs err':>9} {'mem err':>8} {'trace GiB':>9} {'phase':16} {'s':>5}")
    for name, spec, setup in rows(args.models.split(",")):
        t0 = time.perf_counter()
        c = compare(spec, setup)
        fe, me = c.flops_error, c.memory_error
        failed += not c.within_tolerance
        w = worst.get(name, (0.0, 0.0))
        worst[name] = (max(w[0], abs(fe)), max(w[1], abs(me)))
        print(f"{name:13} {setup.precision:10} {setup.checkpointing:4} {setup.micro_batch:5} "
              f"{setup.seq_len:5} {fe:+9.4%} {me:+8.3%} {c.trace_peak / 2**30:9.2f} "
              f"{c.analytic_phase:16} {time.perf_counter() - t0:5.1f}", flush=True)
        out.append({"model": name, "precision": setup.precision,
                    "checkpointing": setup.checkpointing, "micro_batch": setup.micro_batch,
                    "seq_len": setup.seq_len, **c.to_dict()})
    print("\nworst case per model (|analytic/trace - 1|):")
    for name, (fe, me) in worst.items():
        print(f"  {name:13} FLOPs {fe:.4%}  peak memory {me:.3%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(f"\n{len(out) - failed}/{len(out)} rows within FLOPs 2% and memory 10%")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
