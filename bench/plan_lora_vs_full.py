"""LoRA against full fine-tuning of one small Llama-style model: measured beside the planner.

    python bench/plan_lora_vs_full.py            # reference loop, ~2 minutes on 2 cores
    python bench/plan_lora_vs_full.py --quick    # a smaller model, seconds
    python bench/plan_lora_vs_full.py --trainer shoestring   # `shoestring train --finetune`

For each of full fine-tuning and LoRA (rank 16 on q, k, v, o) of the same
Llama-style model (RMSNorm, SwiGLU, RoPE, grouped-query attention), on this
CPU in fp32:

- **measured**: trainable parameters; the tensor peak of one steady-state step
  (torch's MemTracker on the real tensors: parameters, gradients, optimizer
  states, activations, temporaries); the growth of the process's peak RSS
  over the training (an outsider's view, which also counts allocator slack);
  tokens per second (median of the timed steps);
- **predicted**: the planner's peak tensors and tokens per second for the same
  step (``estimate_memory`` and the cpu-local catalog rate), and the ratio.

``--trainer reference`` (the default) trains with Shoestring's GPT module and
the planner's reference adapters (shoestring.plan.lora, what trace mode runs);
``--trainer shoestring`` runs ``shoestring train --init-from BASE --finetune MODE``
as a user would (BASE: one step of ``shoestring train`` with this shape), one
process per mode, and compares its summary.json (trainable parameters, peak
RSS, tokens/s) instead; the peak RSS is set beside the planner by what LoRA
saves, since the process also holds Python, torch and the data. Print the
load average beside the figures: on a shared machine the times are noisy.
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

import torch

MIB = 2 ** 20
MODELS = {
    # ~29M parameters: tensors dominate the process, a step takes ~1-3 s here.
    "default": {"n_layer": 6, "n_head": 8, "n_kv_head": 2, "n_embd": 512, "block_size": 256,
                "vocab_size": 8192},
    "quick": {"n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 64,
              "vocab_size": 1024},
}
LLAMA_STYLE = {"norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "bias": False,
               "tie_embeddings": False}
TARGETS = ("q", "k", "v", "o")
RANK, ALPHA = 16, 32.0


def _spec(shape: dict):
    from shoestring.plan.presets import spec_from_architecture

    return spec_from_architecture({"family": "gpt", "params": {**shape, **LLAMA_STYLE}},
                                  "bench-llama")


def _setup(mode: str, batch: int, seq: int):
    from shoestring.plan.setup import StepSetup

    return StepSetup(micro_batch=batch, seq_len=seq, precision="fp32", finetune=mode,
                     lora_rank=RANK, lora_alpha=ALPHA, lora_targets=TARGETS, kernels="cpu")


def predict(shape: dict, mode: str, batch: int, calibration: list | None = None) -> dict:
    """The planner's peak tensors and tokens/s for this step on this CPU.

    ``calibration``: ``plan --calibrate`` points of *full* steps of this model;
    with them the rate (and per-step overhead) is fitted, and LoRA's comes from
    the recipe factor, as a user's plan after ``--calibrate`` would do.
    """
    from shoestring.plan.catalog import default_catalog
    from shoestring.plan.compute import trained_params
    from shoestring.plan.config import resolve_plan_config
    from shoestring.plan.memory import estimate_memory
    from shoestring.plan.rates import RateBook
    from shoestring.plan.search import time_setup
    from shoestring.plan.workload import Workload

    spec, seq = _spec(shape), shape["block_size"]
    setup = _setup(mode, batch, seq)
    mem = estimate_memory(spec, setup)
    cfg = resolve_plan_config({"model": "gpt-nano", "eval_fraction": 0.0})
    work = Workload("finetune", seq, batch, float(batch * seq * 10), mode)
    device = default_catalog().get("cpu-local")
    fit = time_setup(spec, work, device, setup, RateBook(), cfg)
    out = {"trainable": trained_params(spec, setup), "peak_tensors": mem.peak_tensors,
           "phase": mem.phase, "tokens_per_s": batch * seq / fit.step_s}
    if calibration:
        from shoestring.plan.rates import Measurement

        points = [Measurement("cpu-local", spec.name, r["dtype"], r["flops_per_step"],
                              r["seconds_per_step"], "calibration") for r in calibration
                  if r["model"] == spec.name]
        cal = time_setup(spec, work, device, setup, RateBook(points), cfg)
        out["tokens_per_s_calibrated"] = batch * seq / cal.step_s
    return out


def calibrate_full(shape: dict, batch: int) -> list[dict]:
    """``shoestring plan --calibrate``'s probes: full fp32 steps at the batch and a quarter."""
    from shoestring.plan.calibrate import calibrate

    return calibrate(_spec(shape), _setup("full", batch, shape["block_size"]),
                     dtypes=("fp32",))


