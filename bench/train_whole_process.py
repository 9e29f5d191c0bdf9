"""Issue 10: Shoestring against what users would otherwise run, as whole processes.

Three pairs, each side a separate process timed end to end (interpreter start,
imports, data loading, training, evaluation, writing), the repeats interleaved
so that machine noise hits both sides alike:

1. target mode: ``shoestring train --model seed-mlp --data fashion-mnist
   --target val_accuracy=0.87 --recipe fast`` (stops on a validation split
   carved from the training data; its test accuracy is reported too) against
   the seed's Keras script (784-128-64-10 ReLU/softmax, Adam, cross-entropy,
   batch 128, 10 epochs), run with ``tensorflow-cpu`` from a throw-away
   virtual environment that this bench creates under ~/.cache on first use.
   Aim: Keras / Shoestring >= 6.7.
2. the fixed seed recipe (10 epochs, batch 128, Adam 1e-3) against a tuned
   hand-written PyTorch loop (fused Adam, index_select batches, one test
   evaluation at the end). Aim: Shoestring / loop <= 0.8.
3. nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, block 64, batch
   12, 600 steps, AdamW 1e-3, char-level Shakespeare) against a hand-written
   nanoGPT-style loop on the same model class. Aim: loop / Shoestring >= 1.25.

Both sides read the same files. Baselines use PyTorch's default threads unless
``--baseline-threads`` says otherwise; Shoestring chooses its own. Each
Shoestring run's ``summary.json`` time breakdown is printed beside it. Every
process's CPU time (user + system, from ``getrusage(RUSAGE_CHILDREN)``) is
printed beside its wall time, and the table gives both ratios: on a shared,
loaded machine the CPU ratio is the steadier of the two.

Shoestring's own modules are byte-compiled before timing, as pip does when it
installs a wheel: a development checkout is an editable install, and under
PYTHONDONTWRITEBYTECODE=1 (set on the shared development machines) each run
would otherwise compile them again (measured 0.12 s of CPU per run), a cost
no installed copy pays. torch's modules came byte-compiled from their wheel.

Usage: python bench/train_whole_process.py [--repeats 3] [--quick] [--pairs target,fixed,gpt]
Needs Debian's dataset-fashion-mnist and ../shared/data/shakespeare.txt.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FMNIST = Path("/usr/share/datasets/fashion-mnist")
# shared/ lies beside the repository (or the worktrees' folder).
SHAKESPEARE = next((p for p in (Path(__file__).resolve().parents[n] / "shared/data/shakespeare.txt"
                                for n in (2, 3)) if p.exists()),
                   Path("/work/shared/data/shakespeare.txt"))
TF_VENV = Path.home() / ".cache" / "shoestring-bench" / "tf-venv"
TF_REQUIREMENT = "tensorflow-cpu>=2.16,<3"

IDX_READER = """
import gzip
import numpy as np

def idx(path):
    data = gzip.open(path).read()
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", ndim, 4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
"""

KERAS_SEED = IDX_READER + """
import json, sys, time
t0 = time.perf_counter()
import keras
d = sys.argv[1]
x_train = idx(f"{d}/train-images-idx3-ubyte.gz") / 255.0
y_train = idx(f"{d}/train-labels-idx1-ubyte.gz")
x_test = idx(f"{d}/t10k-images-idx3-ubyte.gz") / 255.0
y_test = idx(f"{d}/t10k-labels-idx1-ubyte.gz")
model = keras.Sequential([
    keras.layers.Input((28, 28)), keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"), keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
t1 = time.perf_counter()
model.fit(x_train, y_train, epochs=10, batch_size=128, verbose=0)
t2 = time.perf_counter()
loss, acc = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"test_accuracy": acc, "train_seconds": t2 - t1}))
"""

TORCH_MLP = IDX_READER + """
import json, sys, time
import torch
import torch.nn.functional as F
from torch import nn
if len(sys.argv) > 2:
    torch.set_num_threads(int(sys.argv[2]))
d = sys.argv[1]
torch.manual_seed(0)
x = torch.from_numpy(idx(f"{d}/train-images-idx3-ubyte.gz").reshape(-1, 784)).float().div_(255)
y = torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz").astype("int64"))
xt = torch.from_numpy(idx(f"{d}/t10k-images-idx3-ubyte.gz").reshape(-1, 784)).float().div_(255)
yt = torch.from_numpy(idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype("int64"))
model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                      nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
t1 = time.perf_counter()
for epoch in range(10):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 128):
        b = perm[i:i + 128]
        loss = F.cross_entropy(model(x.index_select(0, b)), y.index_select(0, b))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
t2 = time.perf_counter()
with torch.inference_mode():
    acc = (model(xt).argmax(1) == yt).float().mean().item()
