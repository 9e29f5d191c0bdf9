"""``shoestring serve``, ``keys``, ``projects``, ``usage``, ``usage-export``, ``invoice``,
``license`` (CLI only: each command calls one library function and renders it)."""

from __future__ import annotations

import json
import sys
import types
import typing
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from shoestring.cli.context import CliContext
from shoestring.cli.errors import guarded

SERVE_HELP = """Serve run folders over the Open Inference Protocol v2 (KServe REST).

Each RUN_DIR is a folder written by 'shoestring train'; its model's name is the
folder's name unless --name NAME[:VERSION] (once per RUN_DIR, in order) says
otherwise. Requests need 'Authorization: Bearer KEY' (see 'shoestring keys
create') unless --no-auth; usage is metered exactly once per request.

\b
Examples:
  shoestring serve runs/digits --port 8000
  shoestring serve runs/a runs/b --name digits:1 --name digits:2 --adaptive
  shoestring --db postgresql://u:p@db/shoestring serve runs/digits --host 0.0.0.0
"""

# Fields of ServeConfig that are not generated flags (positional or shared).
_NOT_FLAGS = {"models", "db"}


def _c(ctx: click.Context) -> CliContext:
    return ctx.find_object(CliContext) or ctx.ensure_object(CliContext)


def _inner(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _config_options() -> list[click.Option]:
    """One flag per ServeConfig field: the config stays the single source of truth."""
    from shoestring.serve.config import ServeConfig

    opts = []
    for name, info in ServeConfig.model_fields.items():
        if name in _NOT_FLAGS:
            continue
        flag = name.replace("_", "-")
        kind = _inner(info.annotation)
        if kind is bool:
            opts.append(click.Option([f"--{flag}/--no-{flag}", name], default=None,
                                     help=f"{info.description} (default: {info.default})"))
        else:
            ptype = click.Choice(typing.get_args(kind)) if typing.get_origin(kind) is \
                typing.Literal else {int: int, float: float, str: str}.get(
                    kind, click.Path(path_type=Path))
            opts.append(click.Option([f"--{flag}", name], type=ptype, default=None,
                                     help=f"{info.description} (default: {info.default})"))
    return opts


def _split_name(value: str) -> tuple[str, str | None]:
    name, _, version = value.partition(":")
    return name, version or None


def serve_command() -> click.Command:
    @click.pass_context
    def callback(ctx: click.Context, run_dirs: tuple[Path, ...], names: tuple[str, ...],
                 db: str | None, **flags) -> None:
        c = _c(ctx)

        def go():
            from shoestring.serve.config import resolve_serve_config
            from shoestring.serve.server import run_server

            if len(names) > len(run_dirs):
                from shoestring.errors import ShoestringError

                raise ShoestringError(f"{len(names)} --name given for {len(run_dirs)} RUN_DIR(s)",
                                      hint="give at most one --name per RUN_DIR, in order")
            models = []
            for i, run_dir in enumerate(run_dirs):
                name, version = _split_name(names[i]) if i < len(names) else (None, None)
                models.append({"run_dir": run_dir, "name": name, "version": version})
            values = {k: v for k, v in flags.items() if v is not None}
            cfg = resolve_serve_config({"models": models, "db": db or c.db_url(), **values})

            def announce(url: str) -> None:
                names_ = ", ".join(m.name or Path(m.run_dir).resolve().name for m in cfg.models)
                click.echo(f"Serving {names_} at {url} (ledger {cfg.summary()['db']}; "
                           f"{'keys required' if cfg.auth else 'open, not metered'})",
                           err=False)
                sys.stdout.flush()

            run_server(cfg, announce=announce)

        guarded(c.err, c.debug, go)

    params = [click.Argument(["run_dirs"], nargs=-1, required=True,
                             type=click.Path(path_type=Path)),
              click.Option(["--name", "names"], multiple=True,
                           help="NAME[:VERSION] of each RUN_DIR, in order"),
              click.Option(["--db"], default=None, help="usage ledger URL (default: the global "
                           "--db, $SHOESTRING_DB, else the workspace SQLite file)"),
              *_config_options()]
    return click.Command("serve", callback=callback, params=params, help=SERVE_HELP,
                         short_help="Serve models with API keys, batching and metering.")


# -- keys and projects ------------------------------------------------------------------------

def _key_store(c: CliContext, plans: Path | None):
    from shoestring.ledger.db import open_ledger
    from shoestring.serve.keys import KeyStore
    from shoestring.serve.plans import load_plans

    return KeyStore(open_ledger(c.db_url()), load_plans(plans))


_PLANS = click.option("--plans", type=click.Path(path_type=Path), default=None,
                      help="plans TOML (default: the shipped free/pro/enterprise)")


@click.group("keys", help="Create, list and revoke API keys (stored as SHA-256 hashes).")
def keys_group() -> None:
    pass


@keys_group.command("create")
@click.option("--project", required=True, help="project the key bills to")
@click.option("--plan", default="free", show_default=True, help="plan name")
@click.option("--label", default="", help="a note, e.g. the customer's app")
@click.option("--monthly-quota", type=int, default=None, help="units a month (default: the "
              "plan's)")
@_PLANS
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def keys_create(ctx, project, plan, label, monthly_quota, plans, as_json) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    c = _c(ctx)
    secret, info = guarded(c.err, c.debug, lambda: _key_store(c, plans).create(
        project=project, plan=plan, label=label, monthly_quota_units=monthly_quota))
    if as_json:
        click.echo(json.dumps({"key": secret, **info.to_dict()}))
        return
    click.echo(secret)
    c.err.print(f"Key {info.id} for project {project!r} on plan {plan!r}. Store it now: only its "
                "hash is kept.")


@keys_group.command("list")
@click.option("--project", default=None, help="only this project's keys")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def keys_list(ctx, project, as_json) -> None:
    """List keys (prefix, project, plan, state); secrets are never shown."""
    c = _c(ctx)
    rows = guarded(c.err, c.debug, lambda: [k.to_dict() for k in _key_store(c, None).list(
        project)])
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="API keys")
    for col in ("id", "prefix", "project", "plan", "quota", "created", "state"):
        table.add_column(col)
    for k in rows:
        table.add_row(k["id"], k["prefix"] + "…", k["project"], k["plan"],
                      str(k["monthly_quota_units"] or "plan"), k["created_at"],
                      "active" if k["active"] else f"revoked {k['revoked_at']}")
    c.out.print(table)


