"""Requests/s at p99 <= 50 ms: `shoestring serve` against a plain FastAPI app, as outsiders measure.

Serves the seed MLP (784 → 128 → 64 → 10, the seed example's shape; or with
--inputs 64, trained on the bundled digits data) from one run folder with:

* ``shoestring serve``, metering off (``--no-auth``);
* ``shoestring serve``, metering on (API key, rate limit, quota lease, every
  request's usage event synced to the usage log before its 200, SQLite ledger);
* a plain FastAPI endpoint (bench/serve_plain_app.py) doing one forward per
  request, with an ``async`` handler (inline) and a ``def`` handler (thread pool).

Every server runs under uvicorn with uvloop and httptools, pinned to the same
CPUs (``--server-cpus``, default 0); the load comes from an independent client
(bench/serve_client.py: aiohttp, keep-alive, closed loop) on the other CPUs.
Levels are interleaved and alternated; medians of rounds. Prints per level
ok/s, p50, p99 and the server's CPU time per request, then the capacity at
p99 <= target, the ratios the serving issue aims at, and a ledger check
(usage events recorded == metered 200s answered).

Usage: python bench/serve_batching.py [--quick] [--inputs 784] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import os
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
    p.add_argument("--levels", default="1,16,64")
    p.add_argument("--inputs", type=int, default=784, choices=[64, 784],
                   help="784: the seed example's shape; 64: trained on the bundled digits")
    ncpu = os.cpu_count() or 1
    p.add_argument("--server-cpus", default="0" if ncpu >= 2 else None,
                   help="CPUs of every server (default 0)")
    p.add_argument("--client-cpus", default=f"1-{ncpu - 1}" if ncpu >= 2 else None,
                   help="CPUs of the load generator, one client process each (default: "
                   "the rest)")
    p.add_argument("--no-plain-def", action="store_true", help="skip the def-handler app")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    levels = [int(x) for x in args.levels.split(",")]
    server_cpus, client_cpus = cpu_set(args.server_cpus), cpu_set(args.client_cpus)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = seed_mlp_run(root, args.inputs)
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
        serve = ["--db", db, "serve", str(run), "--port", "0", "--plans", str(plans)]
        plain = [sys.executable, str(Path(__file__).parent / "serve_plain_app.py"), str(run)]
        variants = [
            Variant("shoestring, metering off", Proc(shoestring_cmd(*serve, "--no-auth"),
                                                     server_cpus)),
            Variant("shoestring, metering on", Proc(shoestring_cmd(*serve), server_cpus),
                    (f"Authorization: Bearer {secret}",)),
            Variant("plain FastAPI (async)", Proc(plain, server_cpus)),
        ]
        if not args.no_plain_def:
            variants.append(Variant("plain FastAPI (def)", Proc([*plain, "--sync"],
                                                                server_cpus)))
        try:
            print(f"seed MLP {args.inputs}->128->64->10; levels {levels}, {args.seconds:g} s "
                  f"each, {args.rounds} rounds; servers on CPUs {args.server_cpus}, client "
                  f"on {args.client_cpus}; load average {load_before}")
            sweep(variants, levels, args.seconds, args.rounds, PATH, body_file, client_cpus)
        finally:
            codes = [v.proc.stop() for v in variants]  # SIGTERM: the metered one records all
        from sqlalchemy import func, select

        from shoestring.serve.tables import UsageEventRow
        with open_ledger(db).connect() as c:
            events = c.scalar(select(func.count()).select_from(UsageEventRow))
    report(variants, levels, args.target_ms, events, codes, load_before)


def report(variants: list[Variant], levels: list[int], target_ms: float, events: int,
           codes: list, load_before: str) -> None:
    print(f"\nmedians of rounds (load average before {load_before}, after {load_average()}):")
    print(f"  {'server':<28}" + "".join(f" | c={c:<3} ok/s   p50 ms   p99 ms  µs CPU/req"
                                         for c in levels))
    for v in variants:
        print(f"  {v.name:<28}" + "".join(
            f" | {median_of(v, c, 'ok_per_s'):9.0f} {median_of(v, c, 'p50_ms'):7.2f} "
            f"{median_of(v, c, 'p99_ms'):8.2f} {median_of(v, c, 'server_cpu_us'):9.0f}"
            for c in levels))
    caps = {v.name: capacity(v, target_ms) for v in variants}
    print(f"\nrequests/s with p99 <= {target_ms:g} ms (best level):")
    for v in variants:
        cap, at = caps[v.name]
        where = "" if at is None else (
            f"  (at concurrency {at}; busy: server {100 * median_of(v, at, 'server_busy'):.0f}%"
            f", client {100 * median_of(v, at, 'client_busy'):.0f}%)")
        print(f"  {v.name:<28} {cap:8.0f}{where}")
    by = {v.name: v for v in variants}
    off, on = by["shoestring, metering off"], by["shoestring, metering on"]
    plains = [v for v in variants if v.name.startswith("plain")]
    best_plain = max(plains, key=lambda v: caps[v.name][0])
    plain_cap = caps[best_plain.name][0]
    top = max(levels)
    print(f"\nratios (against the best plain app, {best_plain.name!r}):")
    for v in (off, on):
        cap, at = caps[v.name]
        cpu_ratio = (median_of(best_plain, top, "server_cpu_us")
                     / median_of(v, top, "server_cpu_us"))
        print(f"  {v.name}: {cap / plain_cap if plain_cap else math.nan:.2f}x requests/s at "
              f"p99 <= {target_ms:g} ms (aim >= 3x); server CPU per request at c={top}: "
              f"{cpu_ratio:.2f}x less")
        if at is not None and median_of(v, at, "client_busy") > 0.9:
            print(f"    (the load generator was {100 * median_of(v, at, 'client_busy'):.0f}% busy"
                  f" and the server {100 * median_of(v, at, 'server_busy'):.0f}%: the client, "
                  "not the server, set this throughput; the CPU ratio is what a server-bound "
                  "run would show)")
    if 1 in levels:
        base = min(plains, key=lambda v: median_of(v, 1, "p50_ms"))
        for v in (off, on):
            p50, p99 = median_of(v, 1, "p50_ms"), median_of(v, 1, "p99_ms")
            b50, b99 = median_of(base, 1, "p50_ms"), median_of(base, 1, "p99_ms")
            print(f"  concurrency 1, {v.name}: p50 {p50:.2f} ms vs {b50:.2f} ms = "
                  f"{p50 / b50:.2f}x (aim <= 1.3x), p99 {p99:.2f} vs {b99:.2f} ms "
                  f"(against {base.name!r}, the faster plain app at c=1)")
    on_cap, off_cap = caps[on.name][0], caps[off.name][0]
    cpu_off, cpu_on = median_of(off, top, "server_cpu_us"), median_of(on, top, "server_cpu_us")
    sat_off, sat_on = saturation(off), saturation(on)
    print(f"  metering cost: requests/s at p99 <= {target_ms:g} ms "
          f"{100 * (1 - on_cap / off_cap) if off_cap else math.nan:.1f}% ({on_cap:.0f} vs "
          f"{off_cap:.0f}), at saturation {100 * (1 - sat_on / sat_off):.1f}%; server CPU per "
          f"request {100 * (cpu_on / cpu_off - 1):+.1f}% ({cpu_on:.0f} vs {cpu_off:.0f} µs at "
          f"c={top}) (aim <= 10%)")
    print(f"\nledger check: {events} usage events recorded, {on.ok_total} metered 200s "
          f"answered: {'equal' if events == on.ok_total else 'DIFFERENT'}; exit codes {codes}")


if __name__ == "__main__":
    main()
