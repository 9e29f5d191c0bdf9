"""``shoestring ui`` and ``shoestring ui token …`` (CLI only: flags from
:class:`~shoestring.report.dashboard.UiConfig`, the ledger and the serving plans wired
into :mod:`shoestring.report.dashboard`, the server run)."""

from __future__ import annotations

import json

import click

from shoestring.cli.command import Group
from shoestring.cli.context import cli_context
from shoestring.cli.flags import config_flags

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


def _serve(ctx: click.Context, config) -> None:
    import uvicorn

    from shoestring.errors import ShoestringError
    from shoestring.report.admin_tokens import AdminTokens
    from shoestring.report.dashboard import Dashboard, create_app, is_loopback, read_only_engine
    from shoestring.serve.plans import load_plans

    c = cli_context(ctx)
    quotas = {n: p.monthly_quota_units for n, p in load_plans(config.plans).items()}
    engine = read_only_engine(c.db_url())
    loopback = is_loopback(config.host)
    if not loopback and not AdminTokens(engine).any_active():
        raise ShoestringError(
            f"--host {config.host} is beyond loopback and the ledger has no admin token",
            hint="create one with 'shoestring ui token create' (the dashboard shows billing "
            "data), or bind to 127.0.0.1")
    app = create_app(Dashboard(engine, c.workspace, require_token=not loopback,
                               plan_quotas=quotas))
    shown = f"[{config.host}]" if ":" in config.host else config.host
    c.out.print(f"Dashboard on http://{shown}:{config.port}/ (read-only; Ctrl+C stops it)",
                highlight=False)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                server_header=False)


def _ui_group() -> click.Group:
    from shoestring.report.dashboard import UiConfig

    flags = config_flags(UiConfig)

    @click.pass_context
    def ui(ctx: click.Context, **params) -> None:
        if ctx.invoked_subcommand is not None:
            return
        from shoestring.report.dashboard import resolve_ui_config

        _serve(ctx, resolve_ui_config(flags.values(params)))

    group = Group("ui", callback=ui, params=list(flags.params), help=HELP,
                  invoke_without_command=True, short_help="The team dashboard in a browser.")
    group.add_command(token_group)
    return group


@click.group("token", cls=Group)
def token_group() -> None:
    """Admin tokens for a dashboard bound beyond loopback."""


@token_group.command("create")
@click.option("--label", default="", help="Who or what the token is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_create(ctx: click.Context, label: str, as_json: bool) -> None:
    """Create an admin token; it is shown once and stored only as a hash."""
    from shoestring.report.admin_tokens import AdminTokens

    c = cli_context(ctx)
    secret, info = AdminTokens(c.engine()).create(label)
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
    from shoestring.report.admin_tokens import AdminTokens

    c = cli_context(ctx)
    rows = AdminTokens(c.engine(create=False)).list()
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
    from shoestring.report.admin_tokens import AdminTokens

    c = cli_context(ctx)
    AdminTokens(c.engine(create=False)).revoke(token_id)
    c.out.print(f"Revoked {token_id}.")


def register(group: click.Group) -> None:
    """Add ``ui`` to the ``shoestring`` command group."""
    group.add_command(_ui_group(), "ui")
