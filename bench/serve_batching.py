"""Requests/s at p99 <= 50 ms: the Shoestring server vs a plain FastAPI endpoint.

Serves the seed MLP (784 → 128 → 64 → 10, the seed example's shape; or with
--inputs 64, trained on the bundled digits data) from one run folder with:

* ``shoestring serve`` (dynamic batching), metering off (``--no-auth``), and
  metering on (API key, quota check, exactly-once usage ledger on SQLite);
* a plain FastAPI endpoint (bench/serve_plain_app.py) doing one forward per
  request, with an ``async`` handler (inline) and a ``def`` handler (thread pool).

One load generator (shoestring.serve.loadgen), one run, levels interleaved.
With --pin the servers share CPU 0 and the load generator gets CPU 1.

Usage: python bench/serve_batching.py [--inputs 784] [--seconds 3] [--rounds 2] [--target-ms 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_harness import (  # noqa: E402
    Proc, Variant, body_for, capacity, seed_mlp_run, shoestring_cmd, sweep)

PATH = "/v2/models/digits/infer"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per level and variant")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--target-ms", type=float, default=50.0)
    p.add_argument("--levels", default="1,4,8,16,32,64,128")
    p.add_argument("--inputs", type=int, default=784, choices=[64, 784],
                   help="784: the seed example's shape; 64: trained on the bundled digits")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction,
                   default=(os.cpu_count() or 1) >= 2)
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    server_cpus, load_cpus = ({0}, {1}) if args.pin else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = seed_mlp_run(root, args.inputs)
        db = f"sqlite:///{root / 'ledger.db'}"
        from shoestring.ledger.db import open_ledger
        from shoestring.serve.keys import KeyStore
        from shoestring.serve.plans import load_plans

        plans = root / "plans.toml"
        plans.write_text("[bench]\nrequests_per_second = 1e9\nburst = 1000000000\n"
                         "price_per_1000_units_usd = 0.5\n")
        secret, _ = KeyStore(open_ledger(db), load_plans(plans)).create(
            project="bench", plan="bench")
        serve = ["--db", db, "serve", str(run), "--port", "0", "--plans", str(plans)]
        variants = [
            Variant("shoestring, metering off", Proc(shoestring_cmd(*serve, "--no-auth"),
                                                     server_cpus)),
            Variant("shoestring, metering on", Proc(shoestring_cmd(*serve), server_cpus),
                    (("Authorization", f"Bearer {secret}"),)),
            Variant("plain FastAPI (async)", Proc([sys.executable, str(Path(__file__).parent /
                                                   "serve_plain_app.py"), str(run)],
                                                  server_cpus)),
            Variant("plain FastAPI (def)", Proc([sys.executable, str(Path(__file__).parent /
                                                 "serve_plain_app.py"), str(run), "--sync"],
                                                server_cpus)),
        ]
        try:
            print(f"seed MLP {args.inputs}->128->64->10, closed-loop levels {levels}, "
                  f"{args.seconds:g} s each, {args.rounds} rounds, pinned={args.pin}")
            sweep(variants, levels, args.seconds, args.rounds, PATH, body_for(args.inputs),
                  load_cpus)
        finally:
            for v in variants:
                v.proc.stop()
    print(f"\nrequests/s with p99 <= {args.target_ms:g} ms (median of rounds):")
    caps = {}
    for v in variants:
        caps[v.name], at = capacity(v, args.target_ms)
        print(f"  {v.name:<28} {caps[v.name]:8.0f}  (at concurrency {at})")
    plain = max(caps["plain FastAPI (async)"], caps["plain FastAPI (def)"])
    for name in ("shoestring, metering off", "shoestring, metering on"):
        ratio = caps[name] / plain if plain else float("inf")
        print(f"  {name} / best plain endpoint: {ratio:.2f}x")


if __name__ == "__main__":
    main()
