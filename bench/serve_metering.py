"""What exactly-once metering costs: the same server with metering off and on, same run.

Serves the seed MLP with ``shoestring serve`` three ways:

* metering off: ``--no-auth`` (no keys, no ledger);
* metering on: API key, rate limit, quota check and every request's usage event
  committed to the SQLite ledger before its 200 (``--durable``: fsync each commit);
* metering on, ``--no-durable``: commits survive a server crash, not a power cut.

Reports requests/s at p99 <= target and at saturation, and the cost of metering
as the throughput lost. One load generator, one run, variants interleaved.

Usage: python bench/serve_metering.py [--inputs 784] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_harness import (  # noqa: E402
    Proc, Variant, body_for, capacity, seed_mlp_run, shoestring_cmd, sweep)

PATH = "/v2/models/digits/infer"


def saturation(v: Variant) -> float:
    return max(statistics.median(r["ok_per_s"] for r in runs) for runs in v.runs.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per level and variant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--target-ms", type=float, default=50.0)
    p.add_argument("--levels", default="8,16,32,64,128")
    p.add_argument("--inputs", type=int, default=784, choices=[64, 784])
    p.add_argument("--hidden", default="128,64",
                   help="hidden widths (128,64: the seed MLP; wider: a costlier model)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction,
                   default=(os.cpu_count() or 1) >= 2)
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    server_cpus, load_cpus = ({0}, {1}) if args.pin else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hidden = tuple(int(h) for h in args.hidden.split(","))
        run = seed_mlp_run(root, args.inputs, hidden)
        db = f"sqlite:///{root / 'ledger.db'}"
        from shoestring.ledger.db import open_ledger
        from shoestring.serve.keys import KeyStore
        from shoestring.serve.plans import load_plans

        plans = root / "plans.toml"
        plans.write_text("[bench]\nrequests_per_second = 1e9\nburst = 1000000000\n"
                         "price_per_1000_units_usd = 0.5\n")
        secret, _ = KeyStore(open_ledger(db), load_plans(plans)).create(
            project="bench", plan="bench")
        auth = (("Authorization", f"Bearer {secret}"),)
        serve = ["--db", db, "serve", str(run), "--port", "0", "--plans", str(plans)]
        variants = [
            Variant("metering off", Proc(shoestring_cmd(*serve, "--no-auth"), server_cpus)),
            Variant("metering on (durable)", Proc(shoestring_cmd(*serve), server_cpus), auth),
            Variant("metering on (--no-durable)",
                    Proc(shoestring_cmd(*serve, "--no-durable"), server_cpus), auth),
        ]
        try:
            print(f"MLP {args.inputs}->{'->'.join(map(str, hidden))}->10, levels {levels}, "
                  f"{args.seconds:g} s "
                  f"each, {args.rounds} rounds, pinned={args.pin}")
            sweep(variants, levels, args.seconds, args.rounds, PATH, body_for(args.inputs),
                  load_cpus)
            from sqlalchemy import func, select

            from shoestring.serve.tables import UsageEventRow
            with open_ledger(db).connect() as c:
                events = c.scalar(select(func.count()).select_from(UsageEventRow))
        finally:
            for v in variants:
                v.proc.stop()
    ok_metered = sum(v.ok_total for v in variants[1:])
    print(f"\nledger check: {events} usage events recorded, {ok_metered} metered 200s "
          f"answered: {'equal' if events == ok_metered else 'DIFFERENT'}")
    off_cap, _ = capacity(variants[0], args.target_ms)
    off_sat = saturation(variants[0])
    print(f"requests/s (median of rounds): at p99 <= {args.target_ms:g} ms | at saturation")
    for v in variants:
        cap, at = capacity(v, args.target_ms)
        sat = saturation(v)
        print(f"  {v.name:<28} {cap:8.0f} (c={at}) | {sat:8.0f}   metering cost: "
              f"{100 * (1 - cap / off_cap):5.1f}% | {100 * (1 - sat / off_sat):5.1f}%"
              if v is not variants[0] else
              f"  {v.name:<28} {cap:8.0f} (c={at}) | {sat:8.0f}")


if __name__ == "__main__":
    main()
