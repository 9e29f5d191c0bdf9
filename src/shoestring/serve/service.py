"""The inference service behind the HTTP routes: models, batching, keys, metering.

:meth:`Service.infer` is the whole life of a request, in order:
draining? → key (401) → model (404) → plan (403) → body limits and protocol
(4xx) → Idempotency-Key replay → rate limit and quota (429) → admission (503)
→ batch → usage event committed (or 429 if the commit finds the quota spent)
→ 200. Nothing here knows about HTTP frameworks: it takes bytes and headers
and returns a :class:`Reply`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import torch

from shoestring.errors import ShoestringError
from shoestring.serve.answers import BatchAnswers, Reply, Ticket, quota_error, stored_reply
from shoestring.serve.auth import Authenticator, Principal
from shoestring.serve.batching import Batcher, Shed
from shoestring.serve.config import ServeConfig
from shoestring.ledger.db import open_ledger
from shoestring.serve.keys import KeyStore
from shoestring.serve.ledger_writer import LedgerWriter
from shoestring.serve.metering import Meter, period_of
from shoestring.serve.metrics import ServerMetrics
from shoestring.serve.model_store import ModelSpec, ModelStore, ServedModel
from shoestring.serve.plans import load_plans
from shoestring.serve.protocol import Limits, ProtocolError, error_body, parse_infer
from shoestring.serve.ratelimit import RateLimiter, retry_after_header

MAX_IDEMPOTENCY_KEY = 200


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Service:
    """One server process's state. Build it, ``await start()``, serve, ``await stop()``."""

    def __init__(self, config: ServeConfig, *, clock: Callable[[], float] = time.perf_counter,
                 now: Callable[[], datetime] = _utc_now,
                 store: ModelStore | None = None) -> None:
        self.config, self.clock, self.now = config, clock, now
        self.store = store or ModelStore([ModelSpec(m.run_dir, m.name, m.version)
                                          for m in config.models],
                                         max_new_tokens=config.max_new_tokens)
        self.metrics = ServerMetrics()
        self.limits = Limits(config.max_rows_per_request, 1_000_000, config.max_text_bytes)
        self.plans = load_plans(config.plans) if config.auth else {}
        self.inference = ThreadPoolExecutor(1, thread_name_prefix="shoestring-infer")
        self.db_executor = ThreadPoolExecutor(4, thread_name_prefix="shoestring-db")
        self.engine = open_ledger(config.db, durable=config.durable) if config.auth else None
        self.keys = KeyStore(self.engine, self.plans, now) if self.engine else None
        self.meter = Meter(self.engine) if self.engine else None
        self.writer = LedgerWriter(self.meter) if self.meter else None
        self.auth = Authenticator(self.keys, self.plans, self.db_executor,
                                  config.key_cache_seconds, clock) if self.keys else None
        self.limiter = RateLimiter(clock)
        self._key_used: dict[tuple[str, str], int] = {}  # lower bounds, for early 429s
        self.batchers = {(m.name, m.version): self._batcher(m) for m in self.store.all()}
        self.inflight = 0
        self.ready = False
        self.draining = False

    def _batcher(self, m: ServedModel) -> Batcher:
        c = self.config

        def on_batch(rows: int, seconds: float) -> None:
            self.metrics.batch_size.labels(m.name).observe(rows)
            self.metrics.batch_seconds.labels(m.name).observe(seconds)

        return Batcher(m.predict, self.inference, max_batch=c.max_batch_size,
                       max_delay_s=c.max_delay_ms / 1000, adaptive=c.adaptive,
                       target_s=c.latency_target_ms / 1000, max_queue_rows=c.max_queue_rows,
                       clock=self.clock, on_batch=on_batch,
                       finish=BatchAnswers(m, self.writer, self.metrics, self.now, self.clock,
                                           self._key_used))

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm every batch size of every model, then start batching and metering."""
        # torch's thread count is process-wide: set it for serving, restore it in stop()
        # so an in-process server (the quickstart) leaves the process as it found it.
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        for m in self.store.all():
            b = self.batchers[(m.name, m.version)]
            example = lambda n, m=m: m.prepare(m.example_input(n))  # noqa: E731
            if m.generates:  # a generated text costs seconds: one size, once
                b.warm_up(example, repeats=1, sizes=[1])
            else:
                b.warm_up(example)
        if self.writer is not None:
            self.writer.start()
        for b in self.batchers.values():
            b.start()
        # Move everything loaded so far (torch, models, libraries: millions of objects) out
        # of the collector's reach: full collections then scan only new objects, which
        # removes 100+ ms pauses from the latency tail (Python docs, gc.freeze).
        gc.collect()
        gc.freeze()
        self.ready = True

    async def stop(self) -> None:
        """Finish queued batches, commit queued usage, release the database."""
        self.ready = False
        for b in self.batchers.values():
            await b.stop()
        self.inference.shutdown(wait=True)
        if self.writer is not None:
            self.writer.close()
        self.db_executor.shutdown(wait=True)
        if self.meter is not None:
            self.meter.close()
        if self.engine is not None:
            self.engine.dispose()
        if getattr(self, "_torch_threads", None):
            torch.set_num_threads(self._torch_threads)

    def begin_drain(self) -> None:
        """SIGTERM: report not-ready and refuse new inference; in-flight requests finish."""
        self.draining = True
        self.ready = False
        self.metrics.draining.set(1)

    # -- inference --------------------------------------------------------------------------

    async def infer(self, name: str, version: str | None, headers: Mapping[str, str],
                    body: bytes) -> Reply:
        t0 = self.clock()
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            reply = await self._infer(name, version, headers, body, t0)
        except ProtocolError as exc:
            reply = Reply(exc.status, error_body(exc.message), exc.headers)
        except Shed as exc:
            self.metrics.shed.labels(name, exc.reason).inc()
            reply = Reply(503, json.dumps({"error": exc.message, "reason": exc.reason}).encode(),
                          {"Retry-After": retry_after_header(exc.retry_after_s)})
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()
        self.metrics.observe(name if self.store.get(name) is not None else "_unknown",
                             reply.status, self.clock() - t0)
        return reply

    async def _infer(self, name: str, version: str | None, headers: Mapping[str, str],
                     body: bytes, t0: float) -> Reply:
        if self.draining:
            raise ProtocolError(503, "the server is shutting down; retry on another replica",
                                {"Retry-After": "1"})
        who = await self.auth.authenticate(headers.get("authorization")) if self.auth else None
        model = self.store.get(name, version)
        if model is None:
            raise ProtocolError(404, self._unknown_model(name, version))
        if who is not None and not who.plan.allows(model.name):
            raise ProtocolError(403, f"plan {who.plan.name!r} does not include model "
                                f"{model.name!r}")
        if len(body) > self.config.max_body_bytes:
            raise ProtocolError(413, f"request body of {len(body)} bytes exceeds the limit of "
                                f"{self.config.max_body_bytes}")
        req = parse_infer(body, model.input, model.output_names, self.limits)
        try:
            x = model.prepare(req.x)
        except ShoestringError as exc:  # e.g. a character the run's tokenizer never saw
            raise ProtocolError(400, f"input '{model.input.name}': {exc.message}") from None
        idem, digest = None, None
        if who is not None:
            idem = self._idempotency_key(headers)
            if idem is not None:
                digest = hashlib.sha256(f"{name}\n{version or ''}\n".encode() + body).hexdigest()
                replay = await self._replay(who, idem, digest)
                if replay is not None:
                    return replay
            self._check_limits(who, req.rows)
        batcher = self.batchers[(model.name, model.version)]
        batcher.admit(req.rows)
        ticket = Ticket(rows=req.rows, started=t0, request_id=req.id, outputs=req.outputs,
                        who=who, event_id=os.urandom(16).hex() if who is not None else None,
                        idempotency_key=idem, request_sha256=digest)
        return await batcher.submit(x, req.rows, ticket)

    def _unknown_model(self, name: str, version: str | None) -> str:
        if version is not None and self.store.get(name) is not None:
            return (f"model {name!r} has no version {version!r}; versions: "
                    f"{', '.join(self.store.versions(name))}")
        return f"unknown model {name!r}; served: {', '.join(self.store.names())}"

    @staticmethod
    def _idempotency_key(headers: Mapping[str, str]) -> str | None:
        idem = headers.get("idempotency-key")
        if idem is None:
            return None
        if not 0 < len(idem) <= MAX_IDEMPOTENCY_KEY or not idem.isprintable():
            raise ProtocolError(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} "
                                "printable characters")
        return idem

    async def _replay(self, who: Principal, idem: str, digest: str) -> Reply | None:
        stored = await asyncio.get_running_loop().run_in_executor(
            self.db_executor, self.meter.lookup, who.key.id, idem)
        return None if stored is None else stored_reply(stored, digest)

    def _check_limits(self, who: Principal, rows: int) -> None:
        wait = self.limiter.take(who.key.id, who.plan.requests_per_second, who.plan.burst)
        if wait > 0:
            raise ProtocolError(429, f"rate limit of plan {who.plan.name!r} "
                                f"({who.plan.requests_per_second:g} requests/s) exceeded",
                                {"Retry-After": retry_after_header(wait)})
        quota = who.quota
        now = self.now()
        if quota is not None and self._key_used.get((who.key.id, period_of(now)), 0) + rows \
                > quota:
            raise quota_error(who, quota, now)

    # -- metadata ---------------------------------------------------------------------------

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.store.get(name, version)
        if model is None:
            raise ProtocolError(404, self._unknown_model(name, version))
        return model.metadata(self.store.versions(name))
