"""Continuous batching: 16 concurrent completions against the same 16 one after another.

Trains gpt-nano (4 layers, 128 wide, context 64, char-level) briefly on the
Shakespeare excerpt shipped in the package, serves it with the real
``shoestring serve`` (API key, durable SQLite ledger), and sends the same 16
requests (different prompts and seeds, temperature 0.8, ``max_tokens`` each)
with the official ``openai`` client (``AsyncOpenAI``, keep-alive):

* sequential: one request at a time, each awaited before the next;
* concurrent: all 16 at once (``asyncio.gather``), decoded together by the
  server's scheduler, each joining the batch as it arrives.

Rounds alternate the two orders. Reports completion tokens/s of each (median
over rounds), the ratio, per-request latency, the CPU time the server and the
client used and how long the server's threads waited for a CPU (on a machine
shared with other jobs the wall-clock ratio is noisy; tokens per server
CPU-second is not), and checks the ledger: usage events ==
requests answered and ledger units == the sum of ``usage.total_tokens`` the
client received.

Usage: python bench/serve_completions.py [--rounds 3] [--max-tokens 48] [--stream]
       [--steps 200] [--corpus FILE] [--run RUN_DIR] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_harness import Proc, shoestring_cmd

PROMPTS = ["ROMEO:", "JULIET:", "KING HENRY:", "First Citizen:", "HAMLET:", "To be, or",
           "O, ", "What light", "MACBETH:", "My lord,", "Now is the", "Good morrow",
           "LEAR:", "Friends, ", "If music", "All the"]
CORPUS = Path(__file__).resolve().parents[1] / "src/shoestring/data/corpora/shakespeare-excerpt.txt"


def train_run(out: Path, corpus: Path, steps: int) -> Path:
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    t0 = time.perf_counter()
    result = train(resolve_config({
        "model": {"name": "gpt-nano"}, "data": {"source": f"text:{corpus}", "tokenizer": "char"},
        "train": {"max_steps": steps, "batch_size": 12, "lr": 1e-3, "seed": 0},
        "out": str(out)}), workspace=out.parent)
    print(f"trained gpt-nano {steps} steps on {corpus.name} in {time.perf_counter() - t0:.0f} s "
          f"(val_loss {result.summary.get('val_loss', float('nan')):.2f})")
    return out


async def one(client, model: str, i: int, max_tokens: int, stream: bool) -> tuple[int, int, float]:
    """(completion tokens, total tokens, seconds) of request ``i``."""
    t0 = time.perf_counter()
    kw = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens,
          "temperature": 0.8, "seed": i}
    if stream:
        usage = None
        async for chunk in await client.completions.create(
                stream=True, stream_options={"include_usage": True}, **kw):
            usage = chunk.usage or usage
    else:
        usage = (await client.completions.create(**kw)).usage
    return usage.completion_tokens, usage.total_tokens, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (proc(5): fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait(pid: int) -> float:
    """Seconds the process's threads were ready to run but waited for a CPU (the second
    field of /proc/PID/task/TID/schedstat, in ns): what other jobs on the machine cost it."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


