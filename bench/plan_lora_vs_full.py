"""LoRA against full fine-tuning of one small Llama-style model, through the real trainer,
measured beside the planner.

    python bench/plan_lora_vs_full.py            # ~75M parameters, about 2 minutes here
    python bench/plan_lora_vs_full.py --quick    # 0.75M parameters, seconds (a check)

The base is one step of ``shoestring train`` with a Llama-style shape
(RMSNorm, SwiGLU, RoPE, grouped-query attention, untied head); each mode then
runs ``shoestring.train.api.train`` — what ``shoestring train --init-from BASE
--finetune full|lora`` calls, with the same config — in its own process, on
this CPU in fp32, LoRA rank 16 (α 32) on q, k, v, o. Per mode:

- **trainable** parameters (the trainer's own count, summary.json);
- **measured peak tensors**: the largest total of live tensor storages during
  one steady-state step (the optimizer states already exist), counted by a
  ``TorchDispatchMode`` over every tensor the step creates (each storage once,
  freed when its last reference goes) plus what is alive when the step starts
  (parameters, buffers, optimizer states). This is what the planner's "peak
  tensors" predicts: the same quantity that ``torch.cuda.max_memory_allocated``
  measures on a GPU, without the allocator's rounding;
- **RSS growth**: the process's peak resident memory (``ru_maxrss``) minus its
  resident memory just before the run starts (torch and shoestring imported,
  no model yet), at the end of the last training step ("steps") and at the
  end of the run ("run": the final evaluation and checkpoint included). An
  outsider's view: it also holds the data, the loaded base checkpoint's pages
  and the allocator's slack, which the planner does not model, so it is
  shown, not compared;
- **tokens/s**: batch × sequence over the median wall time of the steps after
  the first (timed between the loop's ``batch`` and ``after_step`` events: forward,
  backward, optimizer step), beside the planner's rate for the same step on
  this machine (the catalog's ``cpu-local`` rate, and the rate fitted to
  ``plan --calibrate``'s probes of *full* steps, with LoRA's from the recipe);
  the LoRA/full speed ratio is also given by the process's CPU time per step,
  which other processes' load disturbs far less than wall time.

The planner's step comes from ``shoestring.plan.preflight.setup_for`` — the
mapping ``train --plan-first`` uses — applied to the very config trained. Print
the load average beside the figures: on a shared machine times are noisy;
memory is not.
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
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MIB = 2 ** 20
MODELS = {
    # ~75M parameters: a full fine-tune's weights, gradients and AdamW states
    # (16 bytes per parameter, ~1.1 GiB) dominate; a step takes a few seconds here.
    "default": {"n_layer": 8, "n_head": 12, "n_kv_head": 4, "n_embd": 768, "block_size": 256,
                "vocab_size": 8192},
    "quick": {"n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "block_size": 64,
              "vocab_size": 1024},
}
LLAMA_STYLE = {"norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "bias": False,
               "tie_embeddings": False}
TARGETS = "q,k,v,o"
RANK, ALPHA = 16, 32.0


class TensorPeak(TorchDispatchMode):
    """The peak of live tensor bytes while active: every storage an op returns is counted
    once, and uncounted when its last reference dies (a weakref finalizer on the storage,
    which torch keeps alive exactly as long as the C++ storage)."""

    def __init__(self, alive: list[torch.Tensor]) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: dict[int, weakref.finalize] = {}
        for t in alive:
            self._count(t)

    def _count(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st.data_ptr()
        if st.device.type == "meta" or key == 0 or key in self._seen:
            return
        n = st.nbytes()
        self.live += n
        self.peak = max(self.peak, self.live)
        self._seen[key] = weakref.finalize(st, self._free, key, n)

    def _free(self, key: int, n: int) -> None:
        if self._seen.pop(key, None) is not None:
            self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._count(t)
        return out


def _alive(parts) -> list[torch.Tensor]:
    """What exists when a step starts: parameters, their gradients, buffers, optimizer states."""
    out = list(parts.model.parameters()) + list(parts.model.buffers())
    out += [p.grad for p in parts.model.parameters() if p.grad is not None]
    for state in getattr(parts.optimizer, "state", {}).values():
        out += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return out


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def train_config(shape: dict, mode: str, batch: int, steps: int, corpus: Path,
                 out: Path) -> dict:
    """The config ``shoestring train --init-from BASE --finetune MODE --precision fp32
    --batch-size B --micro-batch-size B --max-steps S`` resolves to."""
    train = {"precision": "fp32", "batch_size": batch, "micro_batch_size": batch,
             "max_steps": steps, "eval_iters": 1, "finetune": mode, "device": "cpu"}
    if mode == "lora":
        train.update(lora_rank=RANK, lora_alpha=ALPHA, lora_targets=TARGETS)
    return {"data": {"source": f"text:{corpus}"}, "train": train, "out": str(out)}


def child(shape: dict, mode: str, batch: int, steps: int, corpus: Path, base: Path) -> dict:
    """One mode in this process: train through the real trainer with probing hooks."""
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config
    from shoestring.train.hooks import TrainHooks

    probe_step = 2                       # steps 0 and 1 create the optimizer states
    seen: dict = {"times": []}

    def setup(parts):
        seen["parts"] = parts
        seen["rss_setup"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return parts

    def on_batch(x, y, step):
        if step == probe_step:
            seen["mode"] = TensorPeak(_alive(seen["parts"]))
            seen["mode"].__enter__()
        seen["t0"], seen["c0"] = time.perf_counter(), time.process_time()
        return x, y

    def after_step(model, step):
        dt = time.perf_counter() - seen["t0"]
        dc = time.process_time() - seen["c0"]
        seen["rss_steps"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if step == probe_step:
            seen["mode"].__exit__(None, None, None)
        else:
            seen["times"].append(dt)
            seen.setdefault("cpu", []).append(dc)

    rss0 = _rss_now()
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve_config(train_config(shape, mode, batch, steps, corpus,
                                             Path(tmp) / "run"))
        result = train(config, init_from=base, ledger=None, workspace=Path(tmp),
                       hooks=TrainHooks(setup=setup, batch=on_batch, after_step=after_step))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    s = result.summary
    tokens = batch * shape["block_size"]
    return {"trainable": s["trainable_parameters"], "peak_tensors": seen["mode"].peak,
            "rss_growth_setup": seen["rss_setup"] - rss0,
            "rss_growth_steps": seen["rss_steps"] - rss0, "rss_growth": rss - rss0,
            "tokens_per_s": tokens / statistics.median(
                seen["times"][1:] or seen["times"]),
            "cpu_s_per_step": statistics.median(seen["cpu"][1:] or seen["cpu"]),
            "steps": s["steps"],
            "config": config.train.model_dump(mode="json")}


def _spec(shape: dict):
    from shoestring.plan.presets import spec_from_architecture

    return spec_from_architecture({"family": "gpt", "params": {**shape, **LLAMA_STYLE}},
                                  "bench-llama")


def predict(shape: dict, train_section: dict, calibration: list | None) -> dict:
    """The planner's trainable parameters, peak tensors and tokens/s for the trained config."""
    from shoestring.plan.catalog import default_catalog
    from shoestring.plan.compute import trained_params
    from shoestring.plan.config import resolve_plan_config
    from shoestring.plan.memory import estimate_memory
    from shoestring.plan.preflight import setup_for
    from shoestring.plan.rates import Measurement, RateBook
    from shoestring.plan.search import time_setup
    from shoestring.plan.workload import Workload
    from shoestring.train.config import TrainSection

    spec = _spec(shape)
    setup = setup_for(TrainSection.model_validate(train_section), spec, "cpu")
    mem = estimate_memory(spec, setup)
    cfg = resolve_plan_config({"model": "gpt-nano", "eval_fraction": 0.0})
    tokens = setup.micro_batch * setup.seq_len
    work = Workload("finetune", setup.seq_len, setup.micro_batch, float(tokens * 10),
                    setup.finetune)
    device = default_catalog().get("cpu-local")
    fit = time_setup(spec, work, device, setup, RateBook(), cfg)
    out = {"trainable": trained_params(spec, setup), "peak_tensors": mem.peak_tensors,
           "phase": mem.phase, "tokens_per_s": tokens / fit.step_s}
    if calibration:
        points = [Measurement("cpu-local", spec.name, r["dtype"], r["flops_per_step"],
                              r["seconds_per_step"], "calibration") for r in calibration
                  if r["model"] == spec.name]
        cal = time_setup(spec, work, device, setup, RateBook(points), cfg)
        out["tokens_per_s_calibrated"] = tokens / cal.step_s
    return out


