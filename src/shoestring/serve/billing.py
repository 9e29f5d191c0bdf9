"""The metering interface: one door to keys, limits and the usage ledger for every route.

Every metered route (``/v2/…/infer`` here, ``/v1/completions`` elsewhere) does the
same four steps, and nothing else touches keys, quotas or the ledger::

    who = await billing.authenticate(headers)          # 401/403, before the body is read
    grant = await billing.reserve(who, model, version, units,
                                  idempotency_key=..., request_digest=...)
    if grant.replay is not None:                       # the Idempotency-Key was used before:
        return grant.replay                            # its stored answer, charged nothing
    try:
        body = ...run the model...                     # may use fewer units than reserved
    except BaseException:
        billing.release(grant)                         # nothing charged
        raise
    reply = await billing.charge(grant, used_units, body)  # recorded before it returns

* ``authenticate`` checks ``Authorization: Bearer KEY`` (cached for
  ``--key-cache-seconds``) and returns the key, its plan and project budget, or
  None when metering is off (``--no-auth``).
* ``reserve`` checks the plan allows the model, takes a rate-limit token and
  holds ``units`` of the key's monthly quota and their cost of the project's
  budget (429 with ``Retry-After`` when any is spent). ``units`` is the most the
  request may use (rows; prompt + max_tokens).
* ``charge`` records the usage event (id ``grant.usage_id``) with ``used_units``
  (<= reserved; the rest is freed) and, for a request with an Idempotency-Key,
  ``body`` as the answer a retry gets. It returns the :class:`Reply` to send:
  ``body`` with 200 once the event is durable, or the stored answer when a
  concurrent retry won, or 503 if the usage log or ledger failed (the request
  then not charged). Only answer 200 after it returns.
* ``charge_batch`` is the same for a batch, called on the thread that ran it:
  the requests without an Idempotency-Key are appended to the usage log right
  there, in one (synced) write, so the batch's answers go back to the event loop
  with the batch, without another thread hand-off; :meth:`Billing.answer` turns
  each :class:`ChargeResult` into the reply (on the event loop).
  ``charge_many`` (any thread) hands everything to the writer thread and
  returns a future of the event loop instead.

Quotas and budgets are held in ``reserve``, so a charge never finds them spent:
they cannot be exceeded, across replicas too. ``request_digest`` identifies
the request for idempotency: use
:func:`request_digest` on the parsed JSON, so a retry serialized differently
(spacing, key order, escapes) is still the same request.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from shoestring.serve.allowances import Allowances, Exhausted
from shoestring.serve.answers import Reply, quota_error, stored_reply, unrecorded_error
from shoestring.serve.auth import Authenticator, Principal
from shoestring.serve.ledger_sql import LedgerSql, key_scope, project_scope
from shoestring.serve.ledger_writer import CHARGED, UNRECORDED, LedgerWriter
from shoestring.serve.metering import (
    ChargeResult,
    Outcome,
    UsageEvent,
    iso_utc,
    period_of,
    seconds_to_next_period,
)
from shoestring.serve.plans import Plan
from shoestring.serve.protocol import ProtocolError
from shoestring.serve.ratelimit import retry_after_header

_log = logging.getLogger("shoestring.serve")

MAX_IDEMPOTENCY_KEY = 200


def request_digest(model: str, version: str, doc: Any) -> str:
    """SHA-256 of a request's canonical JSON (sorted keys, no whitespace) and its model.

    >>> request_digest("m", "1", {"b": [1, 2.5], "a": "x"}) == \\
    ...     request_digest("m", "1", {"a": "x", "b": [1, 2.5]})
    True
    """
    try:
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits: the standard library writes them
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
    return hashlib.sha256(f"{model}\n{version}\n".encode() + canonical).hexdigest()


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The request's ``Idempotency-Key`` header, checked (400 if malformed)."""
    idem = headers.get("idempotency-key")
    if idem is None:
        return None
    if not 0 < len(idem) <= MAX_IDEMPOTENCY_KEY or not idem.isprintable():
        raise ProtocolError(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} "
                            "printable characters")
    return idem