print(json.dumps({"test_accuracy": acc, "train_seconds": t2 - t1}))
"""

TORCH_GPT = """
import json, sys, time
import numpy as np
import torch
from shoestring.models.gpt import GPT, GPTConfig
if len(sys.argv) > 3:
    torch.set_num_threads(int(sys.argv[3]))
text = open(sys.argv[1], encoding="utf-8").read()
steps = int(sys.argv[2])
chars = sorted(set(text))
lookup = {c: i for i, c in enumerate(chars)}
data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data))
train, val = data[:n], data[n:]
BATCH, BLOCK = 12, 64

def batch(split):
    ix = torch.randint(len(split) - BLOCK - 1, (BATCH,))
    return (torch.stack([split[i:i + BLOCK] for i in ix]),
            torch.stack([split[i + 1:i + 1 + BLOCK] for i in ix]))

torch.manual_seed(0)
model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=BLOCK,
                      vocab_size=len(chars), dropout=0.0))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
t1 = time.perf_counter()
for _ in range(steps):
    x, y = batch(train)
    _, loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
t2 = time.perf_counter()
model.eval()
with torch.no_grad():
    val_loss = sum(model(*batch(val))[1].item() for _ in range(20)) / 20
print(json.dumps({"val_loss": val_loss, "train_seconds": t2 - t1}))
"""


def ensure_tf_python() -> Path:
    """The Python of a throw-away venv with tensorflow-cpu (created on first use)."""
    py = TF_VENV / "bin" / "python"
    probe = [str(py), "-c", "import keras, tensorflow"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"creating {TF_VENV} with {TF_REQUIREMENT} (once; a few minutes)...", flush=True)
    TF_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TF_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", TF_REQUIREMENT], check=True)
    subprocess.run(probe, check=True)
    return py


def byte_compile_shoestring() -> None:
    """Compile the ``shoestring`` package the bench runs to ``__pycache__`` (see above)."""
    probe = [sys.executable, "-c", "import shoestring; print(shoestring.__file__)"]
    package = Path(subprocess.run(probe, capture_output=True, text=True,
                                  check=True).stdout.strip()).parent
    compileall.compile_dir(package, quiet=1)
    print(f"byte-compiled {package} (as pip does for an installed wheel)")


def children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Timed(float):
    """Wall seconds of one process, with its CPU seconds as ``.cpu``."""

    cpu: float


def run(cmd: list[str], cwd: Path, env: dict) -> tuple[Timed, str]:
    t, c = time.perf_counter(), children_cpu()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = Timed(time.perf_counter() - t)
    seconds.cpu = children_cpu() - c
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n"
                         f"{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


class Shoestring:
    """``shoestring train ...`` in a workspace kept across repeats (its caches warm)."""

    def __init__(self, workspace: Path, args: list[str]) -> None:
        self.workspace, self.args, self.n = workspace, args, 0
        workspace.mkdir(parents=True, exist_ok=True)

    def __call__(self, env: dict) -> tuple[Timed, dict]:
        self.n += 1
        out = self.workspace / f"run-{self.n}"
        seconds, _ = run([sys.executable, "-m", "shoestring", "train", *self.args,
                          "--out", str(out)], self.workspace, env)
        return seconds, json.loads((out / "summary.json").read_text())


def breakdown(summary: dict) -> str:
    s = summary.get("seconds") or {}
    return " ".join(f"{k} {s[k]:.2f}" for k in ("startup", "data", "train", "eval", "write")
                    if s.get(k) is not None)


def gpt_quality(result: dict) -> str:
    """Validation loss, and for Shoestring the precision ``auto`` chose (and why)."""
    out = f"val_loss {result['val_loss']:.3f}"
    if "precision" in result:
        out += f"  precision {result['precision']}"
    return out


def compare(title: str, ours, theirs, repeats: int, env: dict, quality) -> dict:
    """Cold runs of both, then ``repeats`` interleaved warm ones; medians."""
    print(f"\n== {title}", flush=True)
    rows = {"ours": [], "theirs": []}
    for r in range(repeats + 1):
        label = "cold" if r == 0 else f"[{r}] "
        t, summary = ours(env)
        print(f"  {label} shoestring {t:7.2f} s (cpu {t.cpu:6.2f})  {quality(summary)}  "
              f"({breakdown(summary)})", flush=True)
        if r:
            rows["ours"].append((t, summary))
        t, result = theirs(env)
        print(f"  {label} baseline   {t:7.2f} s (cpu {t.cpu:6.2f})  {quality(result)}  "
              f"(its training loop {result['train_seconds']:.2f} s)", flush=True)
        if r:
            rows["theirs"].append((t, result))
    med = {k: statistics.median(t for t, _ in v) for k, v in rows.items()}
    cpu = {k: statistics.median(t.cpu for t, _ in v) for k, v in rows.items()}
    return {"ours": med["ours"], "theirs": med["theirs"], "ours_cpu": cpu["ours"],
            "theirs_cpu": cpu["theirs"], "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side, after a cold one")
    ap.add_argument("--quick", action="store_true", help="one timed repeat")
    ap.add_argument("--pairs", default="target,fixed,gpt")
    ap.add_argument("--gpt-steps", type=int, default=600)
    ap.add_argument("--gpt-precision", default="auto",
                    help="Shoestring's --precision in the GPT pair (the loop stays fp32)")
    ap.add_argument("--baseline-threads", type=int, default=None,
                    help="torch threads of the hand-written loops (default: torch's)")
    ap.add_argument("--data", type=Path, default=FMNIST)
    ap.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    pairs = args.pairs.split(",")
    root = Path(tempfile.mkdtemp(prefix="ss-whole-"))
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{root / 'ledger.db'}", "NO_COLOR": "1"}
    threads = [] if args.baseline_threads is None else [str(args.baseline_threads)]
    scripts = {}
    for name, body in (("keras_seed.py", KERAS_SEED), ("torch_mlp.py", TORCH_MLP),
                       ("torch_gpt.py", TORCH_GPT)):
        scripts[name] = root / name
        scripts[name].write_text(textwrap.dedent(body))
    byte_compile_shoestring()
    print(f"load average {open('/proc/loadavg').read().split()[:3]}, {os.cpu_count()} CPUs, "
          f"workspace {root}")
    results = {}
    data = "fashion-mnist" if args.data == FMNIST else f"idx:{args.data}"
    acc = lambda s: f"test_accuracy {s['test_accuracy']:.4f}"  # noqa: E731

    if "target" in pairs:
        tf_python = ensure_tf_python()
        ours = Shoestring(root / "target", ["--model", "seed-mlp", "--data", data,
                                            "--target", "val_accuracy=0.87", "--recipe", "fast"])

        def keras(env):
            t, out = run([str(tf_python), str(scripts["keras_seed.py"]), str(args.data)], root,
                         {**env, "TF_CPP_MIN_LOG_LEVEL": "3"})
            return t, last_json(out)

        results["target"] = compare("target mode vs the seed's Keras script (10 epochs)", ours,
                                    keras, repeats, env, acc)
    if "fixed" in pairs:
        ours = Shoestring(root / "fixed", ["--model", "seed-mlp", "--data", data,
                                           "--epochs", "10", "--batch-size", "128"])

        def loop(env):
            t, out = run([sys.executable, str(scripts["torch_mlp.py"]), str(args.data),
                          *threads], root, env)
            return t, last_json(out)

        results["fixed"] = compare("fixed seed recipe vs a tuned PyTorch loop", ours, loop,
                                   repeats, env, acc)
    if "gpt" in pairs:
        steps = str(args.gpt_steps)
        ours = Shoestring(root / "gpt", [
            "--model", "gpt", "--n-layer", "4", "--n-head", "4", "--n-embd", "128",
            "--block-size", "64", "--batch-size", "12", "--max-steps", steps,
            "--optimizer", "adamw", "--lr", "1e-3", "--data", f"text:{args.corpus}",
            "--tokenizer", "char", "--precision", args.gpt_precision])

        def loop(env):
            t, out = run([sys.executable, str(scripts["torch_gpt.py"]), str(args.corpus), steps,
                          *threads], root, env)
            return t, last_json(out)

        results["gpt"] = compare(f"nanoGPT CPU config, {steps} steps, vs a hand-written loop",
                                 ours, loop, repeats, env, gpt_quality)
        print(f"  shoestring precision: {results['gpt']['rows']['ours'][0][1]['precision_note']}")

    print(f"\nload average {open('/proc/loadavg').read().split()[:3]}")
    print("medians of the timed runs; cpu = user + system seconds of the whole process")
    print(f"{'pair':<8} {'shoestring s':>12} {'baseline s':>11} {'ratio':>7}  "
          f"{'cpu ours':>8} {'cpu base':>8} {'ratio':>6}  aim")
    aims = {"target": ("baseline/shoestring", ">= 6.7"), "fixed": ("shoestring/baseline", "<= 0.8"),
            "gpt": ("baseline/shoestring", ">= 1.25")}
    for name, r in results.items():
        kind, aim = aims[name]
        wall, cpu = ((r["theirs"] / r["ours"], r["theirs_cpu"] / r["ours_cpu"])
                     if kind == "baseline/shoestring" else
                     (r["ours"] / r["theirs"], r["ours_cpu"] / r["theirs_cpu"]))
        print(f"{name:<8} {r['ours']:12.2f} {r['theirs']:11.2f} {wall:7.2f}  "
              f"{r['ours_cpu']:8.2f} {r['theirs_cpu']:8.2f} {cpu:6.2f}  {kind} {aim}")


if __name__ == "__main__":
    main()