@keys_group.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx, key_id) -> None:
    """Revoke a key by id or shown prefix; servers refuse it within their key cache time."""
    c = _c(ctx)
    info = guarded(c.err, c.debug, lambda: _key_store(c, None).revoke(key_id))
    c.out.print(f"Revoked {info.id} ({info.prefix}…) of project {info.project!r}.")


@click.group("projects", help="Project settings (monthly budgets).")
def projects_group() -> None:
    pass


@projects_group.command("budget")
@click.option("--project", required=True)
@click.option("--monthly-usd", type=float, default=None, help="cap; omit to remove the cap")
@click.pass_context
def projects_budget(ctx, project, monthly_usd) -> None:
    """Cap what a project's keys may spend per month; requests beyond it get 429."""
    c = _c(ctx)
    guarded(c.err, c.debug, lambda: _key_store(c, None).set_budget(project, monthly_usd))
    c.out.print(f"Project {project!r}: monthly budget "
                f"{'unlimited' if monthly_usd is None else f'${monthly_usd:,.2f}'}.")


# -- usage, export, invoices ------------------------------------------------------------------

def _engine(c: CliContext):
    from shoestring.ledger.db import open_ledger

    return open_ledger(c.db_url())


@click.command("usage")
@click.option("--project", required=True)
@click.option("--month", default=None, help="YYYY-MM (default: this month, UTC)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def usage_cmd(ctx, project, month, as_json) -> None:
    """Requests, units and cost of a project in a month, per key."""
    c = _c(ctx)

    def go():
        from shoestring.serve.usage import check_period, usage_summary, utc_now

        return usage_summary(_engine(c), project, check_period(month, utc_now))

    s = guarded(c.err, c.debug, go)
    if as_json:
        click.echo(json.dumps(s))
        return
    table = Table(title=f"usage of {project} in {s['month']}")
    for col in ("key", "requests", "units", "cost $"):
        table.add_column(col, justify="left" if col == "key" else "right")
    for k in s["keys"]:
        table.add_row(f"{k['prefix']}… ({k['key_id']})", str(k["requests"]), str(k["units"]),
                      f"{k['cost_usd']:.4f}")
    table.add_row("total", str(s["requests"]), str(s["units"]), f"{s['cost_usd']:.4f}")
    c.out.print(table)


@click.command("usage-export")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="JSON-lines file (folders are created), or - for standard output")
@click.option("--project", default=None, help="only this project")
@click.option("--month", default=None, help="only this YYYY-MM")
@click.option("--source", default="shoestring/serve", show_default=True,
              help="CloudEvents 'source' attribute")
@click.pass_context
def usage_export_cmd(ctx, out, project, month, source) -> None:
    """Write usage events as CloudEvents JSON lines (ids double as idempotency keys)."""
    c = _c(ctx)
    to_stdout = str(out) == "-"

    def go():
        from shoestring.serve.usage import (
            check_period,
            cloudevent_lines,
            export_cloudevents,
            utc_now,
        )

        period = check_period(month, utc_now) if month else None
        if to_stdout:
            lines = cloudevent_lines(_engine(c), project=project, period=period, source=source)
            for line in lines:
                click.echo(line)
            return len(lines)
        return export_cloudevents(_engine(c), out, project=project, period=period, source=source)

    n = guarded(c.err, c.debug, go)
    # With --out -, standard output holds the events alone.
    (c.err if to_stdout else c.out).print(
        f"Wrote {n} CloudEvents to {'standard output' if to_stdout else out}.", highlight=False)


@click.command("usage-replay")
@click.option("--usage-log", type=click.Path(path_type=Path, exists=True, file_okay=False),
              required=True, help="the usage-log directory of a stopped server")