def _reference_model(shape: dict, mode: str):
    from shoestring.models.gpt import GPT, GPTConfig
    from shoestring.plan.lora import apply_lora

    torch.manual_seed(0)
    model = GPT(GPTConfig(**shape, **LLAMA_STYLE, dropout=0.0))
    if mode == "lora":
        apply_lora(model, _spec(shape), TARGETS, RANK, ALPHA, quantize=False)
    model.train()
    return model


def measure_reference(shape: dict, mode: str, batch: int, steps: int) -> dict:
    """Train ``steps`` real steps in-process; tensor peak of one steady step, RSS, tokens/s."""
    from torch.distributed._tools.mem_tracker import MemTracker

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = _reference_model(shape, mode)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)   # per-tensor on CPU, as the trainer's
    gen = torch.Generator().manual_seed(1)
    v, t = shape["vocab_size"], shape["block_size"]
    x = torch.randint(0, v, (batch, t), generator=gen)
    y = torch.randint(0, v, (batch, t), generator=gen)

    def step() -> None:
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)   # the engine frees gradients right after the step

    step()                                # creates the optimizer states
    times = []
    for _ in range(steps):                # timed before any tracking hook is installed
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    tracker = MemTracker()
    for p in model.parameters():          # frozen weights get no gradient hooks
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
    tracker.track_external(model, opt)
    with tracker:
        step()
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"trainable": sum(p.numel() for p in params),
            "peak_tensors": int(peak["Total"]), "rss_growth": rss - rss0,
            "tokens_per_s": batch * t / statistics.median(times), "steps": steps}


class _NoHook:
    def remove(self) -> None:
        pass


def _shoestring(args: list[str], env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "shoestring", *args], capture_output=True,
                          text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"shoestring {' '.join(args[:1])} failed:\n{done.stderr[-2000:]}")


def make_base(shape: dict, corpus: Path, folder: Path, env: dict) -> Path:
    """The model to fine-tune: one step of ``shoestring train`` with this shape (its weights
    are what ``--init-from`` loads; what they learned does not matter here)."""
    _shoestring(["train", "--model", "gpt", "--data", f"text:{corpus}", "--tokenizer", "byte",
                 "--vocab-size", str(shape["vocab_size"]), "--n-layer", str(shape["n_layer"]),
                 "--n-head", str(shape["n_head"]), "--n-kv-head", str(shape["n_kv_head"]),
                 "--n-embd", str(shape["n_embd"]), "--block-size", str(shape["block_size"]),
                 "--norm", "rmsnorm", "--mlp", "swiglu", "--pos", "rope", "--no-bias",
                 "--no-tie-embeddings", "--precision", "fp32", "--batch-size", "1",
                 "--max-steps", "1", "--out", str(folder)], env)
    return folder


