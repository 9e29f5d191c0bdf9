"""Shared by the serving benchmarks: start pinned servers, load them with an independent
client, find requests/s at p99 <= target.

Servers run on ``server_cpus``, the load generator (bench/serve_client.py:
aiohttp, keep-alive, closed loop, one process per client CPU) on
``client_cpus``, so the two do not share a core. At concurrency c, c requests
are in flight. A server's capacity at a latency target is the highest
throughput of 200s among the concurrency levels whose p99 stays at or under
the target. Variants are measured level by level, alternating their order, so
machine noise hits all of them alike. Each run also reads the server's CPU
time (utime + stime of all its threads, from /proc), so its CPU cost per
request is known even when the client, not the server, is the bottleneck.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_set(spec: str | None) -> set[int] | None:
    """'0' or '1-3' or '1,3' → a set of CPUs (None: do not pin)."""
    if not spec:
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def pinned(cmd: list[str], cpus: set[int] | None) -> list[str]:
    """``cmd`` run under ``taskset -c CPUS`` (unchanged when not pinning or without taskset)."""
    if not cpus or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of a process (the main thread as
    'main'); the server names its threads (serve/threads.py), so e.g. 'ss-ledger' is the
    usage-log writer."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main" if task.name == str(pid) else raw[raw.index("(") + 1:raw.rindex(")")]
        name = name.rstrip("0123456789").rstrip("_-") or name  # ss-db_0..3 -> ss-db
        fields = raw.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def main_thread_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's main thread (the event
    loop): a voluntary one is a sleep and wake-up (an idle loop, a wait for the GIL)."""
    vol = invol = 0
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches:"):
            invol = int(line.split()[1])
    return vol, invol


def batch_counts(url: str) -> tuple[float, float]:
    """(batches, rows) the server ran so far, from its /metrics (0s if it has none)."""
    import urllib.request

    batches = rows = 0.0
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("shoestring_batch_size_count"):
            batches += float(line.split()[-1])
        elif line.startswith("shoestring_batch_size_sum"):
            rows += float(line.split()[-1])
    return batches, rows


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