@click.pass_context
def usage_replay_cmd(ctx, usage_log) -> None:
    """Record a stopped server's usage log in the ledger and free its quota leases.

    A server does this itself when it starts again on the same --usage-log; use
    this for a replica that will not return (a removed pod's volume)."""
    c = _c(ctx)

    def go():
        from shoestring.ledger.db import open_ledger
        from shoestring.serve.reconciler import replay_usage_log

        return replay_usage_log(usage_log, open_ledger(c.db_url()))

    replica, n = guarded(c.err, c.debug, go)
    c.out.print(f"Recorded {n} usage events of replica {replica} from {usage_log}; its leases "
                "are free.")


@click.command("invoice")
@click.option("--project", required=True)
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def invoice_cmd(ctx, project, month, as_json) -> None:
    """A per-plan, per-model statement of a project's month."""
    c = _c(ctx)

    def go():
        from shoestring.serve.usage import check_period, invoice, utc_now

        return invoice(_engine(c), project, check_period(month, utc_now))

    inv = guarded(c.err, c.debug, go)
    if as_json:
        click.echo(json.dumps(inv))
        return
    table = Table(title=f"Invoice: {project}, {inv['month']}")
    for col in ("plan", "model", "requests", "units", "$ / 1000 units", "amount $"):
        table.add_column(col, justify="left" if col in ("plan", "model") else "right")
    for ln in inv["lines"]:
        table.add_row(ln["plan"], ln["model"], str(ln["requests"]), str(ln["units"]),
                      f"{ln['price_per_1000_units_usd']:.4f}", f"{ln['amount_usd']:.4f}")
    table.add_row("total", "", "", "", "", f"{inv['total_usd']:.4f}")
    c.out.print(table)


# -- licenses ---------------------------------------------------------------------------------

@click.group("license", help="Ed25519-signed licenses for on-premises customers.")
def license_group() -> None:
    pass


@license_group.command("keygen")
@click.option("--private", "private", type=click.Path(path_type=Path), required=True,
              help="where to write the signing key (kept secret, mode 600)")
@click.option("--public", "public", type=click.Path(path_type=Path), required=True,
              help="where to write the public key (ships with the software)")
@click.pass_context
def license_keygen(ctx, private, public) -> None:
    """Create a signing key pair."""
    c = _c(ctx)

    def go():
        from shoestring.serve.licenses import generate_keypair

        if private.exists():
            from shoestring.errors import ShoestringError

            raise ShoestringError(f"'{private}' exists; refusing to overwrite a signing key",
                                  hint="choose another path or delete it on purpose")
        generate_keypair(private, public)

    guarded(c.err, c.debug, go)
    c.out.print(f"Signing key {private} (keep secret), public key {public}.")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@license_group.command("issue")
@click.option("--customer", required=True)
@click.option("--models", required=True, help="comma-separated model names ('*' for all)")
@click.option("--expires", required=True, type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD")
@click.option("--features", default="", help="comma-separated feature flags")
@click.option("--signing-key", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("license.json"),
              show_default=True)
@click.pass_context
def license_issue(ctx, customer, models, expires, features, signing_key, out) -> None:
    """Write a signed license file."""
    c = _c(ctx)

    def go():
        from shoestring.serve.licenses import License, issue_license

        lic = License(customer=customer, models=_csv(models), expires=expires.date(),
                      features=_csv(features), issued=date.today())
        return issue_license(lic, signing_key, out)

    guarded(c.err, c.debug, go)
    c.out.print(f"License for {customer} ({models}, until {expires.date()}) written to {out}.")


@license_group.command("verify")
@click.argument("license_file", type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(path_type=Path), required=True)
@click.pass_context
def license_verify(ctx, license_file, public_key) -> None:
    """Check a license offline: signature, format and expiry."""
    c = _c(ctx)

    def go():
        from shoestring.serve.licenses import verify_license

        return verify_license(license_file, public_key, date.today())

    lic = guarded(c.err, c.debug, go)
    c.out.print(f"Valid license for {lic.customer}: models {', '.join(lic.models)}, "
                f"features {', '.join(lic.features) or '-'}, expires {lic.expires}.")


@license_group.command("pin")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(path_type=Path), required=True,
              help="the vendor's public key (from 'license keygen')")
@click.pass_context
def license_pin(ctx, run_dirs, public_key) -> None:
    """Pin the vendor key into run folders you ship: they then serve only with a license
    signed by it, and 'serve --public-key' cannot replace it."""
    c = _c(ctx)

    def go():
        from shoestring.serve.licenses import pin_public_key

        return [pin_public_key(public_key, d) for d in run_dirs]

    for out in guarded(c.err, c.debug, go):
        c.out.print(f"Pinned the vendor key into {out}.")


def register(group: click.Group) -> None:
    """Add the serving commands to the ``shoestring`` command group."""
    group.add_command(serve_command(), "serve")
    for cmd in (keys_group, projects_group, usage_cmd, usage_export_cmd, usage_replay_cmd,
                invoice_cmd, license_group):
        group.add_command(cmd)
