"""``shoestring ui`` and ``shoestring ui token …`` (CLI only: parse, wire the ledger and
the serving plans into :mod:`shoestring.report.dashboard`, run the server)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoestring.cli.context import CliContext
from shoestring.cli.errors import guarded

HELP = """The team dashboard: runs and serving, live from the ledger, in a browser.

\b
Pages: /            the ledger's runs (tick several to compare them)
       /runs/ID     a run's report (the page 'shoestring report' writes)
       /serving     usage per project and key per day, quota use, invoices,
                    latency percentiles (?month=YYYY-MM)

The dashboard only reads the ledger. It binds to 127.0.0.1 unless --host
says otherwise; beyond loopback it shows billing data to the network, so
every request then needs an admin token: create one with
'shoestring ui token create' (shown once, stored hashed) and sign in with it
in the browser, or send 'Authorization: Bearer TOKEN'. Run folders the
ledger records with relative paths are looked up from the current folder.

\b
Examples:
  shoestring ui                                  # http://127.0.0.1:8765/
  shoestring ui token create --label "team laptop"
  shoestring ui --host 0.0.0.0 --port 8080       # needs an admin token
"""


def _ctx(ctx: click.Context) -> CliContext:
    return ctx.find_object(CliContext) or CliContext()


@click.group("ui", help=HELP, invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (beyond loopback, an admin token is required).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0: any free port).")
@click.option("--plans", "plans_file", type=click.Path(path_type=Path), default=None,
              help="The serving plans TOML, for plan quotas (default: the shipped plans).")
@click.pass_context
def ui_group(ctx: click.Context, host: str, port: int, plans_file: Path | None) -> None:
    if ctx.invoked_subcommand is not None:
        return
    c = _ctx(ctx)

    def prepare():
        from shoestring.errors import ShoestringError
        from shoestring.report.admin_tokens import AdminTokens
        from shoestring.report.dashboard import Dashboard, create_app, is_loopback, read_only_engine
        from shoestring.serve.plans import load_plans

        quotas = {n: p.monthly_quota_units for n, p in load_plans(plans_file).items()}
        engine = read_only_engine(c.db_url())
        loopback = is_loopback(host)
        if not loopback and not AdminTokens(engine).any_active():
            raise ShoestringError(
                f"--host {host} is beyond loopback and the ledger has no admin token",
                hint="create one with 'shoestring ui token create' (the dashboard shows "
                "billing data), or bind to 127.0.0.1")
        dash = Dashboard(engine, c.workspace, require_token=not loopback, plan_quotas=quotas)
        return create_app(dash)

    app = guarded(c.err, c.debug, prepare)
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    c.out.print(f"Dashboard on http://{shown}:{port}/ (read-only; Ctrl+C stops it)",
                highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)


@ui_group.group("token", help="Admin tokens for a dashboard bound beyond loopback.")
def token_group() -> None:
    pass


@token_group.command("create")
@click.option("--label", default="", help="Who or what the token is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_create(ctx: click.Context, label: str, as_json: bool) -> None:
    """Create an admin token; it is shown once and stored only as a hash."""
    c = _ctx(ctx)

    def go():
        from shoestring.ledger.db import open_ledger
        from shoestring.report.admin_tokens import AdminTokens

        return AdminTokens(open_ledger(c.db_url())).create(label)

    secret, info = guarded(c.err, c.debug, go)
    if as_json:
        c.out.print_json(json.dumps({**info, "token": secret}))
        return
    c.out.print(f"Admin token {info['id']} ({info['label'] or 'no label'}):", highlight=False)
    c.out.print(secret, highlight=False, soft_wrap=True)
    c.err.print("Shown once: store it now; the ledger keeps only its hash.", highlight=False)


@token_group.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List admin tokens (prefixes only)."""
    c = _ctx(ctx)

    def go():
        from shoestring.ledger.db import open_ledger
        from shoestring.report.admin_tokens import AdminTokens

        return AdminTokens(open_ledger(c.db_url(), create=False)).list()

    rows = guarded(c.err, c.debug, go)
    for r in rows:
        state = "active" if r["active"] else f"revoked {r['revoked_at']}"
        c.out.print(f"{r['id']}  {r['prefix']}…  {r['created_at']}  {state}  {r['label']}",
                    highlight=False)
    if not rows:
        c.out.print("No admin tokens: 'shoestring ui token create' makes one.")


@token_group.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke an admin token by its id (see 'shoestring ui token list')."""
    c = _ctx(ctx)

    def go():
        from shoestring.ledger.db import open_ledger
        from shoestring.report.admin_tokens import AdminTokens

        AdminTokens(open_ledger(c.db_url(), create=False)).revoke(token_id)

    guarded(c.err, c.debug, go)
    c.out.print(f"Revoked {token_id}.")


def register(group: click.Group) -> None:
    """Add ``ui`` to the ``shoestring`` command group."""
    group.add_command(ui_group, "ui")
