"""On a CUDA GPU: the planner's peak memory and step time against the real thing.

GPT-2 small (Shoestring's own module), bf16 autocast, AdamW (foreach, the
CUDA default), sequence 1024, at two micro-batch sizes. For each: the
analytic peak (tensors only, CUDA kernels) against
``torch.cuda.max_memory_allocated`` over a steady-state step, and the
predicted step time (catalog peak × default efficiency for this GPU) against
the median measured step. Run it where a GPU exists:

    python bench/plan_gpu_check.py [--batches 4,16] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from shoestring.plan.catalog import default_catalog
from shoestring.plan.compute import step_flops
from shoestring.plan.memory import estimate_memory
from shoestring.plan.presets import load_preset
from shoestring.plan.rates import RateBook
from shoestring.plan.setup import StepSetup


def measure(batch: int, steps: int) -> tuple[int, float]:
    from shoestring.plan.build import build_module

    spec = load_preset("gpt2-124m")
    torch.manual_seed(0)
    model = build_module(spec).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, spec.vocab_size, (batch, 1024), device="cuda")
    times = []
    for i in range(steps + 2):
        if i == 2:  # steady state: optimizer states exist
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, loss = model(x, x)
        loss.backward()
        del logits, loss  # as the planner assumes: logits live until backward ends
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return torch.cuda.max_memory_allocated(), statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", default="4,16")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here; run this where a GPU is")
        return 2
    name = torch.cuda.get_device_name()
    device = default_catalog().get(name)
    spec = load_preset("gpt2-124m")
    print(f"{name} -> catalog '{device.name}', torch {torch.__version__}")
    for b in (int(v) for v in args.batches.split(",")):
        setup = StepSetup(micro_batch=b, seq_len=1024, kernels="cuda")
        predicted = estimate_memory(spec, setup).peak_tensors
        rate = RateBook()(device, "bf16")
        pred_s = step_flops(spec, setup).total / rate.flops_per_s
        peak, secs = measure(b, args.steps)
        print(f"batch {b:3}: peak predicted {predicted / 2**30:6.2f} GiB, "
              f"max_memory_allocated {peak / 2**30:6.2f} GiB ({predicted / peak - 1:+.1%}); "
              f"step predicted {pred_s * 1000:7.1f} ms, measured {secs * 1000:7.1f} ms "
              f"({pred_s / secs - 1:+.1%}; MFU default {device.efficiency:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