async def rounds(url: str, key: str, model: str, n: int, max_tokens: int, stream: bool,
                 count: int, pid: int) -> tuple[dict[str, list[dict]], int, int]:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=300)
    results: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
    _, total_units, _ = await one(client, model, 0, max_tokens, stream)  # warm-up, billed too
    answered = 1
    for r in range(count):
        order = ["sequential", "concurrent"] if r % 2 == 0 else ["concurrent", "sequential"]
        for mode in order:
            t0, cpu0, client0 = time.perf_counter(), cpu_seconds(pid), time.process_time()
            wait0 = runqueue_wait(pid)
            if mode == "sequential":
                out = [await one(client, model, i, max_tokens, stream) for i in range(n)]
            else:
                out = await asyncio.gather(*(one(client, model, i, max_tokens, stream)
                                             for i in range(n)))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            client_cpu = time.process_time() - client0
            waited = runqueue_wait(pid) - wait0
            tokens = sum(o[0] for o in out)
            answered += len(out)
            total_units += sum(o[1] for o in out)
            results[mode].append({"wall": wall, "tokens": tokens, "tok_s": tokens / wall,
                                  "tok_cpu_s": tokens / max(cpu, 1e-9),
                                  "p50": statistics.median(o[2] for o in out),
                                  "max": max(o[2] for o in out)})
            print(f"  round {r + 1} {mode:10s} {tokens:5d} tokens in {wall:6.2f} s = "
                  f"{tokens / wall:8.1f} tokens/s (CPU: server {cpu:.2f} s, "
                  f"client {client_cpu:.2f} s; server waited {waited:.2f} s for a CPU)",
                  flush=True)
    await client.close()
    return results, answered, total_units


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=48,
                   help="completion tokens per request (gpt-nano's context is 64)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--stream", action="store_true", help="stream every completion (SSE)")
    p.add_argument("--steps", type=int, default=200, help="training steps of gpt-nano")
    p.add_argument("--corpus", type=Path, default=CORPUS,
                   help="text to train on (default: the excerpt shipped in the package)")
    p.add_argument("--run", type=Path, default=None,
                   help="serve this run folder; trained into it first if it holds no model")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction,
                   default=(os.cpu_count() or 1) >= 2,
                   help="server on CPU 0, this client on CPU 1")
    p.add_argument("--quick", action="store_true", help="1 round, 50 training steps")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps = 1, min(args.steps, 50)
    print(f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]}")
    with tempfile.TemporaryDirectory(prefix="ss-completions-") as tmp:
        root = Path(tmp)
        run = args.run or root / "bard"
        if not (run / "model.json").exists():
            train_run(run, args.corpus, args.steps)
        db = f"sqlite:///{root / 'ledger.db'}"
        from shoestring.ledger.db import open_ledger
        from shoestring.serve.keys import KeyStore
        from shoestring.serve.plans import load_plans

        plans = root / "plans.toml"
        plans.write_text("[bench]\nrequests_per_second = 1e9\nburst = 1000000000\n"
                         "price_per_1000_units_usd = 0.5\n")
        key, _ = KeyStore(open_ledger(db), load_plans(plans)).create(project="bench",
                                                                        plan="bench")
        server_cpus = {0} if args.pin else None
        if args.pin:
            os.sched_setaffinity(0, {1})
        srv = Proc(shoestring_cmd("--db", db, "serve", str(run), "--name", "bard", "--port", "0",
                                  "--plans", str(plans), "--max-running-generations",
                                  str(max(16, args.requests))), server_cpus)
        url = srv.url
        try:
            print(f"{args.requests} requests x max_tokens {args.max_tokens}, temperature 0.8, "
                  f"{'streamed' if args.stream else 'not streamed'}, {args.rounds} rounds, "
                  f"pinned={args.pin}")
            results, answered, client_units = asyncio.run(rounds(
                url, key, "bard", args.requests, args.max_tokens, args.stream, args.rounds,
                srv.proc.pid))
        finally:
            srv.stop()
        from sqlalchemy import func, select

        from shoestring.serve.tables import UsageEventRow as E

        with open_ledger(db).connect() as conn:
            events, units = conn.execute(select(func.count(), func.sum(E.units))).one()
    med = {m: statistics.median(r["tok_s"] for r in rs) for m, rs in results.items()}
    per_cpu = {m: statistics.median(r["tok_cpu_s"] for r in rs) for m, rs in results.items()}
    print(f"\n{'mode':12s} {'tokens/s':>10s} {'tokens/CPU-s':>13s} {'p50 request s':>14s} "
          f"{'slowest s':>10s}")
    for m, rs in results.items():
        print(f"{m:12s} {med[m]:10.1f} {per_cpu[m]:13.1f} "
              f"{statistics.median(r['p50'] for r in rs):14.2f} "
              f"{statistics.median(r['max'] for r in rs):10.2f}")
    print(f"\nconcurrent / sequential tokens/s = {med['concurrent'] / med['sequential']:.2f}x "
          "(aim >= 4x)")
    print(f"concurrent / sequential tokens per server CPU-second = "
          f"{per_cpu['concurrent'] / per_cpu['sequential']:.2f}x (less sensitive to other load)")
    exact = events == answered and units == client_units
    print(f"metering: {events} usage events for {answered} completions answered, "
          f"{units} units in the ledger vs {client_units} usage.total_tokens received: "
          f"{'exact' if exact else 'MISMATCH'}")
    print(f"load average at end: {Path('/proc/loadavg').read_text().split()[:3]}")
    if not exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
