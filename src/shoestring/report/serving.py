"""Serving views for the dashboard, read from the ledger's serving tables.

Tables and columns are the ledger schema (ledger/migrations.py, migrations 1
and 3: ``serve_api_keys``, ``serve_projects``, ``serve_usage_events``); they
are named here with SQLAlchemy Core rather than imported from ``serve`` (a
sibling capability). Every figure is summed from the recorded usage events,
as ``shoestring usage`` and ``invoice`` do, so the dashboard agrees with the
invoice. Money is integer nano-dollars in the ledger, dollars here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, column, func, select, table

from shoestring.ledger.money import nano_to_usd

EVENTS = table("serve_usage_events", column("key_id"), column("project"), column("plan"),
               column("model"), column("units"), column("cost_nano_usd"),
               column("latency_ms"), column("created_at"), column("period"))
KEYS = table("serve_api_keys", column("id"), column("prefix"), column("project"),
             column("plan"), column("label"), column("monthly_quota_units"),
             column("revoked_at"))
PROJECTS = table("serve_projects", column("name"), column("monthly_budget_nano_usd"))
PERCENTILES = (50, 95, 99)


@dataclass
class ServingView:
    period: str
    daily: list[dict[str, Any]] = field(default_factory=list)      # project, key, day, …
    quotas: list[dict[str, Any]] = field(default_factory=list)     # per key
    invoices: list[dict[str, Any]] = field(default_factory=list)   # per project
    latency: list[dict[str, Any]] = field(default_factory=list)    # per project and model

    @property
    def empty(self) -> bool:
        return not (self.daily or self.quotas)


def serving_view(engine: Engine, period: str,
                 plan_quotas: Mapping[str, int | None] | None = None) -> ServingView:
    """Usage per project and key per day, quota use, invoices and latency percentiles
    for the month ``period`` (``YYYY-MM``). ``plan_quotas``: monthly units per plan name
    (``serve``'s plans; a key's own quota wins)."""
    plan_quotas = plan_quotas or {}
    view = ServingView(period)
    day = func.substr(EVENTS.c.created_at, 1, 10)
    with engine.connect() as conn:
        prefixes = dict(conn.execute(select(KEYS.c.id, KEYS.c.prefix)).all())
        for project, key, d, n, units, nano in conn.execute(
                select(EVENTS.c.project, EVENTS.c.key_id, day, func.count(),
                       func.sum(EVENTS.c.units), func.sum(EVENTS.c.cost_nano_usd))
                .where(EVENTS.c.period == period)
                .group_by(EVENTS.c.project, EVENTS.c.key_id, day)
                .order_by(day, EVENTS.c.project, EVENTS.c.key_id)):
            view.daily.append({"project": project, "key": prefixes.get(key, key), "day": d,
                               "requests": int(n), "units": int(units or 0),
                               "cost_usd": nano_to_usd(int(nano or 0))})
        used = dict(conn.execute(select(EVENTS.c.key_id, func.sum(EVENTS.c.units))
                                 .where(EVENTS.c.period == period)
                                 .group_by(EVENTS.c.key_id)).all())
        for kid, prefix, project, plan, label, quota, revoked in conn.execute(
                select(KEYS.c.id, KEYS.c.prefix, KEYS.c.project, KEYS.c.plan, KEYS.c.label,
                       KEYS.c.monthly_quota_units, KEYS.c.revoked_at)
                .order_by(KEYS.c.project, KEYS.c.prefix)):
            limit = quota if quota is not None else plan_quotas.get(plan)
            n = int(used.get(kid) or 0)
            view.quotas.append({"project": project, "key": prefix, "label": label,
                                "plan": plan, "units": n, "quota": limit,
                                "used_fraction": (n / limit) if limit else None,
                                "revoked": revoked is not None})
        budgets = dict(conn.execute(select(PROJECTS.c.name,
                                           PROJECTS.c.monthly_budget_nano_usd)).all())
        lines: dict[str, list[dict[str, Any]]] = {}
        for project, plan, model, n, units, nano in conn.execute(
                select(EVENTS.c.project, EVENTS.c.plan, EVENTS.c.model, func.count(),
                       func.sum(EVENTS.c.units), func.sum(EVENTS.c.cost_nano_usd))
                .where(EVENTS.c.period == period)
                .group_by(EVENTS.c.project, EVENTS.c.plan, EVENTS.c.model)
                .order_by(EVENTS.c.project, EVENTS.c.plan, EVENTS.c.model)):
            lines.setdefault(project, []).append(
                {"plan": plan, "model": model, "requests": int(n), "units": int(units or 0),
                 "nano": int(nano or 0)})
        for project, ls in lines.items():
            total = sum(x["nano"] for x in ls)
            budget = budgets.get(project)
            view.invoices.append({
                "project": project, "lines": [{**x, "amount_usd": nano_to_usd(x.pop("nano"))}
                                              for x in ls],
                "total_usd": nano_to_usd(total),
                "budget_usd": None if budget is None else nano_to_usd(budget)})
        samples: dict[tuple[str, str], list[float]] = {}
        for project, model, ms in conn.execute(
                select(EVENTS.c.project, EVENTS.c.model, EVENTS.c.latency_ms)
                .where(EVENTS.c.period == period)):
            samples.setdefault((project, model), []).append(float(ms))
    for (project, model), ms in sorted(samples.items()):
        # Linear interpolation between order statistics (numpy's default, Hyndman & Fan
        # type 7), over every recorded request of the month.
        p = np.percentile(np.asarray(ms), PERCENTILES)
        view.latency.append({"project": project, "model": model, "requests": len(ms),
                             **{f"p{q}_ms": float(v) for q, v in zip(PERCENTILES, p)}})
    return view
