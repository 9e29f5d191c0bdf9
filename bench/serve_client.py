"""An independent closed-loop HTTP client for the serving benchmarks: aiohttp, keep-alive.

``concurrency`` workers each keep one connection of an ``aiohttp.ClientSession``
and send the next request as soon as the previous answer is read, for
``seconds`` after a warm-up; with ``--rate R`` each worker instead waits for its next
slot (the workers together offer R requests/s, never more than ``concurrency`` in
flight), so servers can be compared doing the same work per second. Prints one JSON line: requests, 200s, statuses,
wall seconds, and the latencies' percentiles. Run it pinned to CPUs other
than the server's (bench/serve_harness.py does).

Usage: python bench/serve_client.py URL BODY_FILE --concurrency 16 --seconds 3
           [--header 'Authorization: Bearer …']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import aiohttp
import yarl


async def run(url: str, body: bytes, headers: dict[str, str], concurrency: int,
              seconds: float, warmup: float, rate: float | None = None) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    ok_all = [0]  # 200s including the warm-up's (for the ledger check)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    # What a load generator configures: no cookie jar, no decompression, the URL parsed once.
    target = yarl.URL(url)
    cpu = [0.0]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop = measure_from + seconds

        async def client_cpu() -> None:  # this process's CPU over the measured window
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            c0 = time.process_time()
            await asyncio.sleep(max(0.0, stop - time.perf_counter()))
            cpu[0] = time.process_time() - c0

        async def worker(w: int) -> None:
            step = concurrency / rate if rate else 0.0
            slot = start + w / rate if rate else 0.0
            while True:
                if rate:  # paced: this worker's next slot (at once if it is late)
                    wait = slot - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    slot += step
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                try:
                    async with session.post(target, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except aiohttp.ClientError:
                    status = 0
                t1 = time.perf_counter()
                ok_all[0] += status == 200
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    statuses[status] += 1

        await asyncio.gather(client_cpu(), *(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - measure_from
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 \
            if latencies else float("nan")

    return {"requests": len(latencies), "ok": statuses.get(200, 0), "ok_all": ok_all[0],
            "statuses": {str(k): v for k, v in statuses.items()}, "wall_s": wall,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "mean_ms": 1000 * sum(latencies) / len(latencies) if latencies else float("nan"),
            "client_cpu_s": cpu[0],
            "latencies_ms": [round(x * 1000, 3) for x in latencies]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("body_file")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--rate", type=float, default=None,
                   help="offered requests/s in total (default: closed loop, as fast as answered)")
    args = p.parse_args()
    headers = {"Content-Type": "application/json"}
    for h in args.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    with open(args.body_file, "rb") as f:
        body = f.read()
    try:
        import uvloop  # the same loop as the servers'

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(run(args.url, body, headers, args.concurrency, args.seconds,
                                args.warmup, args.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