def calibrate_full(shape: dict, batch: int) -> list[dict]:
    """``shoestring plan --calibrate``'s probes: full fp32 steps at the batch and a quarter."""
    from shoestring.plan.calibrate import calibrate
    from shoestring.plan.setup import StepSetup

    setup = StepSetup(micro_batch=batch, seq_len=shape["block_size"], precision="fp32",
                      kernels="cpu")
    return calibrate(_spec(shape), setup, dtypes=("fp32",))


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


def print_table(rows: list[dict]) -> None:
    print(f"{'':5} {'trainable':>16} {'peak tensors MiB':>26} {'RSS growth MiB':>17} "
          f"{'tokens/s':>38}")
    print(f"{'':5} {'measured/planner':>16} {'measured planner  error':>26} "
          f"{'steps':>8} {'run':>8} {'measured planner ratio calibrated ratio':>38}")
    for r in rows:
        m, p = r["measured"], r["predicted"]
        err = p["peak_tensors"] / m["peak_tensors"] - 1
        tps, cal = m["tokens_per_s"], p.get("tokens_per_s_calibrated")
        same = "=" if m["trainable"] == p["trainable"] else f"≠ {p['trainable']:,}"
        print(f"{r['mode']:5} {m['trainable']:>12,} {same:<3} "
              f"{m['peak_tensors'] / MIB:>9,.1f} {p['peak_tensors'] / MIB:>8,.1f} "
              f"{err:>+7.1%}{' ' if abs(err) <= 0.10 else '✗'} {m['rss_growth_steps'] / MIB:>8,.1f} "
              f"{m['rss_growth'] / MIB:>8,.1f} "
              f"{tps:>9,.1f} {p['tokens_per_s']:>7,.1f} {tps / p['tokens_per_s']:>5.2f} "
              f"{(cal or float('nan')):>10,.1f} {tps / cal if cal else float('nan'):>5.2f}")
    full, lora = rows

    def ratio(k: str, side: str) -> float:
        return lora[side][k] / full[side][k]

    print(f"LoRA/full: trainable {ratio('trainable', 'measured'):.2%}; peak tensors "
          f"{ratio('peak_tensors', 'measured'):.2f} (planner "
          f"{ratio('peak_tensors', 'predicted'):.2f}); tokens/s "
          f"{ratio('tokens_per_s', 'measured'):.2f} (planner "
          f"{ratio('tokens_per_s', 'predicted'):.2f}); by CPU time per step (less disturbed "
          f"by other load) {full['measured']['cpu_s_per_step'] / lora['measured']['cpu_s_per_step']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 0.75M-parameter model (seconds)")
    ap.add_argument("--steps", type=int, default=5, help="steps per mode (≥ 4: two warm-up, "
                    "one measured for memory, the rest timed)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/data/shakespeare.txt"))
    ap.add_argument("--no-calibrate", action="store_true",
                    help="skip the plan --calibrate probes (catalog rate only)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "BASE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 4:
        ap.error("--steps must be at least 4")
    shape = MODELS["quick" if args.quick else "default"]
    if args.child:   # one mode per process, so its peak RSS is its own
        mode, base = args.child
        print(json.dumps(child(shape, mode, args.batch, args.steps, args.corpus, Path(base))))
        return 0
    calibration = None if args.no_calibrate else calibrate_full(shape, args.batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{tmp}/ledger.db"}
        base = make_base(shape, args.corpus, Path(tmp) / "base", env)
        for mode in ("full", "lora"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(base), "--batch",
                 str(args.batch), "--steps", str(args.steps), "--corpus", str(args.corpus)]
                + (["--quick"] if args.quick else []),
                capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
            meas = json.loads(done.stdout.strip().splitlines()[-1])
            pred = predict(shape, meas.pop("config"), calibration)
            rows.append({"mode": mode, "measured": meas, "predicted": pred})
    load = Path("/proc/loadavg").read_text().split()[:3]
    n = sum(p.numel() for p in _model_params(shape))
    if args.json:
        print(json.dumps({"model": shape, "parameters": n, "batch": args.batch, "load": load,
                          "rows": rows}, indent=2))
        return 0
    print(f"Llama-style {shape}, {n / 1e6:.1f}M parameters — batch {args.batch} × "
          f"{shape['block_size']} tokens, fp32, {torch.get_num_threads()} threads; "
          f"load average {' '.join(load)}")
    print_table(rows)
    return 0


def _model_params(shape: dict):
    from shoestring.models.gpt import GPT, GPTConfig

    with torch.device("meta"):
        return list(GPT(GPTConfig(**shape, **LLAMA_STYLE)).parameters())


if __name__ == "__main__":
    sys.exit(main())
