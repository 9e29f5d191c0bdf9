"""Shared by the serving benchmarks: start servers, sweep load, find rps at p99 <= target.

The load generator (shoestring.serve.loadgen) is closed-loop: at concurrency c
it keeps c requests in flight. A server's capacity at a latency target is the
highest throughput of 200s among the concurrency levels whose p99 stays at or
under the target. Variants are measured level by level, alternating their
order, so machine noise hits all of them alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from shoestring.serve.loadgen import Request, run_closed_loop, summarize



def pin(pid: int, cpus: set[int] | None) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, cpus)


class Proc:
    """A server child process that prints '… at http://HOST:PORT' when ready."""

    def __init__(self, cmd: list[str], cpus: set[int] | None = None) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        pin(self.proc.pid, cpus)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True
                         ).start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if " at http://" in line:
                url = line.split(" at http://", 1)[1].split()[0]
                self.host, port = url.rsplit(":", 1)
                self.port = int(port)
                return
        self.stop()
        raise RuntimeError(f"server did not start: {' '.join(cmd)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def shoestring_cmd(*args: str) -> list[str]:
    code = "import sys; from shoestring.cli.main import run; sys.argv[0]='shoestring'; run()"
    return [sys.executable, "-c", code, *args]


@dataclass
class Variant:
    name: str
    proc: Proc
    headers: tuple[tuple[str, str], ...] = ()
    runs: dict[int, list[dict]] = field(default_factory=dict)
    ok_total: int = 0  # every 200 it answered, warm-ups included


def measure(v: Variant, concurrency: int, seconds: float, path: str, body: bytes) -> dict:
    req = Request(path, body, v.headers)
    warm = asyncio.run(run_closed_loop(v.proc.host, v.proc.port, lambda i: req, concurrency,
                                       duration_s=min(0.5, seconds / 4)))  # warm connections
    v.ok_total += sum(r.status == 200 for r in warm)
    t0 = time.perf_counter()
    res = asyncio.run(run_closed_loop(v.proc.host, v.proc.port, lambda i: req, concurrency,
                                      duration_s=seconds))
    s = summarize(res, time.perf_counter() - t0)
    v.ok_total += s["ok"]
    v.runs.setdefault(concurrency, []).append(s)
    return s


def sweep(variants: list[Variant], levels: list[int], seconds: float, rounds: int, path: str,
          body: bytes, cpus: set[int] | None, log=print) -> None:
    pin(os.getpid(), cpus)
    for r in range(rounds):
        for i, c in enumerate(levels):
            order = variants if (i + r) % 2 == 0 else variants[::-1]
            for v in order:
                s = measure(v, c, seconds, path, body)
                log(f"  round {r + 1} c={c:<3} {v.name:<28} {s['ok_per_s']:8.0f} ok/s  "
                    f"p50 {s['p50_ms']:6.1f} ms  p99 {s['p99_ms']:6.1f} ms  "
                    f"non-200 {s['requests'] - s['ok']}")


def capacity(v: Variant, target_ms: float) -> tuple[float, int | None]:
    """Best median ok/s over levels whose median p99 <= target (and which level)."""
    # Medians over rounds: one noisy interval on a shared machine does not decide.
    best, at = 0.0, None
    for c, runs in sorted(v.runs.items()):
        p99 = statistics.median(r["p99_ms"] for r in runs)
        rps = statistics.median(r["ok_per_s"] for r in runs)
        if p99 <= target_ms and rps > best:
            best, at = rps, c
    return best, at


def seed_mlp_run(root: Path, in_features: int, hidden: tuple[int, ...] = (128, 64)) -> Path:
    """A run folder with the seed MLP (in → 128 → 64 → 10), or wider ``hidden`` layers.

    64 inputs: trained on the bundled digits data (a few seconds). 784 inputs (the
    seed example's Fashion-MNIST shape): the same architecture with its initial
    weights, written through the same save_run; a forward pass costs the same
    whatever the weights' values, and no data set has to be present.
    """
    out = root / "digits"
    if in_features == 64 and hidden == (128, 64):
        from shoestring.train.api import train
        from shoestring.train.config import resolve_config

        train(resolve_config({"model": {"name": "seed-mlp"}, "data": {"source": "digits"},
                              "train": {"epochs": 5}, "out": str(out)}))
        return out
    from types import SimpleNamespace

    from shoestring.models.card import Architecture, Inputs, ModelCard, Outputs, PreprocessingCard
    from shoestring.models.registry import DataShape, architecture_for, build_model
    from shoestring.models.run_folder import save_run
    from shoestring.types import Task

    cfg = SimpleNamespace(name="seed-mlp" if hidden == (128, 64) else "mlp", hidden=list(hidden),
                          dropout=0.0, activation="relu")
    arch = architecture_for(cfg, DataShape((in_features,), 10))
    save_run(out, build_model(arch), ModelCard(
        architecture=Architecture(**arch), task=Task.classification,
        inputs=Inputs(shape=[in_features]), outputs=Outputs(kind="softmax", size=10),
        preprocessing=PreprocessingCard(scale=1 / 255),
        class_names=[str(i) for i in range(10)]))
    return out


def body_for(in_features: int) -> bytes:
    """One row of pixel-like values (0..255 integers, as a client would send)."""
    return json.dumps({"inputs": [{"name": "input", "shape": [1, in_features],
                                   "datatype": "FP32",
                                   "data": [float((i * 37) % 256) for i in range(in_features)]
                                   }]}).encode()
