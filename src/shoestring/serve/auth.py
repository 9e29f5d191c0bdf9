"""Request authentication: ``Authorization: Bearer KEY`` → key, plan and project budget.

Lookups are cached for ``cache_seconds`` (hits and misses alike) so the hot
path does no database read; a revoked key stops working within that time.
Database reads run on ``executor``, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from shoestring.serve.keys import KeyInfo, KeyStore
from shoestring.serve.plans import Plan
from shoestring.serve.protocol import ProtocolError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="shoestring"'}


@dataclass(frozen=True)
class Principal:
    key: KeyInfo
    plan: Plan
    budget_nano_usd: int | None

    @property
    def quota(self) -> int | None:
        return self.key.quota(self.plan)


def _unauthorized(message: str) -> ProtocolError:
    return ProtocolError(401, message, dict(CHALLENGE))


class Authenticator:
    """Checks ``Authorization: Bearer KEY`` against the key store, with a cache.

    A cached lookup is used for ``cache_seconds``; once it is older than
    ``REFRESH_AT`` of that, the next request starts one lookup in the
    background and keeps using the cached answer meanwhile, so a busy key
    never waits for the database, and concurrent misses of one key share one
    lookup. A revoked key still stops working within ``cache_seconds``.
    """

    REFRESH_AT = 0.75

    def __init__(self, keys: KeyStore, plans: dict[str, Plan], executor: Executor,
                 cache_seconds: float, clock: Callable[[], float]) -> None:
        self.keys, self.plans, self.executor = keys, plans, executor
        self.cache_seconds, self.clock = cache_seconds, clock
        self._cache: dict[str, tuple[float, KeyInfo | None, Principal | None]] = {}
        self._loading: dict[str, asyncio.Future] = {}

    def cached(self, header: str | None) -> Principal | None:
        """The principal from the cache without waiting; None if the key must be looked up.

        Raises :class:`ProtocolError` (401/403) for a missing, malformed, or cached bad key.
        The cache is keyed by the header as sent: a hit costs one dict lookup, no hash (the
        secrets stay in this process's memory, as they pass through it with every request;
        only their SHA-256 is ever stored or logged).
        """
        hit = self._cache.get(header) if header else None
        if hit is None:
            self._check(header)  # 401 for a missing or malformed header
            return None
        left = hit[0] - self.clock()
        if left <= 0:
            return None
        if left < (1 - self.REFRESH_AT) * self.cache_seconds and header not in self._loading:
            self._start_lookup(header)  # refresh ahead; this request uses the cache
        return self._verdict(hit[1], hit[2])

    async def authenticate(self, header: str | None) -> Principal:
        self._check(header)  # 401 for a missing or malformed header
        hit = self._cache.get(header)
        if hit is None or hit[0] <= self.clock():
            pending = self._loading.get(header) or self._start_lookup(header)
            try:
                info, who = self._principal(*await asyncio.shield(pending))
            except Exception as exc:  # the database is away: refuse for now, retryably
                raise ProtocolError(503, "API keys cannot be checked right now; retry shortly",
                                    {"Retry-After": "1"}) from exc
        else:
            _, info, who = hit
        return self._verdict(info, who)

    def _principal(self, info: KeyInfo | None, budget: int | None
                   ) -> tuple[KeyInfo | None, Principal | None]:
        plan = None if info is None else self.plans.get(info.plan)
        return info, (Principal(info, plan, budget) if plan is not None else None)

    def _start_lookup(self, header: str) -> asyncio.Future:
        """One lookup of a key at a time; its result fills the cache."""
        secret = header.partition(" ")[2].strip()
        started = self.clock()
        fut = asyncio.get_running_loop().run_in_executor(self.executor, self._load, secret)
        self._loading[header] = fut

        def loaded(f: asyncio.Future) -> None:
            del self._loading[header]
            if f.cancelled() or f.exception() is not None or self.cache_seconds <= 0:
                return
            if len(self._cache) > 100_000:  # bounded: unknown keys cannot grow it forever
                self._cache.clear()
            self._cache[header] = (started + self.cache_seconds, *self._principal(*f.result()))

        fut.add_done_callback(loaded)
        return fut

    @staticmethod
    def _check(header: str | None) -> None:
        """Raise 401 if the header is missing or malformed."""
        if not header:
            raise _unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise _unauthorized("malformed Authorization header: expected 'Bearer KEY'")

    @staticmethod
    def _verdict(info: KeyInfo | None, who: Principal | None) -> Principal:
        if info is None:
            raise _unauthorized("unknown API key")
        if not info.active:
            raise _unauthorized(f"API key {info.prefix}… was revoked on {info.revoked_at}")
        if who is None:
            raise ProtocolError(403, f"this server does not offer plan {info.plan!r} of key "
                                f"{info.prefix}…")
        return who

    def _load(self, secret: str) -> tuple[KeyInfo | None, int | None]:
        info = self.keys.lookup(secret)
        budget = None if info is None else self.keys.budget_nano_usd(info.project)
        return info, budget
