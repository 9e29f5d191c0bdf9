"""A small closed-loop HTTP/1.1 load generator for benchmarks and load tests.

Each of ``concurrency`` workers keeps one keep-alive connection and sends its
next request as soon as the previous answer arrives. It speaks just enough
HTTP/1.1 (RFC 9112: Content-Length and chunked bodies) to stay cheap on the
CPU, so that on a small machine the server, not the client, is measured.
Targets are whatever host is given; tests and benchmarks use 127.0.0.1 only
and stop after a bounded number of requests or seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CONNECTION_ERRORS = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                     OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "POST"


@dataclass
class Result:
    index: int
    status: int                  # 0: the connection failed before an answer
    latency_s: float
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.open()
        head = [f"{req.method} {req.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(req.body)}"]
        if req.body:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in req.headers]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + req.body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


async def run_closed_loop(host: str, port: int, make: Callable[[int], Request] | Sequence[Request],
                          concurrency: int, *, total: int | None = None,
                          duration_s: float | None = None, keep_bodies: bool = False,
                          timeout_s: float = 30.0) -> list[Result]:
    """Send requests ``make(i)`` for i = 0, 1, … from ``concurrency`` workers.

    Stops after ``total`` requests or ``duration_s`` seconds, whichever comes
    first (at least one must be given; a sequence of requests gives ``total``).
    A failed connection is recorded as status 0 and reopened for the worker's
    next request.
    """
    if not callable(make):
        seq = make
        total = len(seq) if total is None else min(total, len(seq))
        make = seq.__getitem__
    if total is None and duration_s is None:
        raise ValueError("give total or duration_s")
    results: list[Result] = []
    counter = iter(range(total if total is not None else 1 << 62))
    deadline = None if duration_s is None else time.perf_counter() + duration_s

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            for i in counter:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                req = make(i)
                t0 = time.perf_counter()
                try:
                    status, headers, body = await asyncio.wait_for(conn.send(req), timeout_s)
                except CONNECTION_ERRORS as exc:
                    conn.close()
                    results.append(Result(i, 0, time.perf_counter() - t0,
                                          error=type(exc).__name__))
                    continue
                results.append(Result(i, status, time.perf_counter() - t0,
                                      body if keep_bodies else b"", headers))
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method (Hyndman & Fan 1996, def. 1)."""
    if not values:
        return float("nan")
    s = sorted(values)
    rank = max(1, min(len(s), int(-(-q * len(s) // 1))))
    return s[rank - 1]


def summarize(results: Sequence[Result], seconds: float) -> dict:
    """Throughput of 200s and latency percentiles (ms) of all answered requests."""
    ok = [r for r in results if r.status == 200]
    lat = [r.latency_s for r in results if r.status != 0]
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return {"requests": len(results), "ok": len(ok), "seconds": seconds,
            "ok_per_s": len(ok) / seconds if seconds > 0 else 0.0,
            "p50_ms": percentile(lat, 0.50) * 1000, "p90_ms": percentile(lat, 0.90) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000, "statuses": statuses}
