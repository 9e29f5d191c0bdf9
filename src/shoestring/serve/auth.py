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

from shoestring.serve.keys import KeyInfo, KeyStore, hash_key
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
    def __init__(self, keys: KeyStore, plans: dict[str, Plan], executor: Executor,
                 cache_seconds: float, clock: Callable[[], float]) -> None:
        self.keys, self.plans, self.executor = keys, plans, executor
        self.cache_seconds, self.clock = cache_seconds, clock
        self._cache: dict[str, tuple[float, KeyInfo | None, Principal | None]] = {}

    def cached(self, header: str | None) -> Principal | None:
        """The principal from the cache without waiting; None if the key must be looked up.

        Raises :class:`ProtocolError` (401/403) for a missing, malformed, or cached bad key.
        """
        digest = self._digest(header)
        hit = self._cache.get(digest)
        if hit is None or hit[0] <= self.clock():
            return None
        return self._verdict(hit[1], hit[2])

    async def authenticate(self, header: str | None) -> Principal:
        digest = self._digest(header)
        now = self.clock()
        hit = self._cache.get(digest)
        if hit is None or hit[0] <= now:
            secret = header.partition(" ")[2].strip()
            info, budget = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._load, secret)
            plan = None if info is None else self.plans.get(info.plan)
            who = Principal(info, plan, budget) if plan is not None else None
            if self.cache_seconds > 0:
                if len(self._cache) > 100_000:  # bounded: unknown keys cannot grow it forever
                    self._cache.clear()
                self._cache[digest] = (now + self.cache_seconds, info, who)
        else:
            _, info, who = hit
        return self._verdict(info, who)

    @staticmethod
    def _digest(header: str | None) -> str:
        if not header:
            raise _unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise _unauthorized("malformed Authorization header: expected 'Bearer KEY'")
        return hash_key(secret)

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
