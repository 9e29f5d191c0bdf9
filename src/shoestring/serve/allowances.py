"""What a replica may spend without asking the database: leased units and rate tokens.

A request for a key with a monthly quota (or a project with a budget) takes
its units from the replica's local allowance for that counter; only when the
allowance runs dry does the replica lease a new block in one transaction
(:meth:`LedgerSql.grant`), so the shared database sees a transaction per
lease, not per request. Rate limits work the same way: a block of tokens is
taken from the key's shared bucket and spent locally, so a key's rate is
global across replicas (:meth:`LedgerSql.take_tokens`).

Block sizes follow the recent rate of spending: about ``horizon_s`` of it,
at least ``first_block`` requests' worth, and never more than half of what is
left of a limit (so another replica still finds room, and the last units are
shared finely). Everything here runs on the event loop; grants run on the
database executor, one at a time per counter (concurrent requests wait for
the same grant).

A lease is valid for ``ttl_s`` from its grant or last renewal; the replica
stops spending from it ``margin_s`` earlier (clocks of replicas differ), and
another replica may reclaim it once it expired. If the database cannot be
reached, a key's rate limit falls back to a bucket in this process
(:class:`~shoestring.serve.ratelimit.RateLimiter`), while limited quotas
stop at the end of their lease: units are money, tokens are not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.ratelimit import RateLimiter

_log = logging.getLogger("shoestring.serve")


@dataclass(slots=True)
class _Held:
    available: int = 0
    valid_until: float = 0.0
    granted_at: float = 0.0
    spent_since: int = 0        # spent since the last grant, for the next block's size
    denied_until: float = 0.0   # nothing was left: answer 429 locally until then
    denied_room: int = 0        # ...to requests needing more than the database had left


class Exhausted(Exception):
    """No room is left in a limited counter (``room``: what was left, less than asked)."""

    def __init__(self, room: int) -> None:
        super().__init__(room)
        self.room = room


class Allowances:
    """Leased units per (counter, month) and rate tokens per key (see the module docstring)."""

    def __init__(self, sql: LedgerSql, executor: Executor, *,
                 wall: Callable[[], float] = time.time, ttl_s: float = 30.0,
                 margin_s: float = 5.0, horizon_s: float = 1.0, first_block: int = 64,
                 token_life_s: float = 1.0) -> None:
        self.sql, self.executor, self.wall = sql, executor, wall
        self.ttl_s, self.margin_s, self.horizon_s = ttl_s, margin_s, horizon_s
        self.first_block, self.token_life_s = first_block, token_life_s
        self._units: dict[tuple[str, str], _Held] = {}
        self._tokens: dict[str, _Held] = {}
        self._granting: dict[tuple, asyncio.Future] = {}
        self._fallback = RateLimiter(wall)
        self.grants = 0

    @contextmanager
    def _leasing(self, k):
        """One lease at a time per counter: others wait on this future, which completes
        only once the lease's result is in place (or it failed), so they never spin."""
        waiter = asyncio.get_running_loop().create_future()
        self._granting[k] = waiter
        try:
            yield
        finally:
            del self._granting[k]
            waiter.set_result(None)

    # -- quota and budget units -------------------------------------------------------------

    def take_now(self, scope: str, period: str, n: int) -> bool:
        """Take ``n`` units from what is held, if enough is (no waiting, no database)."""
        held = self._units.get((scope, period))
        if held is not None and held.available >= n and held.valid_until > self.wall():
            held.available -= n
            held.spent_since += n
            return True
        return False

    def token_now(self, key_id: str) -> bool:
        """Take a held rate-limit token, if one is (no waiting, no database)."""
        held = self._tokens.get(key_id)
        if held is not None and held.available >= 1 and held.valid_until > self.wall():
            held.available -= 1
            held.spent_since += 1
            return True
        return False

    async def take(self, scope: str, period: str, n: int, limit: int) -> None:
        """Take ``n`` units of a limited counter, leasing more if needed; raises
        :class:`Exhausted` when the limit has no room for them."""
        k = (scope, period)
        while True:
            held = self._units.get(k)
            now = self.wall()
            if held is not None and held.valid_until > now and held.available >= n:
                held.available -= n
                held.spent_since += n
                return
            # Requests vary in size (a completion holds prompt + max_tokens): only those
            # larger than what the database had left are refused without asking again.
            if held is not None and held.denied_until > now and \
                    n - held.available > held.denied_room:
                raise Exhausted(held.available + held.denied_room)
            pending = self._granting.get(k)
            if pending is not None:  # another request is leasing for this counter: share it
                await asyncio.shield(pending)
                continue
            await self._lease(k, n, limit, held)

    async def _lease(self, k: tuple[str, str], n: int, limit: int, held: _Held | None) -> None:
        now = self.wall()
        if held is None:
            held = self._units[k] = _Held()
        if held.valid_until <= now:
            held.available = 0  # expired: the database may have reclaimed it
        elapsed = max(now - held.granted_at, 0.05)
        rate_block = math.ceil(held.spent_since / elapsed * self.horizon_s) if held.granted_at \
            else 0
        want = max(n * self.first_block, rate_block, n)
        need = max(n - held.available, 1)
        with self._leasing(k):
            granted, room = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.sql.grant, k[0], k[1], limit, need, want, now, self.ttl_s,
                n)
        self.grants += 1
        if granted == 0:
            held.denied_until, held.denied_room = self.wall() + 1.0, room
            raise Exhausted(room + held.available)
        held.available += granted
        held.granted_at, held.spent_since = now, 0
        held.valid_until = now + self.ttl_s - self.margin_s
        held.denied_until = 0.0

    def give_back(self, scope: str, period: str, n: int) -> None:
        """Units taken for a request that was not charged (it failed, or was a replay)."""
        held = self._units.get((scope, period))
        if held is not None:
            held.available += n
            held.spent_since = max(0, held.spent_since - n)
            held.denied_until = 0.0

    def renewed(self, until: float) -> None:
        """Every lease was extended (by the reconciler) until ``until`` (wall clock)."""
        for held in self._units.values():
            if held.available > 0:
                held.valid_until = until - self.margin_s

    def forget(self) -> None:
        """Drop every allowance (before the replica gives its leases back)."""
        self._units.clear()
        self._tokens.clear()

    # -- rate tokens ------------------------------------------------------------------------

    async def token(self, key_id: str, rate: float, burst: int) -> float:
        """Take one rate-limit token: 0.0, or the seconds until one will be available."""
        while True:
            held = self._tokens.get(key_id)
            now = self.wall()
            if held is not None and held.valid_until > now and held.available >= 1:
                held.available -= 1
                held.spent_since += 1
                return 0.0
            if held is not None and held.denied_until > now:
                return held.denied_until - now
            pending = self._granting.get(key_id)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            return await self._take_tokens(key_id, rate, burst, held)

    async def _take_tokens(self, key_id: str, rate: float, burst: int,
                           held: _Held | None) -> float:
        now = self.wall()
        if held is None:
            held = self._tokens[key_id] = _Held()
        elapsed = max(now - held.granted_at, 0.05)
        recent = math.ceil(held.spent_since / elapsed * self.token_life_s) \
            if held.granted_at else 1
        want = max(1, min(burst, math.ceil(rate * self.token_life_s), recent * 2))
        try:
            with self._leasing(key_id):
                n, wait = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.sql.take_tokens, key_id, rate, burst, want, now)
        except Exception as exc:  # the database is away: limit in this process meanwhile
            _log.warning("rate limit of key %s checked locally: %s", key_id, exc)
            return self._fallback.take(key_id, rate, burst)
        if n == 0:
            held.denied_until = now + wait
            return wait
        held.available = n - 1  # this request's token
        held.granted_at, held.spent_since = now, 1
        held.valid_until = now + self.token_life_s
        held.denied_until = 0.0
        return 0.0
