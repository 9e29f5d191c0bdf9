"""What exactly-once metering costs: the same server with metering off and on, same run.

Serves the seed MLP with ``shoestring serve`` three ways:

* metering off: ``--no-auth`` (no keys, no ledger);
* metering on: API key, shared rate limit and quota leases, every request's
  usage event synced to the usage log (``--durable``: fdatasync per group
  commit) before its 200, and copied into the SQLite ledger in the background;
* metering on, ``--no-durable``: the log is not synced (survives a server
  crash, not a power cut).

Reports requests/s at p99 <= target and at saturation, the server's CPU time
per request, and the cost of metering as the throughput lost and as the extra
CPU per request. One independent client (bench/serve_client.py), servers and
client pinned apart, variants interleaved; ends with a ledger check.

Usage: python bench/serve_metering.py [--quick] [--inputs 784] [--seconds 4] [--rounds 3]
       [--rate 2000] [--metered-flags '--inline-batch-ms 0']
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_harness import (
    Proc,
    Variant,
    body_for,
    capacity,
    cpu_set,
    load_average,
    measure,
    median_of,
    saturation,
    seed_mlp_run,
    shoestring_cmd,
    sweep,
)

PATH = "/v2/models/digits/infer"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="per level and variant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 round of 2 s per level")
    p.add_argument("--target-ms", type=float, default=50.0)
    p.add_argument("--levels", default="16,64")
    p.add_argument("--rate", type=float, default=None,
                   help="also offer this many requests/s (paced, at the top level) to every "
                   "variant and compare CPU per request doing the same work per second "
                   "(pick one all variants sustain, e.g. half the metered saturation)")
    p.add_argument("--inputs", type=int, default=784, choices=[64, 784])
    p.add_argument("--hidden", default="128,64",
                   help="hidden widths (128,64: the seed MLP; wider: a costlier model)")
    p.add_argument("--metered-flags", default="",
                   help="extra 'shoestring serve' flags for the metered servers, e.g. "
                   "'--inline-batch-ms 0' (batches and their usage writes on the inference "
                   "thread)")
    ncpu = os.cpu_count() or 1
    p.add_argument("--server-cpus", default="0" if ncpu >= 2 else None)
    p.add_argument("--client-cpus", default=f"1-{ncpu - 1}" if ncpu >= 2 else None)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    levels = [int(x) for x in args.levels.split(",")]
    server_cpus, client_cpus = cpu_set(args.server_cpus), cpu_set(args.client_cpus)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hidden = tuple(int(h) for h in args.hidden.split(","))
        run = seed_mlp_run(root, args.inputs, hidden)
        body_file = root / "body.json"
        body_file.write_bytes(body_for(args.inputs))
        db = f"sqlite:///{root / 'ledger.db'}"
        from shoestring.ledger.db import open_ledger
        from shoestring.serve.keys import KeyStore
        from shoestring.serve.plans import load_plans

        plans = root / "plans.toml"
        plans.write_text("[bench]\nrequests_per_second = 1e9\nburst = 1000000000\n"
                         "monthly_quota_units = 1000000000\nprice_per_1000_units_usd = 0.5\n")
        secret, _ = KeyStore(open_ledger(db), load_plans(plans)).create(project="bench",
                                                                       plan="bench")
        auth = (f"Authorization: Bearer {secret}",)
        serve = ["--db", db, "serve", str(run), "--port", "0", "--plans", str(plans)]
        extra = args.metered_flags.split()
        variants = [
            Variant("metering off", Proc(shoestring_cmd(*serve, "--no-auth"), server_cpus)),
            Variant("metering on (durable)", Proc(shoestring_cmd(
                *serve, *extra, "--usage-log", str(root / "log-durable")), server_cpus), auth),
            Variant("metering on (--no-durable)", Proc(shoestring_cmd(
                *serve, *extra, "--no-durable", "--usage-log", str(root / "log-fast")),
                server_cpus), auth),
        ]
        try:
            print(f"MLP {args.inputs}->{'->'.join(map(str, hidden))}->10; levels {levels}, "
                  f"{args.seconds:g} s each, {args.rounds} rounds; servers on CPUs "
                  f"{args.server_cpus}, client on {args.client_cpus}; load average "
                  f"{load_before}")
            sweep(variants, levels, args.seconds, args.rounds, PATH, body_file, client_cpus)
            paced: dict[str, list[dict]] = {v.name: [] for v in variants}
            for r in range(args.rounds if args.rate else 0):
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    m = measure(v, max(levels), args.seconds, PATH, body_file, client_cpus,
                                rate=args.rate)
                    paced[v.name].append(m)
                    print(f"  round {r + 1} {args.rate:g} req/s offered  {v.name:<28} "
                          f"{m['ok_per_s']:8.0f} ok/s  p99 {m['p99_ms']:6.2f} ms  server "
                          f"{m['server_cpu_us']:5.0f} µs CPU/req  busy {100 * m['server_busy']:3.0f}%")
        finally:
            codes = [v.proc.stop() for v in variants]
        from sqlalchemy import func, select

        from shoestring.serve.tables import UsageEventRow
        with open_ledger(db).connect() as c:
            events = c.scalar(select(func.count()).select_from(UsageEventRow))
    ok_metered = sum(v.ok_total for v in variants[1:])
    off = variants[0]
    off_cap, _ = capacity(off, args.target_ms)
    top = max(levels)
    print(f"\nmedians of rounds (load average before {load_before}, after {load_average()}); "
          f"requests/s at p99 <= {args.target_ms:g} ms | at saturation | server CPU per "
          f"request at c={top}:")
    for v in variants:
        cap, at = capacity(v, args.target_ms)
        sat, cpu = saturation(v), median_of(v, top, "server_cpu_us")
        line = f"  {v.name:<28} {cap:8.0f} (c={at}) | {sat:8.0f} | {cpu:6.0f} µs"
        if v is not off:
            lost = f"{100 * (1 - cap / off_cap):5.1f}%" if off_cap else "  n/a"
            line += (f"   metering cost: {lost} | "
                     f"{100 * (1 - sat / saturation(off)):5.1f}% | "
                     f"{100 * (cpu / median_of(off, top, 'server_cpu_us') - 1):+5.1f}% CPU")
        print(line)
    # Where the CPU goes, per thread (median over rounds at the top level): the event loop
    # ('main'), the usage-log writer ('ss-ledger'), the reconciler ('ss-reconcile'), the
    # database threads ('ss-db'), the inference thread ('ss-infer'), anything else.
    names = sorted({k for v in variants for r in v.runs[top] for k in r["thread_cpu_us"]})
    # Then the event loop's context switches per request (voluntary: it slept and was woken,
    # e.g. by another thread; involuntary: preempted) and the rows per batch.
    print(f"\nserver CPU per request by thread at c={top} (µs, median of rounds); event-loop "
          "context switches per request (voluntary, involuntary); rows per batch:")
    print(f"  {'':<28} " + " ".join(f"{n[:12]:>12}" for n in names)
          + f" {'loop vol':>9} {'invol':>6} {'rows/b':>7}")
    for v in variants:
        runs = v.runs[top]
        cells = [statistics.median(r["thread_cpu_us"].get(n, 0.0) for r in runs)
                 for n in names]
        print(f"  {v.name:<28} " + " ".join(f"{c:12.1f}" for c in cells)
              + f" {statistics.median(r['loop_vol_switches'] for r in runs):9.2f}"
              f" {statistics.median(r['loop_invol_switches'] for r in runs):6.2f}"
              f" {statistics.median(r['rows_per_batch'] for r in runs):7.1f}")
    if args.rate:
        # The same work per second for every variant: the CPU per request no longer depends
        # on how much throughput each one got from a busy machine.
        print(f"\nat {args.rate:g} requests/s offered (c={top}): server CPU per request "
              "by thread, µs (median of rounds):")
        print(f"  {'':<28} {'ok/s':>8} {'total':>8} " + " ".join(f"{n[:12]:>12}"
                                                            for n in names)
              + f" {'loop vol':>9} {'invol':>6} {'rows/b':>7}")
        base = statistics.median(m["server_cpu_us"] for m in paced[off.name])
        for v in variants:
            ms = paced[v.name]
            tot = statistics.median(m["server_cpu_us"] for m in ms)
            cells = [statistics.median(m["thread_cpu_us"].get(n, 0.0) for m in ms)
                     for n in names]
            print(f"  {v.name:<28} {statistics.median(m['ok_per_s'] for m in ms):8.0f} "
                  f"{tot:8.1f} " + " ".join(f"{c:12.1f}" for c in cells)
                  + f" {statistics.median(m['loop_vol_switches'] for m in ms):9.2f}"
                  f" {statistics.median(m['loop_invol_switches'] for m in ms):6.2f}"
                  f" {statistics.median(m['rows_per_batch'] for m in ms):7.1f}"
                  + ("" if v is off else f"   metering: {100 * (tot / base - 1):+5.1f}% CPU"))
    print(f"\nledger check: {events} usage events recorded, {ok_metered} metered 200s "
          f"answered: {'equal' if events == ok_metered else 'DIFFERENT'}; exit codes {codes}")


if __name__ == "__main__":
    main()
