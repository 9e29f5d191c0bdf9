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
  (<= reserved) and, for a request with an Idempotency-Key, ``body`` as the
  answer a retry gets. It returns the :class:`Reply` to send: ``body`` with 200,
  or the stored answer when a concurrent retry won, or an error (429 if the
  commit found the quota spent, 503 if the ledger is unreachable, the request
  then not charged). Only answer 200 after it returns.
* ``charge_many`` is the same for a batch, callable from any thread; it returns
  a :class:`concurrent.futures.Future` of one :class:`ChargeResult` per grant.

``request_digest`` identifies the request for idempotency: use
:func:`request_digest` on the parsed JSON, so a retry serialized differently
(spacing, key order, escapes) is still the same request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from shoestring.serve.answers import Reply, quota_error, stored_reply, unrecorded_error
from shoestring.serve.auth import Authenticator, Principal
from shoestring.serve.ledger_writer import LedgerWriter
from shoestring.serve.metering import ChargeResult, Meter, Outcome, UsageEvent, period_of
from shoestring.serve.protocol import ProtocolError
from shoestring.serve.ratelimit import RateLimiter, retry_after_header

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
    replay: Reply | None = None
    settled: bool = False


class Billing:
    """Keys, limits and charges for one server process (see the module docstring)."""

    def __init__(self, authenticator: Authenticator, meter: Meter, writer: LedgerWriter,
                 executor: Executor, *, clock: Callable[[], float],
                 now: Callable[[], datetime]) -> None:
        self.auth, self.meter, self.writer, self.executor = authenticator, meter, writer, executor
        self.clock, self.now = clock, now
        self.limiter = RateLimiter(clock)
        self._key_used: dict[tuple[str, str], int] = {}  # lower bounds, for early 429s
        self.on_charged: Callable[[str, str, int], None] = lambda model, plan, units: None

    # -- before the body --------------------------------------------------------------------

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return await self.auth.authenticate(headers.get("authorization"))

    def authenticate_cached(self, headers: Mapping[str, str]) -> Principal | None:
        """The principal if the key is in the cache (raises for a cached bad key), else None."""
        return self.auth.cached(headers.get("authorization"))

    # -- holding units ----------------------------------------------------------------------

    async def reserve(self, who: Principal, model: str, version: str, units: int, *,
                      idempotency_key: str | None = None, request_digest: str | None = None,
                      legacy_digests: tuple[str, ...] = (), started: float | None = None
                      ) -> Grant:
        """Hold ``units`` for a request (``started``: when it arrived, for its latency)."""
        if not who.plan.allows(model):
            raise ProtocolError(403, f"plan {who.plan.name!r} does not include model {model!r}")
        now = self.now()
        grant = Grant(who, model, version, units, period_of(now), os.urandom(16).hex(),
                      idempotency_key, request_digest, legacy_digests,
                      self.clock() if started is None else started)
        if idempotency_key is not None:
            stored = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.meter.lookup, who.key.id, idempotency_key)
            if stored is not None:
                grant.replay = stored_reply(stored, request_digest, legacy_digests)
                grant.settled = True
                return grant
        wait = self.limiter.take(who.key.id, who.plan.requests_per_second, who.plan.burst)
        if wait > 0:
            raise ProtocolError(429, f"rate limit of plan {who.plan.name!r} "
                                f"({who.plan.requests_per_second:g} requests/s) exceeded",
                                {"Retry-After": retry_after_header(wait)})
        quota = who.quota
        if quota is not None and self._key_used.get((who.key.id, grant.period), 0) + units \
                > quota:
            raise quota_error(who, quota, now)
        return grant

    def release(self, grant: Grant) -> None:
        """The request failed: nothing is charged and the units are free again."""
        grant.settled = True

    # -- charging ---------------------------------------------------------------------------

    def charge_many(self, grants: list[Grant], units: list[int], bodies: list[bytes | None]
                    ) -> Future:
        """Record a batch's usage; a future of one :class:`ChargeResult` per grant."""
        now, t = self.now(), self.clock()
        events = [self._event(g, n, b, (t - g.started) * 1000, now) for g, n, b in
                  zip(grants, units, bodies)]
        return self.writer.submit(events)

    async def charge(self, grant: Grant, units: int, body: bytes) -> Reply:
        fut = self.charge_many([grant], [units], [body])
        try:
            (result,) = await asyncio.wrap_future(fut)
        except Exception:
            return unrecorded_reply()
        out = self.answer(grant, units, result, body)
        return out if isinstance(out, Reply) else Reply(out.status, _error_json(out.message),
                                                        out.headers)

    def answer(self, grant: Grant, units: int, result: ChargeResult,
               body: bytes) -> Reply | ProtocolError:
        """What to send once the charge is known (called on the event loop)."""
        grant.settled = True
        if result.key_used is not None:
            k = (grant.who.key.id, grant.period)
            self._key_used[k] = max(self._key_used.get(k, 0), result.key_used)
        if result.outcome is Outcome.charged:
            self.on_charged(grant.model, grant.who.plan.name, units)
            return Reply(200, body)
        if result.outcome is Outcome.duplicate:
            if result.stored is None:
                return ProtocolError(409, "a request with this Idempotency-Key is in progress")
            try:
                return stored_reply(result.stored, grant.request_digest, grant.legacy_digests)
            except ProtocolError as exc:
                return exc
        if result.outcome is Outcome.quota_exceeded:
            return quota_error(grant.who, grant.who.quota, self.now())
        return ProtocolError(429, f"the monthly budget of project {grant.who.key.project!r} "
                             "is spent", {"Retry-After": str(result.retry_after_s)})

    def _event(self, g: Grant, units: int, body: bytes | None, latency_ms: float,
               now: datetime) -> UsageEvent:
        who = g.who
        return UsageEvent(
            id=g.usage_id, key_id=who.key.id, project=who.key.project, plan=who.plan.name,
            model=g.model, version=g.version, units=units,
            cost_nano_usd=who.plan.cost_nano_usd(units), latency_ms=latency_ms, created_at=now,
            key_quota=who.quota, project_budget_nano_usd=who.budget_nano_usd,
            idempotency_key=g.idempotency_key, request_sha256=g.request_digest,
            # Only a keyed request can be replayed, so only its answer is stored.
            response_json=body.decode() if g.idempotency_key is not None and body else None)


def unrecorded_reply() -> Reply:
    e = unrecorded_error()
    return Reply(e.status, _error_json(e.message), e.headers)


def _error_json(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
