"""The dashboard's serving page: :func:`shoestring.report.serving.serving_view` as
tables and a plot of units per day per project."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine

from shoestring.report import html as h
from shoestring.report.plots import Series, line_plot
from shoestring.report.serving import serving_view


def serving_sections(engine: Engine, period: str,
                     plan_quotas: Mapping[str, int | None]) -> list[tuple[str, str, str]]:
    v = serving_view(engine, period, plan_quotas)
    month_nav = f'<form method="get" action="/serving"><label>month <input name="month" ' \
                f'value="{h.esc(period)}" size="8"></label> <button>show</button></form>'
    if v.empty:
        return [("usage", "Usage", month_nav + f"<p>No keys and no metered requests in "
                 f"{h.esc(period)}.</p>")]
    total_units = sum(d["units"] for d in v.daily)
    revenue = sum(i["total_usd"] for i in v.invoices)
    usage = [month_nav, h.key_values([
        ("month", period), ("projects", len({d["project"] for d in v.daily})),
        ("requests", sum(d["requests"] for d in v.daily)), ("units", total_units),
        ("invoiced $", revenue)])]
    per_project: dict[str, dict[int, int]] = {}
    for d in v.daily:
        day = int(d["day"][8:10])
        per_project.setdefault(d["project"], {})
        per_project[d["project"]][day] = per_project[d["project"]].get(day, 0) + d["units"]
    series = [Series(p, sorted(days), [days[k] for k in sorted(days)])
              for p, days in sorted(per_project.items())]
    if series:
        usage.append(h.plots([h.figure(
            line_plot(series, xlabel=f"day of {period} (UTC)", ylabel="units (rows, tokens)",
                      title="units per day per project"),
            "metered units per project and day", "serving-units-per-day")]))
    usage.append(h.table(["day", "project", "key", "requests", "units", "cost $"],
                         [[d["day"], d["project"], d["key"], d["requests"], d["units"],
                           d["cost_usd"]] for d in v.daily]))
    quotas = h.table(["project", "key", "label", "plan", "units used", "monthly quota",
                      "used", "revoked"],
                     [[q["project"], q["key"], q["label"], q["plan"], q["units"],
                       q["quota"] if q["quota"] is not None else "unlimited",
                       f"{100 * q['used_fraction']:.1f}%" if q["used_fraction"] is not None
                       else "—", q["revoked"]] for q in v.quotas])
    invoices = "".join(
        f"<h3>{h.esc(i['project'])}: ${i['total_usd']:,.6f}"
        + (f" of a ${i['budget_usd']:,.2f} budget" if i["budget_usd"] is not None else "")
        + "</h3>" + h.table(["plan", "model", "requests", "units", "amount $"],
                            [[x["plan"], x["model"], x["requests"], x["units"],
                              x["amount_usd"]] for x in i["lines"]])
        for i in v.invoices) or "<p>No metered requests this month.</p>"
    latency = h.table(["project", "model", "requests", "p50 ms", "p95 ms", "p99 ms"],
                      [[x["project"], x["model"], x["requests"], x["p50_ms"], x["p95_ms"],
                        x["p99_ms"]] for x in v.latency]) if v.latency else \
        "<p>No metered requests this month.</p>"
    return [("usage", "Usage per project and key per day", "".join(usage)),
            ("quotas", "Quota use", quotas),
            ("invoices", "Invoices", invoices),
            ("latency", "Latency percentiles (as metered per request)", latency)]
