"""Usage reports, invoices and the CloudEvents export, read from the usage events.

Every figure is summed from the recorded events (the counters only enforce
limits), so a report always agrees with what was charged request by request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes
from shoestring.ledger.money import nano_to_usd
from shoestring.serve.metering import period_of
from shoestring.serve.tables import ApiKeyRow, ProjectRow
from shoestring.serve.tables import UsageEventRow as E

CLOUDEVENT_TYPE = "dev.shoestring.usage.v1"


def check_period(month: str | None, now: Callable[[], datetime]) -> str:
    """``YYYY-MM`` as given, or the current UTC month."""
    if month is None:
        return period_of(now())
    try:
        datetime.strptime(month, "%Y-%m")
    except ValueError:
        raise ShoestringError(f"month {month!r} is not YYYY-MM",
                              hint="e.g. --month 2026-05") from None
    return month


usd = nano_to_usd  # nano-dollars as dollars, rounded to the micro-dollar for display


def project_names(engine: Engine) -> list[str]:
    """Every project the ledger knows (it has had a key)."""
    with engine.connect() as conn:
        return sorted(conn.scalars(select(ProjectRow.name)))


def usage_summary(engine: Engine, project: str, period: str) -> dict[str, Any]:
    """Requests, units and cost of ``project`` in ``period``, in total and per key."""
    with engine.connect() as conn:
        budget = conn.scalar(select(ProjectRow.monthly_budget_nano_usd)
                             .where(ProjectRow.name == project))
        rows = conn.execute(
            select(E.key_id, func.count(), func.sum(E.units), func.sum(E.cost_nano_usd))
            .where(E.project == project, E.period == period).group_by(E.key_id)
            .order_by(E.key_id)).all()
        prefixes = dict(conn.execute(select(ApiKeyRow.id, ApiKeyRow.prefix)
                                     .where(ApiKeyRow.project == project)).all())
    per_key = [{"key_id": k, "prefix": prefixes.get(k, ""), "requests": int(n),
                "units": int(u or 0), "cost_usd": usd(int(c or 0))} for k, n, u, c in rows]
    total_nano = sum(int(r[3] or 0) for r in rows)
    return {
        "project": project, "month": period,
        "requests": sum(k["requests"] for k in per_key),
        "units": sum(k["units"] for k in per_key),
        "cost_usd": usd(total_nano),
        "budget_usd": None if budget is None else usd(budget),
        "keys": per_key,
    }


def invoice(engine: Engine, project: str, period: str) -> dict[str, Any]:
    """A per-plan, per-model statement for ``project`` in ``period``."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(E.plan, E.model, func.count(), func.sum(E.units), func.sum(E.cost_nano_usd))
            .where(E.project == project, E.period == period)
            .group_by(E.plan, E.model).order_by(E.plan, E.model)).all()
    lines = []
    for plan, model, n, units, nano in rows:
        units, nano = int(units or 0), int(nano or 0)
        lines.append({"plan": plan, "model": model, "requests": int(n), "units": units,
                      "price_per_1000_units_usd": usd(nano * 1000 // units) if units else 0.0,
                      "amount_usd": usd(nano)})
    total = sum(int(r[4] or 0) for r in rows)
    return {"project": project, "month": period, "lines": lines, "total_usd": usd(total),
            "currency": "USD"}


def iter_events(engine: Engine, project: str | None, period: str | None,
                batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Recorded usage events, oldest first, streamed in batches."""
    q = select(E.id, E.key_id, E.project, E.plan, E.model, E.version, E.units,
               E.cost_nano_usd, E.latency_ms, E.created_at).order_by(E.created_at, E.id)
    if project:
        q = q.where(E.project == project)
    if period:
        q = q.where(E.period == period)
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=batch).execute(q):
            yield dict(row._mapping)


def to_cloudevent(ev: dict[str, Any], source: str) -> dict[str, Any]:
    """One usage event as a CloudEvents 1.0 JSON object.

    Field names follow the CloudEvents 1.0 spec and its JSON format
    (github.com/cloudevents/spec, cloudevents/spec.md and formats/json-format.md).
    ``id`` is the usage event id, so a consumer that deduplicates on
    ``source`` + ``id`` (as the spec requires) counts each request once, however
    often the export is replayed.
    """
    return {
        "specversion": "1.0", "id": ev["id"], "source": source, "type": CLOUDEVENT_TYPE,
        "subject": ev["project"], "time": ev["created_at"],
        "datacontenttype": "application/json",
        "data": {"project": ev["project"], "key_id": ev["key_id"], "plan": ev["plan"],
                 "model": ev["model"], "version": ev["version"], "units": ev["units"],
                 "cost_usd": usd(ev["cost_nano_usd"]), "cost_nano_usd": ev["cost_nano_usd"],
                 "latency_ms": ev["latency_ms"]},
    }


def cloudevent_lines(engine: Engine, *, project: str | None = None,
                     period: str | None = None, source: str = "shoestring/serve") -> list[str]:
    """The events as CloudEvents, one compact JSON document per line."""
    return [json.dumps(to_cloudevent(ev, source), separators=(",", ":"))
            for ev in iter_events(engine, project, period)]


def export_cloudevents(engine: Engine, out: Path, *, project: str | None = None,
                       period: str | None = None, source: str = "shoestring/serve") -> int:
    """Write the events as CloudEvents JSON lines to ``out`` (atomically); return the count.

    Missing parent folders are created, as for every other output Shoestring writes.
    """
    out = Path(out)
    if out.is_dir():
        raise ShoestringError(f"--out '{out}' is a folder", hint="give a file path such as "
                              f"{out / 'usage.jsonl'}, or - for standard output")
    lines = cloudevent_lines(engine, project=project, period=period, source=source)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return len(lines)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