class Proc:
    """A server child process that prints '… at http://HOST:PORT' when ready."""

    def __init__(self, cmd: list[str], cpus: set[int] | None = None) -> None:
        self.proc = subprocess.Popen(pinned(cmd, cpus), stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        atexit.register(self.stop)  # a bench that fails half-way leaves no server behind
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True
                         ).start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if " at http://" in line:
                self.url = "http://" + line.split(" at http://", 1)[1].split()[0]
                return
        self.stop()
        raise RuntimeError(f"server did not start: {' '.join(cmd)}")

    def stop(self) -> int | None:
        """SIGTERM (a Shoestring server drains and records its usage), then wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode


def shoestring_cmd(*args: str) -> list[str]:
    code = "import sys; from shoestring.cli.main import run; sys.argv[0]='shoestring'; run()"
    return [sys.executable, "-c", code, *args]


@dataclass
class Variant:
    name: str
    proc: Proc
    headers: tuple[str, ...] = ()
    runs: dict[int, list[dict]] = field(default_factory=dict)
    ok_total: int = 0  # every 200 it answered, warm-ups included


def run_clients(url: str, body_file: Path, headers: tuple[str, ...], concurrency: int,
                seconds: float, client_cpus: set[int] | None, rate: float | None = None
                ) -> dict:
    """One closed-loop run split over one client process per client CPU; merged results.
    ``rate``: offered requests/s in total (paced) instead of as fast as answered."""
    procs = max(1, min(len(client_cpus or {0}), concurrency))
    shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    cpus = sorted(client_cpus) if client_cpus else [None] * procs
    children = []
    for i, share in enumerate(shares):
        cmd = [sys.executable, str(HERE / "serve_client.py"), url, str(body_file),
               "--concurrency", str(share), "--seconds", str(seconds)]
        for h in headers:
            cmd += ["--header", h]
        if rate:
            cmd += ["--rate", str(rate * share / concurrency)]
        pin = {cpus[i % len(cpus)]} if cpus[0] is not None else None
        children.append(subprocess.Popen(pinned(cmd, pin), stdout=subprocess.PIPE, text=True))
    parts = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 120)
        parts.append(json.loads(out.strip().splitlines()[-1]))
    lat = sorted(x for p in parts for x in p["latencies_ms"])
    wall = max(p["wall_s"] for p in parts)
    statuses: dict[str, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    ok = sum(p["ok"] for p in parts)
    client_cpus_used = len({cpus[i % len(cpus)] for i in range(procs)})
    return {"requests": len(lat), "ok": ok, "ok_all": sum(p["ok_all"] for p in parts),
            # Near 100%: the load generator, not the server, limits the throughput.
            "client_busy": sum(p["client_cpu_s"] for p in parts) / (wall * client_cpus_used),
            "ok_per_s": ok / wall, "statuses": statuses,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "mean_ms": sum(lat) / len(lat) if lat else float("nan"), "wall_s": wall}


def measure(v: Variant, concurrency: int, seconds: float, path: str, body_file: Path,
            client_cpus: set[int] | None, rate: float | None = None) -> dict:
    user0, sys0 = cpu_seconds(v.proc.proc.pid)
    threads0 = thread_cpu_seconds(v.proc.proc.pid)
    switches0, batches0 = main_thread_switches(v.proc.proc.pid), batch_counts(v.proc.url)
    s = run_clients(v.proc.url + path, body_file, v.headers, concurrency, seconds, client_cpus,
                    rate)
    # The client's warm-up (0.5 s) is inside the CPU interval but not in the counts: count
    # the server's CPU per request over the whole run, warm-up requests estimated at the
    # measured rate.
    user1, sys1 = cpu_seconds(v.proc.proc.pid)
    served = s["requests"] * (seconds + 0.5) / seconds
    s["server_cpu_us"] = 1e6 * (user1 - user0 + sys1 - sys0) / served if served else math.nan
    s["server_sys_us"] = 1e6 * (sys1 - sys0) / served if served else math.nan
    threads1 = thread_cpu_seconds(v.proc.proc.pid)
    s["thread_cpu_us"] = {k: 1e6 * (t - threads0.get(k, 0.0)) / served if served else math.nan
                          for k, t in sorted(threads1.items())}
    switches1, batches1 = main_thread_switches(v.proc.proc.pid), batch_counts(v.proc.url)
    # The event loop's sleeps (voluntary switches) and preemptions per request, and the
    # rows per batch: what a per-group cost (a thread waking the loop) shows up as.
    s["loop_vol_switches"] = (switches1[0] - switches0[0]) / served if served else math.nan
    s["loop_invol_switches"] = (switches1[1] - switches0[1]) / served if served else math.nan
    nb = batches1[0] - batches0[0]
    s["rows_per_batch"] = (batches1[1] - batches0[1]) / nb if nb else math.nan
    # Near 100%: the server is the bottleneck; well below it, the client is.
    s["server_busy"] = (user1 - user0 + sys1 - sys0) / (seconds + 0.5)
    v.ok_total += s["ok_all"]
    if rate is None:
        v.runs.setdefault(concurrency, []).append(s)
    return s


def sweep(variants: list[Variant], levels: list[int], seconds: float, rounds: int, path: str,
          body_file: Path, client_cpus: set[int] | None, log=print) -> None:
    for r in range(rounds):
        for i, c in enumerate(levels):
            order = variants if (i + r) % 2 == 0 else variants[::-1]
            for v in order:
                s = measure(v, c, seconds, path, body_file, client_cpus)
                bad = s["requests"] - s["ok"]
                log(f"  round {r + 1} c={c:<3} {v.name:<34} {s['ok_per_s']:8.0f} ok/s  "
                    f"p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f} ms  "
                    f"server {s['server_cpu_us']:5.0f} µs CPU/req "
                    f"({s['server_sys_us']:4.0f} system)  busy: server "
                    f"{100 * s['server_busy']:3.0f}% client {100 * s['client_busy']:3.0f}%"
                    + (f"  non-200 {bad} {s['statuses']}" if bad else ""))


def median_of(v: Variant, c: int, key: str) -> float:
    return statistics.median(r[key] for r in v.runs[c])


def capacity(v: Variant, target_ms: float) -> tuple[float, int | None]:
    """Best median ok/s over levels whose median p99 <= target (and which level)."""
    best, at = 0.0, None
    for c in sorted(v.runs):
        if median_of(v, c, "p99_ms") <= target_ms and median_of(v, c, "ok_per_s") > best:
            best, at = median_of(v, c, "ok_per_s"), c
    return best, at


def saturation(v: Variant) -> float:
    """Best median ok/s at any level."""
    return max(median_of(v, c, "ok_per_s") for c in v.runs)


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