def measure_shoestring(shape: dict, mode: str, batch: int, steps: int, corpus: Path,
                       base: Path, extra: list[str], env: dict) -> dict:
    """``shoestring train --init-from BASE --finetune MODE`` as a user runs it, one process
    per mode; from its summary.json: trainable parameters, tokens/s and the process's peak
    RSS (``ru_maxrss``: everything the process held, Python and torch included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["train", "--init-from", str(base), "--data", f"text:{corpus}",
                "--precision", "fp32", "--batch-size", str(batch), "--micro-batch-size",
                str(batch), "--max-steps", str(steps + 1), "--eval-iters", "1",
                "--finetune", mode, "--out", str(out), *extra]
        if mode == "lora":
            args += ["--lora-rank", str(RANK), "--lora-alpha", str(ALPHA),
                     "--lora-targets", ",".join(TARGETS)]
        _shoestring(args, env)
        s = json.loads((out / "summary.json").read_text())
    return {"trainable": s["trainable_parameters"], "peak_tensors": None,
            "peak_rss": s["peak_memory_bytes"], "tokens_per_s": s["tokens_per_second"],
            "steps": s["steps"]}


def print_trainer_rows(rows: list[dict]) -> None:
    """``--trainer shoestring``: the process's peak RSS holds Python, torch and the data as
    well as the tensors the planner predicts, so the two are compared by what LoRA saves
    (full minus LoRA), where that fixed part cancels out."""
    print(f"{'':6} {'trainable':>12} {'peak RSS MiB':>13} {'planner tensors MiB':>20} "
          f"{'tokens/s':>9} {'planner':>8} {'ratio':>6} {'calibrated':>10} {'ratio':>6}")
    for r in rows:
        m, p = r["measured"], r["predicted"]
        tps, cal = m["tokens_per_s"], p.get("tokens_per_s_calibrated")
        print(f"{r['mode']:6} {m['trainable']:>12,} {m['peak_rss'] / MIB:>13,.1f} "
              f"{p['peak_tensors'] / MIB:>20,.1f} {tps:>9,.0f} {p['tokens_per_s']:>8,.0f} "
              f"{tps / p['tokens_per_s']:>6.2f} {cal:>10,.0f} {tps / cal:>6.2f}")
    full, lora = rows
    saved = (full["measured"]["peak_rss"] - lora["measured"]["peak_rss"]) / MIB
    predicted = (full["predicted"]["peak_tensors"] - lora["predicted"]["peak_tensors"]) / MIB
    print(f"LoRA saves {saved:,.1f} MiB of peak RSS (planner: {predicted:,.1f} MiB of peak "
          f"tensors); trainable {lora['measured']['trainable'] / full['measured']['trainable']:.2%}"
          f" of full; tokens/s LoRA/full "
          f"{lora['measured']['tokens_per_s'] / full['measured']['tokens_per_s']:.2f} (planner "
          f"{lora['predicted']['tokens_per_s'] / full['predicted']['tokens_per_s']:.2f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller model (seconds)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trainer", choices=["reference", "shoestring"], default="reference")
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/data/shakespeare.txt"))
    ap.add_argument("--train-args", default="", help="extra `shoestring train` flags")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shape = MODELS["quick" if args.quick else "default"]
    if args.one:   # a child process: one mode's measurement, so peak RSS is its own
        print(json.dumps(measure_reference(shape, args.one, args.batch, args.steps)))
        return 0
    calibration = calibrate_full(shape, args.batch)
    rows = []
    if args.trainer == "shoestring":
        tmp = tempfile.TemporaryDirectory()
        env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{tmp.name}/ledger.db"}
        base = make_base(shape, args.corpus, Path(tmp.name) / "base", env)
    for mode in ("full", "lora"):
        pred = predict(shape, mode, args.batch, calibration)
        if args.trainer == "reference":
            child = subprocess.run(
                [sys.executable, __file__, "--one", mode, "--batch", str(args.batch),
                 "--steps", str(args.steps)] + (["--quick"] if args.quick else []),
                capture_output=True, text=True, check=True)
            meas = json.loads(child.stdout)
        else:
            meas = measure_shoestring(shape, mode, args.batch, args.steps, args.corpus, base,
                                      args.train_args.split(), env)
        rows.append({"mode": mode, "measured": meas, "predicted": pred})
    load = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(json.dumps({"model": shape, "batch": args.batch, "load": load, "rows": rows},
                         indent=2))
        return 0
    print(f"Llama-style {shape} — batch {args.batch} × {shape['block_size']} tokens, fp32, "
          f"{torch.get_num_threads()} threads; load average {' '.join(load)}")
    if args.trainer == "shoestring":
        print_trainer_rows(rows)
        return 0
    print(f"{'':6} {'trainable':>12} {'peak tensors MiB':>30} {'RSS growth MiB':>15} "
          f"{'tokens/s':>40}")
    print(f"{'':6} {'':>12} {'measured  planner   error':>30} {'measured':>15} "
          f"{'measured planner ratio calibrated ratio':>40}")
    for r in rows:
        m, p = r["measured"], r["predicted"]
        peak = m["peak_tensors"]
        err = f"{p['peak_tensors'] / peak - 1:+.1%}" if peak else "-"
        peak_s = f"{peak / MIB:,.1f}" if peak else "-"
        rss = f"{m['rss_growth'] / MIB:,.1f}" if m.get("rss_growth") else "-"
        tps = m["tokens_per_s"]
        cal = p.get("tokens_per_s_calibrated")
        print(f"{r['mode']:6} {m['trainable']:>12,} {peak_s:>9} {p['peak_tensors'] / MIB:>9,.1f} "
              f"{err:>9} {rss:>15} {tps:>9,.0f} {p['tokens_per_s']:>8,.0f} "
              f"{tps / p['tokens_per_s']:>6.2f} {cal:>10,.0f} {tps / cal:>6.2f}")
    full, lora = rows
    print(f"LoRA/full: measured peak {lora['measured']['peak_tensors'] / full['measured']['peak_tensors']:.2f}"
          f" (planner {lora['predicted']['peak_tensors'] / full['predicted']['peak_tensors']:.2f}),"
          f" tokens/s {lora['measured']['tokens_per_s'] / full['measured']['tokens_per_s']:.2f}"
          f" (planner {lora['predicted']['tokens_per_s'] / full['predicted']['tokens_per_s']:.2f})"
          if args.trainer == "reference" else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