@dataclass(slots=True)
class Grant:
    """Units held for one request until it is charged or released."""

    who: Principal
    model: str
    version: str
    units: int
    period: str
    usage_id: str
    idempotency_key: str | None = None
    request_digest: str | None = None
    legacy_digests: tuple[str, ...] = ()
    started: float = 0.0
    cost_nano_usd: int = 0
    held: bool = False             # everything below that applies is taken
    token: bool = False            # a rate-limit token taken
    key_leased: bool = False       # units taken from the key's quota lease
    project_leased: bool = False   # cost taken from the project's budget lease
    replay: Reply | None = None
    settled: bool = False


class Billing:
    """Keys, limits and charges for one server process (see the module docstring)."""

    def __init__(self, authenticator: Authenticator, executor: Executor, *,
                 clock: Callable[[], float], now: Callable[[], datetime]) -> None:
        self.auth, self.executor, self.clock, self.now = authenticator, executor, clock, now
        self.sql: LedgerSql | None = None
        self.writer: LedgerWriter | None = None
        self.allowances: Allowances | None = None
        self._costs: dict[tuple[int, int], tuple[Plan, int]] = {}
        self._period_start = self._period_end = datetime.min.replace(tzinfo=timezone.utc)
        self._period_name = ""
        self.on_charged: Callable[[str, str, int], None] = lambda model, plan, units: None

    def attach(self, sql: LedgerSql, writer: LedgerWriter, allowances: Allowances) -> None:
        """Connect to the ledger, the writer and the allowances (when the server starts)."""
        self.sql, self.writer, self.allowances = sql, writer, allowances

    # -- before the body --------------------------------------------------------------------

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return await self.auth.authenticate(headers.get("authorization"))

    def authenticate_cached(self, headers: Mapping[str, str]) -> Principal | None:
        """The principal if the key is in the cache (raises for a cached bad key), else None."""
        return self.auth.cached(headers.get("authorization"))

    # -- holding units ----------------------------------------------------------------------

    async def reserve(self, who: Principal, model: str, version: str, units: int, *,
                      idempotency_key: str | None = None, request_digest: str | None = None,
                      legacy_digests: tuple[str, ...] = (), started: float | None = None,
                      partial: Grant | None = None) -> Grant:
        """Hold ``units`` for a request (``started``: when it arrived, for its latency;
        ``partial``: what :meth:`reserve_now` took already)."""
        if not who.plan.allows(model):
            raise ProtocolError(403, f"plan {who.plan.name!r} does not include model {model!r}")
        now = self.now()
        grant = partial or Grant(
            who, model, version, units, self._period(now), _usage_id(), idempotency_key,
            request_digest, legacy_digests, self.clock() if started is None else started,
            self.cost(who.plan, units))
        try:
            if idempotency_key is not None:
                stored = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.sql.lookup, who.key.id, idempotency_key)
                if stored is not None:
                    grant.replay = stored_reply(stored, request_digest, legacy_digests)
                    grant.settled = True
                    return grant
            await self._hold(grant, now)
            grant.held = True
        except ProtocolError:
            raise
        except Exception as exc:  # the ledger database is away: refuse, charge nothing
            self.release(grant)
            _log.error("usage ledger unavailable: %s: %s", type(exc).__name__, exc)
            raise ledger_unavailable() from None
        return grant

    def reserve_now(self, who: Principal, model: str, version: str, units: int,
                    started: float) -> Grant | None:
        """:meth:`reserve` without waiting, for a request without an Idempotency-Key.

        Returns the grant, complete (``held``) if this replica held a rate token and the
        units already (the common case: a few dict lookups, no coroutine); otherwise pass
        it to ``await reserve(..., partial=grant)``, which goes on from what was taken.
        None if the plan does not include the model (``reserve`` says why).
        """
        if not who.plan.allows(model):
            return None
        grant = Grant(who, model, version, units, self._period(self.now()), _usage_id(),
                      started=started, cost_nano_usd=self.cost(who.plan, units))
        grant.held = self._hold_now(grant)
        return grant

    def _hold_now(self, grant: Grant) -> bool:
        """Take what :meth:`_hold` takes from what is held here, without waiting; False
        (with the grant's flags saying what was taken) when a lease or tokens are needed."""
        who, held = grant.who, self.allowances
        if not grant.token:
            if not held.token_now(who.key.id):
                return False
            grant.token = True
        if not grant.key_leased and who.quota is not None:
            if not held.take_now(key_scope(who.key.id), grant.period, grant.units):
                return False
            grant.key_leased = True
        if not grant.project_leased and who.budget_nano_usd is not None:
            if not held.take_now(project_scope(who.key.project), grant.period,
                                 grant.cost_nano_usd):
                return False
            grant.project_leased = True
        return True

    async def _hold(self, grant: Grant, now: datetime) -> None:
        who, plan, held = grant.who, grant.who.plan, self.allowances
        if self._hold_now(grant):  # the common case needs no await
            return
        if not grant.token:
            wait = await held.token(who.key.id, plan.requests_per_second, plan.burst)
            if wait > 0:
                self.release(grant)
                raise ProtocolError(429, f"rate limit of plan {plan.name!r} "
                                    f"({plan.requests_per_second:g} requests/s) exceeded",
                                    {"Retry-After": retry_after_header(wait)})
            grant.token = True
        quota = who.quota
        if quota is not None and not grant.key_leased:
            scope = key_scope(who.key.id)
            if not held.take_now(scope, grant.period, grant.units):
                try:
                    await held.take(scope, grant.period, grant.units, quota)
                except Exhausted:
                    raise quota_error(who, quota, now) from None
            grant.key_leased = True
        budget = who.budget_nano_usd
        if budget is not None and not grant.project_leased:
            scope = project_scope(who.key.project)
            try:
                if not held.take_now(scope, grant.period, grant.cost_nano_usd):
                    await held.take(scope, grant.period, grant.cost_nano_usd, budget)
            except Exhausted:
                self.release(grant)
                raise ProtocolError(429, f"the monthly budget of project {who.key.project!r} "
                                    "is spent", {"Retry-After": str(
                                        seconds_to_next_period(now))}) from None
            grant.project_leased = True

    def _period(self, now: datetime) -> str:
        """The billing month of ``now`` (on every request: two comparisons while the month
        lasts, recomputed when it changes)."""
        if now.tzinfo is None:  # a naive clock (tests): local time, as period_of reads it
            return period_of(now)
        if not self._period_start <= now < self._period_end:
            t = now.astimezone(timezone.utc)
            self._period_start = datetime(t.year, t.month, 1, tzinfo=timezone.utc)
            self._period_end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1,
                                        tzinfo=timezone.utc)
            self._period_name = period_of(t)
        return self._period_name

    def cost(self, plan: Plan, units: int) -> int:
        """The exact price of ``units`` in nano-dollars (cached: Decimal arithmetic is slow;
        keyed by the plan object's identity, since hashing a plan's fields costs more than
        the lookup)."""
        hit = self._costs.get((id(plan), units))
        if hit is not None and hit[0] is plan:
            return hit[1]
        if len(self._costs) > 65536:
            self._costs.clear()
        c = plan.cost_nano_usd(units)
        self._costs[(id(plan), units)] = (plan, c)
        return c

    def release(self, grant: Grant) -> None:
        """The request failed: nothing is charged and the units are free again."""
        self._give_back(grant, grant.units, grant.cost_nano_usd)
        grant.settled = True

    def _give_back(self, grant: Grant, units: int, cost: int) -> None:
        if grant.settled:
            return
        if grant.key_leased and units:
            self.allowances.give_back(key_scope(grant.who.key.id), grant.period, units)
        if grant.project_leased and cost:
            self.allowances.give_back(project_scope(grant.who.key.project), grant.period, cost)

    # -- charging ---------------------------------------------------------------------------

    def _record(self, g: Grant, units: int, latency_ms: float, stamp: str) -> list:
        """A request's usage-log record, built without a :class:`UsageEvent`: the same
        fields in the same order as :meth:`UsageEvent.record` (``usage_log.FIELDS``)."""
        who = g.who
        return [g.usage_id, who.key.id, who.key.project, who.plan.name, g.model, g.version,
                units, self.cost(who.plan, units), latency_ms, stamp, g.period, g.key_leased,
                g.project_leased]

    def charge_many(self, grants: list[Grant], units: list[int], bodies: list[bytes | None]
                    ) -> asyncio.Future:
        """Record a batch's usage. Callable from any thread; returns a future of the event
        loop with one :class:`ChargeResult` per grant (pass each to :meth:`answer`)."""
        now, t = self.now(), self.clock()
        stamp = iso_utc(now)
        items: list[list | UsageEvent] = []
        for g, n, body in zip(grants, units, bodies):
            latency_ms = (t - g.started) * 1000
            if g.idempotency_key is None:  # a log record: no object, serialized once
                items.append(self._record(g, n, latency_ms, stamp))
            else:
                items.append(self._event(g, n, body, latency_ms, now, stamp))
        return self.writer.submit(items)

    def charges_here(self) -> bool:
        """Whether :meth:`charge_batch` suits the calling thread (else use
        :meth:`charge_many`): see :meth:`LedgerWriter.writes_here`."""
        return self.writer.writes_here()

    def charge_batch(self, grants: list[Grant], units: list[int], bodies: list[bytes | None]
                     ) -> tuple[list[ChargeResult | None], asyncio.Future | None]:
        """Record a batch's usage from the thread that ran it (any thread).

        The requests without an Idempotency-Key (nearly all) are appended to the usage log
        here, in one write, synced when durable, before this returns: their results are
        final. Those with one go to the writer thread (the SQL ledger, where a retry at any
        replica finds them): their entries are None, filled in order by the returned future
        of the event loop (None when there are none). Pass each result to :meth:`answer`
        on the event loop.
        """
        now, t = self.now(), self.clock()
        stamp = iso_utc(now)
        results: list[ChargeResult | None] = []
        records: list[list] = []
        keyed: list[UsageEvent] = []
        for g, n, body in zip(grants, units, bodies):
            latency_ms = (t - g.started) * 1000
            if g.idempotency_key is None:  # a log record: no object, serialized once
                records.append(self._record(g, n, latency_ms, stamp))
                results.append(CHARGED)
            else:
                keyed.append(self._event(g, n, body, latency_ms, now, stamp))
                results.append(None)
        if records and not self.writer.write_now(records):
            results = [UNRECORDED if r is not None else None for r in results]
        return results, (self.writer.submit(keyed) if keyed else None)

    async def charge(self, grant: Grant, units: int, body: bytes) -> Reply:
        (result,) = await self.charge_many([grant], [units], [body])
        out = self.answer(grant, units, result, body)
        if isinstance(out, Reply):
            if out.status == 200:
                self.on_charged(grant.model, grant.who.plan.name, units)
            return out
        return Reply(out.status, _error_json(out.message), out.headers)

    def answer(self, grant: Grant, units: int, result: ChargeResult,
               body: bytes) -> Reply | ProtocolError:
        """What to send once the charge is known (called on the event loop)."""
        if result.outcome is Outcome.charged:
            if units != grant.units:  # held more than was used (stopped early): free the rest
                self._give_back(grant, grant.units - units,
                                grant.cost_nano_usd - self.cost(grant.who.plan, units))
            grant.settled = True
            return Reply(200, body)
        self.release(grant)
        if result.outcome is Outcome.duplicate:
            if result.stored is None:
                return ProtocolError(409, "a request with this Idempotency-Key is in progress")
            try:
                return stored_reply(result.stored, grant.request_digest, grant.legacy_digests)
            except ProtocolError as exc:
                return exc
        return unrecorded_error()

    def _event(self, g: Grant, units: int, body: bytes | None, latency_ms: float,
               now: datetime, stamp: str) -> UsageEvent:
        who = g.who
        return UsageEvent(
            id=g.usage_id, key_id=who.key.id, project=who.key.project, plan=who.plan.name,
            model=g.model, version=g.version, units=units,
            cost_nano_usd=self.cost(who.plan, units), latency_ms=latency_ms, created_at=now,
            idempotency_key=g.idempotency_key, request_sha256=g.request_digest,
            # Only a keyed request can be replayed, so only its answer is stored.
            response_json=body.decode() if g.idempotency_key is not None and body else None,
            key_leased=g.key_leased, project_leased=g.project_leased, period=g.period,
            created_iso=stamp)


# Usage ids: the process's start time and 48 random bits, then a counter (36 characters,
# the column's width). Unique across replicas and restarts, made without a system call
# (os.urandom per request cost microseconds on a busy VM), and increasing within a process,
# so new rows land at the end of the primary-key index instead of at random pages.
_ID_PREFIX = f"{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(6).hex()}"
_ID_COUNTER = itertools.count()


def _usage_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def ledger_unavailable() -> ProtocolError:
    return ProtocolError(503, "the usage ledger is unavailable; nothing was charged, retry "
                         "shortly", {"Retry-After": "1"})


def unrecorded_reply() -> Reply:
    e = unrecorded_error()
    return Reply(e.status, _error_json(e.message), e.headers)


def _error_json(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
