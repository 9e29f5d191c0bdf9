"""``shoestring ui``: the report pages served live from the ledger, plus serving views.

Pages (server-rendered HTML, no JavaScript, nothing fetched from elsewhere):

- ``/``: the ledger's runs; tick several and *compare*;
- ``/runs/{id}``: the report of one run (the same page ``shoestring report`` writes);
- ``/compare?id=…&id=…``: several runs overlaid;
- ``/serving?month=YYYY-MM``: usage per project and key per day, quota use, invoices
  and latency percentiles (:mod:`shoestring.report.serving`).

Read-only on the ledger: SQLite connections are opened ``query_only`` and
PostgreSQL sessions ``default_transaction_read_only``. Bound beyond loopback,
every request needs an admin token (:mod:`shoestring.report.admin_tokens`),
given as ``Authorization: Bearer sst_…`` or through the login form, which sets
an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import Engine, event, select

from shoestring.config import StrictConfig, validate_config
from shoestring.errors import ShoestringError
from shoestring.report import html as h
from shoestring.report.training import short_source

# Pages may link to and post forms to the dashboard itself; nothing else loads.
DASHBOARD_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                 "base-uri 'none'; form-action 'self'")
COOKIE = "shoestring_ui"
LINKS = (("/", "runs"), ("/serving", "serving"))
MAX_RUNS = 200


class UiConfig(StrictConfig):
    """What ``shoestring ui`` serves, and where."""

    host: str = Field("127.0.0.1", description="Address to bind (beyond loopback, an admin "
                      "token is required).")
    port: int = Field(8765, ge=0, le=65535, description="TCP port.")
    plans: Path | None = Field(None, description="The serving plans TOML, for plan quotas "
                               "(default: the shipped plans).")


def resolve_ui_config(values: dict[str, Any]) -> UiConfig:
    clean = {k: v for k, v in values.items() if v is not None}
    return validate_config(UiConfig, clean, hint="see 'shoestring ui --help'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_only_engine(url: str) -> Engine:
    """The ledger at ``url`` (upgraded if old), then reopened for reading only."""
    from shoestring.ledger.db import open_ledger

    engine = open_ledger(url, create=False)
    engine.dispose()   # the pooled connections of the upgrade were read-write

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        elif engine.dialect.name == "postgresql":
            cur.execute("SET default_transaction_read_only = on")
        cur.close()

    return engine


@dataclass
class Dashboard:
    """What the pages read: the ledger, where relative run folders are, plan quotas."""

    engine: Engine
    workspace: Path
    require_token: bool
    plan_quotas: Mapping[str, int | None] = field(default_factory=dict)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # --- data -------------------------------------------------------------------------------
    def runs(self) -> list[Any]:
        from sqlalchemy.orm import Session

        from shoestring.ledger.runs import RunRecord

        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.scalars(select(RunRecord).order_by(RunRecord.started_at.desc())
                                  .limit(MAX_RUNS)))

    def run_dir(self, run_id: str) -> Path | None:
        from sqlalchemy.orm import Session

        from shoestring.ledger.runs import RunRecord

        with Session(self.engine) as s:
            row = s.get(RunRecord, run_id)
            if row is None:
                return None
            path = Path(row.out_dir)
            return path if path.is_absolute() else self.workspace / path

    # --- pages ------------------------------------------------------------------------------
    def _page(self, title: str, subtitle: str, sections) -> str:
        return h.page(title, subtitle, sections, f"shoestring ui · {self.now():%Y-%m-%d %H:%M} "
                      "UTC · read-only view of the ledger", csp=DASHBOARD_CSP, links=LINKS)

    def runs_page(self) -> str:
        rows = self.runs()
        if not rows:
            body = "<p>No runs in this ledger yet: try <code>shoestring quickstart</code>.</p>"
        else:
            trs = []
            for r in rows:
                m = r.metrics
                metric = next((f"{k} {m[k]:.4f}" for k in ("test_accuracy", "test_mse",
                                                          "val_loss") if m.get(k) is not None),
                              "")
                trs.append(
                    f'<tr><td><input type="checkbox" name="id" value="{h.esc(r.id)}" '
                    f'aria-label="compare {h.esc(r.name)}"></td>'
                    f'<td><a href="/runs/{h.esc(r.id)}">{h.esc(r.name)}</a></td>'
                    + "".join(f"<td>{h.esc(h.fmt(v))}</td>" for v in (
                        r.kind, r.status, r.model, short_source(r.data),
                        r.started_at[:16].replace("T", " ")))
                    + "".join(f'<td class="num">{h.esc(h.fmt(v))}</td>' for v in (
                        r.wall_seconds, r.cost_usd))
                    + f"<td>{h.esc(metric)}</td></tr>")
            head = "".join(f"<th>{c}</th>" for c in ("", "run", "kind", "status", "model",
                                                     "data", "started", "seconds", "cost $",
                                                     "metric"))
            body = ('<form method="get" action="/compare"><div class="scroll"><table><thead>'
                    f"<tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table></div>"
                    '<button type="submit">compare the ticked runs</button></form>')
        return self._page("Shoestring: runs", f"{len(rows)} latest runs in the ledger",
                          [("runs", "Runs", body)])

    def report_page(self, run_ids: list[str]) -> tuple[int, str]:
        from shoestring.report.api import render_report
        from shoestring.report.run_view import read_run

        views = []
        for rid in run_ids:
            path = self.run_dir(rid)
            if path is None:
                return 404, self._message("No such run", f"no run with id {rid!r} in the "
                                          "ledger")
            try:
                views.append(read_run(path))
            except ShoestringError as exc:
                return 404, self._message("Run folder unavailable",
                                          f"{exc.message} (the ledger says the run's folder "
                                          f"is {path}; is the dashboard started in the "
                                          "workspace the run was trained in?)")
        return 200, render_report(views, now=self.now(), csp=DASHBOARD_CSP, links=LINKS)

    def serving_page(self, month: str | None) -> tuple[int, str]:
        from shoestring.report.serving_page import serving_sections

        period = month or f"{self.now():%Y-%m}"
        try:
            datetime.strptime(period, "%Y-%m")
        except ValueError:
            return 400, self._message("Bad month", f"month {period!r} is not YYYY-MM")
        return 200, self._page(f"Shoestring: serving, {period}",
                               "usage, quotas, invoices and latency from the ledger's "
                               "metered requests",
                               serving_sections(self.engine, period, self.plan_quotas))

    def login_page(self, failed: bool = False) -> str:
        note = h.notes(["that token is not an active admin token"]) if failed else ""
        form = ('<form method="post" action="/login"><label>Admin token '
                '<input type="password" name="token" autocomplete="off" size="50"></label> '
                '<button type="submit">sign in</button></form>')
        return self._page("Shoestring: sign in", "this dashboard shows billing data: an admin "
                          "token is required ('shoestring ui token create')",
                          [("login", "Sign in", note + form)])

    def _message(self, title: str, text: str) -> str:
        return self._page(f"Shoestring: {title}", "", [("message", title,
                                                         f"<p>{h.esc(text)}</p>")])


def create_app(dash: Dashboard):
    """The Starlette application serving ``dash``'s pages."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    from shoestring.report.admin_tokens import AdminTokens

    tokens = AdminTokens(dash.engine)

    def authorized(request: Request) -> bool:
        if not dash.require_token:
            return True
        auth = request.headers.get("authorization", "")
        secret = auth[7:].strip() if auth.lower().startswith("bearer ") else \
            request.cookies.get(COOKIE)
        return tokens.check(secret)

    def html(status: int, text: str) -> Response:
        return HTMLResponse(text, status_code=status, headers={
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})

    def guarded(page: Callable[[Request], tuple[int, str]]):
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return html(401, dash.login_page())
            from starlette.concurrency import run_in_threadpool

            status, text = await run_in_threadpool(page, request)
            return html(status, text)
        return endpoint

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return html(200, dash.login_page())
        # One urlencoded field: parsed here rather than through python-multipart.
        from urllib.parse import parse_qs

        body = (await request.body())[:4096].decode("utf-8", "replace")
        secret = (parse_qs(body).get("token") or [""])[0].strip()
        if not tokens.check(secret):
            return html(401, dash.login_page(failed=True))
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, secret, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    routes = [
        Route("/", guarded(lambda r: (200, dash.runs_page()))),
        Route("/runs/{run_id}", guarded(lambda r: dash.report_page([r.path_params["run_id"]]))),
        Route("/compare", guarded(lambda r: dash.report_page(r.query_params.getlist("id"))
                                  if r.query_params.getlist("id") else
                                  (400, dash._message("Nothing to compare",
                                                      "tick two or more runs")))),
        Route("/serving", guarded(lambda r: dash.serving_page(r.query_params.get("month")))),
        Route("/login", login, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes)
