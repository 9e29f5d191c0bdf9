"""The inference service behind the HTTP routes: models, batching, keys, metering.

:meth:`Service.infer` is the whole life of a request, in order. Before the
body is read (:meth:`Service.admit`): draining? (503) → key (401) → model
(404) → plan (403). With the body (:meth:`Service.run`): body limits and
protocol (4xx) → Idempotency-Key replay → rate limit, quota and budget held
(429) → admission (503) → batch → usage recorded → 200. Keys, limits and
charges go through :mod:`shoestring.serve.billing`. Nothing here knows about
HTTP frameworks: it takes bytes and headers and returns a :class:`Reply`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from shoestring.errors import ShoestringError
from shoestring.ledger.db import open_ledger
from shoestring.serve.allowances import Allowances
from shoestring.serve.answers import BatchAnswers, Reply, Ticket
from shoestring.serve.auth import Authenticator, Principal
from shoestring.serve.batching import Batcher, Shed
from shoestring.serve.billing import Billing, idempotency_key, request_digest
from shoestring.serve.completions import Completions
from shoestring.serve.config import ServeConfig
from shoestring.serve.keys import KeyStore
from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.ledger_writer import LedgerWriter
from shoestring.serve.metrics import ServerMetrics
from shoestring.serve.model_store import ModelSpec, ModelStore, ServedModel
from shoestring.serve.plans import load_plans
from shoestring.serve.protocol import Limits, ProtocolError, error_body, parse_infer
from shoestring.serve.ratelimit import retry_after_header
from shoestring.serve.reconciler import Reconciler
from shoestring.serve.threads import name_native_thread
from shoestring.serve.usage_log import UsageLog, default_usage_log

_log = logging.getLogger("shoestring.serve")
_UTF8 = re.compile(r"charset=\"?utf-?8\"?\s*(;|$)", re.IGNORECASE)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class Admission:
    """A request that passed the checks made before its body is read."""

    model: ServedModel
    who: Principal | None
    started: float
    name: str               # as requested (the release-0.1 idempotency digest used them)
    version: str | None


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
        self.inference = ThreadPoolExecutor(1, thread_name_prefix="ss-infer",
                                            initializer=name_native_thread)
        self.db_executor = ThreadPoolExecutor(4, thread_name_prefix="ss-db",
                                              initializer=name_native_thread)
        self.engine = open_ledger(config.db, durable=config.durable) if config.auth else None
        self.keys = KeyStore(self.engine, self.plans, now) if self.engine else None
        self.usage_log: UsageLog | None = None  # opened by start(): one server per directory
        self.reconciler: Reconciler | None = None
        self.billing: Billing | None = None
        self.writer: LedgerWriter | None = None
        if self.engine is not None:
            self.billing = Billing(
                Authenticator(self.keys, self.plans, self.db_executor, config.key_cache_seconds,
                              clock), self.db_executor, clock=clock, now=now)
            self.billing.on_charged = self.metrics.charged
        self.batchers = {(m.name, m.version): self._batcher(m) for m in self.store.all()}
        self.completions = Completions(self)  # /v1: OpenAI-compatible, language models only
        self.inflight = 0
        self.ready = False
        self.draining = False

    def _batcher(self, m: ServedModel) -> Batcher:
        c = self.config

        def on_batch(rows: int, seconds: float) -> None:
            self.metrics.batch_size.labels(m.name).observe(rows)
            self.metrics.batch_seconds.labels(m.name).observe(seconds)

        # Metered and durable: a lone request runs inline and its synced usage write goes to
        # the writer thread (the fastest answer at concurrency 1: a synced write made by the
        # thread serving the sockets waits a timer tick on the VMs measured); a batch of two
        # rows or more runs on the inference thread, which writes its usage itself before
        # the one hand-off back, instead of the loop waking for the writer's group commit
        # (docs/serve.md, "Measured": 22% instead of 35% of req/s at c=64 under load).
        metered_durable = self.billing is not None and c.durable
        return Batcher(m.predict, self.inference, max_batch=c.max_batch_size,
                       max_delay_s=c.max_delay_ms / 1000, adaptive=c.adaptive,
                       target_s=c.latency_target_ms / 1000, max_queue_rows=c.max_queue_rows,
                       inline_s=0.0 if m.generates else c.inline_batch_ms / 1000,
                       inline_max_rows=1 if metered_durable else None,
                       clock=self.clock, on_batch=on_batch,
                       finish=BatchAnswers(m, self.billing))

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
        if self.billing is not None:
            self._open_metering()
        for b in self.batchers.values():
            b.start()
        self.completions.start()
        # Move everything loaded so far (torch, models, libraries: millions of objects) out
        # of the collector's reach: full collections then scan only new objects, which
        # removes 100+ ms pauses from the latency tail (Python docs, gc.freeze).
        gc.collect()
        gc.freeze()
        self.ready = True

    def _open_metering(self) -> None:
        """The usage log, what it holds beyond the ledger recorded, leases given back."""
        c = self.config
        self.usage_log = UsageLog(c.usage_log or default_usage_log(c.db), durable=c.durable)
        sql = LedgerSql(self.engine, self.usage_log.replica)
        loop = asyncio.get_running_loop()
        allowances = Allowances(sql, self.db_executor, ttl_s=c.lease_seconds)
        # The log is the durable record; the reconciler's copy need not sync SQLite itself
        # (a copy lost in a power cut is copied again from the log, checkpoint and all).
        self._copy_engine = open_ledger(c.db, durable=False)
        self.reconciler = Reconciler(
            self.usage_log, LedgerSql(self._copy_engine, self.usage_log.replica),
            ttl_s=c.lease_seconds,
            on_renewed=lambda until: loop.call_soon_threadsafe(allowances.renewed, until))
        self.reconciler.recover()
        self.writer = LedgerWriter(self.usage_log, sql)
        self.billing.attach(sql, self.writer, allowances)
        self.writer.start(loop)
        self.reconciler.start()

    def sync_ledger(self, timeout_s: float = 60.0) -> bool:
        """Wait until every answered request is in the SQL ledger (reports read it)."""
        return self.reconciler.flush(timeout_s) if self.reconciler is not None else True

    async def stop(self) -> None:
        """Finish queued batches, record queued usage, give leases back, release the
        database."""
        self.ready = False
        await self.completions.stop()  # before the ledger closes: streams cut are charged
        for b in self.batchers.values():
            await b.stop()
        self.inference.shutdown(wait=True)
        if self.writer is not None:
            self.writer.close()
        if self.reconciler is not None:
            try:
                self.reconciler.close()
            except Exception as exc:  # the ledger is away: the log keeps it for next time
                _log.error("usage not yet in the ledger stays in the usage log %s and is "
                           "recorded at the next start: %s", self.usage_log.directory, exc)
        if self.usage_log is not None:
            self.usage_log.close()
            self._copy_engine.dispose()
        self.db_executor.shutdown(wait=True)
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

    def admit(self, name: str, version: str | None, headers: Mapping[str, str],
              started: float) -> Admission | None:
        """The checks made before the body is read: draining (503), key (401), model (404),
        plan (403). None when the key is not cached: then await :meth:`admit_async`."""
        if self.draining:
            raise ProtocolError(503, "the server is shutting down; retry on another replica",
                                {"Retry-After": "1"})
        who = None
        if self.billing is not None:
            who = self.billing.authenticate_cached(headers)
            if who is None:
                return None
        return self._admitted(name, version, headers, who, started)

    async def admit_async(self, name: str, version: str | None, headers: Mapping[str, str],
                          started: float) -> Admission:
        adm = self.admit(name, version, headers, started)
        if adm is None:
            who = await self.billing.authenticate(headers)
            adm = self._admitted(name, version, headers, who, started)
        return adm

    def _admitted(self, name: str, version: str | None, headers: Mapping[str, str],
                  who: Principal | None, started: float) -> Admission:
        ctype = headers.get("content-type")
        if ctype is not None and "charset" in ctype.lower() and not _UTF8.search(ctype):
            raise ProtocolError(415, f"Content-Type {ctype!r}: request bodies must be JSON in "
                                "UTF-8")
        model = self.store.get(name, version)
        if model is None:
            raise ProtocolError(404, self._unknown_model(name, version))
        if who is not None and not who.plan.allows(model.name):
            raise ProtocolError(403, f"plan {who.plan.name!r} does not include model "
                                f"{model.name!r}")
        self.inflight += 1
        self.metrics.inflight.inc()
        return Admission(model, who, started, name, version)

    def refuse(self, name: str, exc: ProtocolError, started: float) -> Reply:
        """The reply to a request refused before it was admitted (counted in the metrics)."""
        reply = Reply(exc.status, error_body(exc.message), exc.headers)
        self.metrics.observe(name if self.store.get(name) is not None else "_unknown",
                             reply.status, self.clock() - started)
        return reply

    async def run(self, adm: Admission, headers: Mapping[str, str], body: bytes) -> Reply:
        """An admitted request with its body: the answer (never raises)."""
        try:
            reply = await self._run(adm, headers, body)
        except ProtocolError as exc:
            reply = Reply(exc.status, error_body(exc.message), exc.headers)
        except Shed as exc:
            self.metrics.shed.labels(adm.model.name, exc.reason).inc()
            reply = Reply(503, json.dumps({"error": exc.message, "reason": exc.reason}).encode(),
                          {"Retry-After": retry_after_header(exc.retry_after_s)})
        except Exception:  # a bug or a failing model: 500 as JSON, logged
            _log.exception("inference request failed")
            reply = Reply(500, error_body("internal server error"))
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()
        self.metrics.observe(adm.model.name, reply.status, self.clock() - adm.started)
        return reply

    def abandon(self, adm: Admission) -> None:
        """An admitted request whose body never came (the client went away or timed out)."""
        self.inflight -= 1
        self.metrics.inflight.dec()

    async def infer(self, name: str, version: str | None, headers: Mapping[str, str],
                    body: bytes) -> Reply:
        """The whole request at once (the ASGI routes and in-process callers)."""
        t0 = self.clock()
        try:
            adm = await self.admit_async(name, version, headers, t0)
        except ProtocolError as exc:
            return self.refuse(name, exc, t0)
        return await self.run(adm, headers, body)

    async def _run(self, adm: Admission, headers: Mapping[str, str], body: bytes) -> Reply:
        model = adm.model
        if len(body) > self.config.max_body_bytes:
            raise ProtocolError(413, f"request body of {len(body)} bytes exceeds the limit of "
                                f"{self.config.max_body_bytes}")
        req = parse_infer(body, model.input, model.output_names, self.limits)
        try:
            x = model.prepare(req.x)
        except ShoestringError as exc:  # e.g. a character the run's tokenizer never saw
            raise ProtocolError(400, f"input '{model.input.name}': {exc.message}") from None
        grant = None
        if adm.who is not None:
            idem = idempotency_key(headers)
            digest, legacy, grant = None, (), None
            if idem is not None:
                digest = request_digest(model.name, model.version, req.doc)
                legacy = (hashlib.sha256(f"{adm.name}\n{adm.version or ''}\n".encode()
                                         + body).hexdigest(),)
            else:  # the common case: held here already, no coroutine
                grant = self.billing.reserve_now(adm.who, model.name, model.version, req.rows,
                                                 adm.started)
            if grant is None or not grant.held:
                grant = await self.billing.reserve(
                    adm.who, model.name, model.version, req.rows, idempotency_key=idem,
                    request_digest=digest, legacy_digests=legacy, started=adm.started,
                    partial=grant)
                if grant.replay is not None:
                    return grant.replay
        batcher = self.batchers[(model.name, model.version)]
        try:
            batcher.admit(req.rows)
            return await batcher.submit_nowait(x, req.rows, Ticket(req.rows, req.id, req.outputs,
                                                                   grant))
        except BaseException:
            if grant is not None and not grant.settled:
                self.billing.release(grant)
            raise

    def _unknown_model(self, name: str, version: str | None) -> str:
        if version is not None and self.store.get(name) is not None:
            return (f"model {name!r} has no version {version!r}; versions: "
                    f"{', '.join(self.store.versions(name))}")
        return f"unknown model {name!r}; served: {', '.join(self.store.names())}"

    # -- metadata ---------------------------------------------------------------------------

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.store.get(name, version)
        if model is None:
            raise ProtocolError(404, self._unknown_model(name, version))
        return model.metadata(self.store.versions(name))
