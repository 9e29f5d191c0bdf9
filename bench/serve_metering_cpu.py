"""Metering's own CPU cost per request, in process, per thread: no HTTP, no model.

Drives the real metering path of ``shoestring serve`` (serve/billing.py) the way a
batch of ``--batch`` requests goes through it: the key checked from the cache, the
request's units held (rate token, quota lease, budget lease), the batch charged
(the usage-log write, then the answers released on the event loop), and the
reconciler copying the log into a SQLite ledger. As in the server for a model cheap
enough to run on the event loop: with --no-durable a batch's records are written to
the log right there, before its answers are released; durable, the synced write goes
to the writer thread (group commit), which then releases the answers. It measures CPU time (not wall
time) of each thread per request, so the figure holds on a busy machine, where
the req/s benches swing: what metering adds to every request, to compare against
the ~130 µs a whole unmetered request costs the server (docs/serve.md).

Usage: python bench/serve_metering_cpu.py [--requests 40000] [--batch 16] [--no-durable]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_harness import load_average, thread_cpu_seconds


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process ('main' is the event loop)."""
    return thread_cpu_seconds(os.getpid())


async def drive(args, root: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from shoestring.ledger.db import open_ledger
    from shoestring.serve.allowances import Allowances
    from shoestring.serve.auth import Authenticator
    from shoestring.serve.billing import Billing
    from shoestring.serve.keys import KeyStore
    from shoestring.serve.ledger_sql import LedgerSql
    from shoestring.serve.ledger_writer import LedgerWriter
    from shoestring.serve.metering import Outcome
    from shoestring.serve.plans import load_plans
    from shoestring.serve.reconciler import Reconciler
    from shoestring.serve.threads import name_native_thread
    from shoestring.serve.usage import utc_now
    from shoestring.serve.usage_log import UsageLog

    plans_file = root / "plans.toml"
    plans_file.write_text("[bench]\nrequests_per_second = 1e9\nburst = 1000000000\n"
                          "monthly_quota_units = 1000000000\nprice_per_1000_units_usd = 0.5\n")
    plans = load_plans(plans_file)
    db = f"sqlite:///{root / 'ledger.db'}"
    engine = open_ledger(db, durable=args.durable)
    keys = KeyStore(engine, plans)
    secret, _ = keys.create(project="bench", plan="bench")
    keys.set_budget("bench", 1e6)
    executor = ThreadPoolExecutor(4, thread_name_prefix="ss-db", initializer=name_native_thread)
    loop = asyncio.get_running_loop()
    log = UsageLog(root / "log", durable=args.durable)
    sql = LedgerSql(engine, log.replica)
    allowances = Allowances(sql, executor)
    copy_engine = open_ledger(db, durable=False)
    reconciler = Reconciler(log, LedgerSql(copy_engine, log.replica))
    reconciler.recover()
    writer = LedgerWriter(log, sql)
    billing = Billing(Authenticator(keys, plans, executor, 2.0, time.perf_counter), executor,
                      clock=time.perf_counter, now=utc_now)
    billing.attach(sql, writer, allowances)
    writer.start(loop)
    reconciler.start()
    headers = {"authorization": f"Bearer {secret}"}
    await billing.authenticate(headers)
    body = b'{"model_name":"digits","outputs":[]}'

    async def batch(n: int) -> int:
        grants = []
        for _ in range(n):
            who = billing.authenticate_cached(headers) or await billing.authenticate(headers)
            g = billing.reserve_now(who, "digits", "1", 1, time.perf_counter())
            if g is None or not g.held:  # as Service does: await only what is not held
                g = await billing.reserve(who, "digits", "1", 1, partial=g)
            grants.append(g)
        # As the server does after a batch's forward pass on the event loop (serve/answers.py):
        # the records appended to the log right here in one write (--no-durable), or, when
        # that write would be synced, handed to the writer thread's group commit.
        if billing.charges_here():
            results, keyed = billing.charge_batch(grants, [1] * n, [body] * n)
            assert keyed is None  # no Idempotency-Key: nothing waits for the writer thread
        else:
            results = await billing.charge_many(grants, [1] * n, [body] * n)
        ok = 0
        for g, r in zip(grants, results):
            ok += billing.answer(g, 1, r, body).status == 200 and r.outcome is Outcome.charged
        return ok

    # Warm up (leases granted, caches filled), then measure.
    for _ in range(50):
        await batch(args.batch)
    inflight = max(1, args.inflight)
    before, t0 = thread_cpu(), time.perf_counter()
    done = 0
    while done < args.requests:
        oks = await asyncio.gather(*(batch(args.batch) for _ in range(inflight)))
        done += sum(oks)
    wall = time.perf_counter() - t0
    reconciler.flush()
    after = thread_cpu()
    writer.close()
    reconciler.close()
    log.close()
    executor.shutdown()
    per = {k: 1e6 * (v - before.get(k, 0.0)) / done for k, v in sorted(after.items())
           if v - before.get(k, 0.0) > 0}
    print(f"{done} metered requests in batches of {args.batch} ({inflight} started together), "
          f"{'durable' if args.durable else '--no-durable'}; {wall:.1f} s wall; load average "
          f"{load_average()}; " + (f"groups committed by the writer {writer.groups} "
                                   f"({done / writer.groups:.1f} requests per group)"
                                   if writer.groups else
                                   f"one log write per batch ({done // args.batch} writes)"))
    print("metering CPU per request, µs: " + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
          + f"; total {sum(per.values()):.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=40000)
    p.add_argument("--batch", type=int, default=16, help="requests per batch")
    p.add_argument("--inflight", type=int, default=4,
                   help="batches started together (each written to the log where it runs)")
    p.add_argument("--no-durable", dest="durable", action="store_false")
    p.add_argument("--quick", action="store_true", help="10,000 requests")
    args = p.parse_args()
    if args.quick:
        args.requests = 10000
    from shoestring.serve.threads import name_native_thread
    name_native_thread("main")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(drive(args, Path(tmp)))



if __name__ == "__main__":
    main()
