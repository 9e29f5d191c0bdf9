"""Quota and budget held by the completions in progress, so a stream never outruns its limits.

A streamed completion shows its tokens before it is charged, so the charge at
its end must not be refused. :meth:`QuotaHolds.take` therefore runs before any
work, next to :meth:`Billing.reserve <shoestring.serve.billing.Billing.reserve>`:
the most the request can use, ``N = prompt + max_tokens`` units (and their
price), must fit in the key's monthly quota and the project's monthly budget,
counting what the ledger's counters hold and what this process's other
unfinished completions may still use. Otherwise 429, and nothing runs. The
hold is released when the completion is charged or fails.

Where this is exact: with one server process, nothing else spends the key's
units between the hold and the charge except requests that are themselves
held or already committed. Another replica, or a ``/v2`` request on the same
key, can spend the last units in between; the ledger's commit then refuses the
charge (the counters are never exceeded). Quota leases in ``Billing.reserve``,
shared through the database, would close that window and make this module
unnecessary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from shoestring.ledger.money import nano_to_usd
from shoestring.serve.auth import Principal
from shoestring.serve.metering import period_of, seconds_to_next_period
from shoestring.serve.protocol import ProtocolError
from shoestring.serve.tables import UsageCounterRow


@dataclass(frozen=True)
class Hold:
    """Units (and their price) one completion may still use, held against its limits."""

    who: Principal
    units: int
    cost_nano_usd: int
    period: str


class QuotaHolds:
    """See the module docstring. Lives on the event loop; database reads go to ``executor``."""

    def __init__(self, engine: Engine, executor: Executor, now: Callable[[], datetime]) -> None:
        self.engine, self.executor, self.now = engine, executor, now
        self._held: dict[tuple[str, str], int] = {}  # (scope, period) -> units or nano-USD

    async def take(self, who: Principal, units: int) -> Hold:
        """Hold ``units`` for a completion, or raise 429 naming the limit and what is left."""
        now = self.now()
        period = period_of(now)
        cost = who.plan.cost_nano_usd(units)
        kscope, pscope = f"key:{who.key.id}", f"project:{who.key.project}"
        quota, budget = who.quota, who.budget_nano_usd
        if quota is not None or budget is not None:
            used = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._counters, [kscope, pscope], period)
            retry = {"Retry-After": str(seconds_to_next_period(now))}
            if quota is not None:
                left = quota - used.get(kscope, 0) - self._held.get((kscope, period), 0)
                if units > left:
                    raise ProtocolError(429, f"this completion may use up to {units} units "
                                        f"(prompt + max_tokens) but key {who.key.prefix}… has "
                                        f"{max(left, 0)} of its monthly quota of {quota} left "
                                        "(counting completions in progress); lower max_tokens "
                                        "or wait", retry)
            if budget is not None:
                left = budget - used.get(pscope, 0) - self._held.get((pscope, period), 0)
                if cost > left:
                    raise ProtocolError(429, "this completion may cost up to "
                                        f"${nano_to_usd(cost):.6f} but project "
                                        f"{who.key.project!r} has "
                                        f"${nano_to_usd(max(left, 0)):.6f} of its monthly "
                                        "budget left; lower max_tokens or wait", retry)
        hold = Hold(who, units, cost, period)
        self._add(hold, +1)
        return hold

    def release(self, hold: Hold) -> None:
        self._add(hold, -1)

    def _add(self, hold: Hold, sign: int) -> None:
        for scope, amount in ((f"key:{hold.who.key.id}", hold.units),
                              (f"project:{hold.who.key.project}", hold.cost_nano_usd)):
            k = (scope, hold.period)
            left = self._held.get(k, 0) + sign * amount
            if left:
                self._held[k] = left
            else:
                self._held.pop(k, None)

    def _counters(self, scopes: list[str], period: str) -> dict[str, int]:
        c = UsageCounterRow
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.scope, c.used).where(c.scope.in_(scopes),
                                                              c.period == period)).all()
        return {scope: int(used) for scope, used in rows}
