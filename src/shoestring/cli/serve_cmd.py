"""``shoestring serve``, ``keys``, ``projects``, ``usage``, ``usage-export``, ``invoice``,
``license`` (CLI only: each command calls one library function and renders it)."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import click

from shoestring.cli.command import Command, Group
from shoestring.cli.context import CliContext, cli_context
from shoestring.cli.flags import config_flags

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

# Fields of ServeConfig that are not generated flags (positional, or the shared --db).
_NOT_FLAGS = {"models", "db"}


def _c(ctx: click.Context) -> CliContext:
    return cli_context(ctx)


def _split_name(value: str) -> tuple[str, str | None]:
    name, _, version = value.partition(":")
    return name, version or None


def serve_command() -> click.Command:
    from shoestring.serve.config import ServeConfig

    flags = config_flags(ServeConfig, skip=_NOT_FLAGS)

    @click.pass_context
    def callback(ctx: click.Context, run_dirs: tuple[Path, ...], names: tuple[str, ...],
                 **params) -> None:
        from shoestring.errors import ShoestringError
        from shoestring.serve.config import resolve_serve_config
        from shoestring.serve.server import run_server

        c = _c(ctx)
        if len(names) > len(run_dirs):
            raise ShoestringError(f"{len(names)} --name given for {len(run_dirs)} RUN_DIR(s)",
                                  hint="give at most one --name per RUN_DIR, in order")
        models = []
        for i, run_dir in enumerate(run_dirs):
            name, version = _split_name(names[i]) if i < len(names) else (None, None)
            models.append({"run_dir": run_dir, "name": name, "version": version})
        cfg = resolve_serve_config({"models": models, "db": c.db_url(), **flags.values(params)})

        def announce(url: str) -> None:
            names_ = ", ".join(m.name or Path(m.run_dir).resolve().name for m in cfg.models)
            click.echo(f"Serving {names_} at {url} (ledger {cfg.summary()['db']}; "
                       f"{'keys required' if cfg.auth else 'open, not metered'})", err=False)
            sys.stdout.flush()

        run_server(cfg, announce=announce)

    params = [click.Argument(["run_dirs"], nargs=-1, required=True,
                             type=click.Path(path_type=Path)),
              click.Option(["--name", "names"], multiple=True,
                           help="NAME[:VERSION] of each RUN_DIR, in order"),
              *flags.params]
    return Command("serve", callback=callback, params=params, help=SERVE_HELP,
                   short_help="Serve models with API keys, batching and metering.")


# -- keys and projects ------------------------------------------------------------------------

def _key_store(c: CliContext, plans: Path | None, *, create: bool = True):
    from shoestring.serve.keys import KeyStore
    from shoestring.serve.plans import load_plans

    return KeyStore(c.engine(create=create), load_plans(plans))


_PLANS = click.option("--plans", type=click.Path(path_type=Path), default=None,
                      help="plans TOML (default: the shipped free/pro/enterprise)")


@click.group("keys", cls=Group, help="Create, list and revoke API keys (stored as SHA-256 hashes).")
def keys_group() -> None:
    pass


@keys_group.command("create", cls=Command)
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
    secret, info = _key_store(c, plans).create(
        project=project, plan=plan, label=label, monthly_quota_units=monthly_quota)
    if as_json:
        click.echo(json.dumps({"key": secret, **info.to_dict()}))
        return
    click.echo(secret)
    c.err.print(f"Key {info.id} for project {project!r} on plan {plan!r}. Store it now: only its "
                "hash is kept.")


@keys_group.command("list", cls=Command)
@click.option("--project", default=None, help="only this project's keys")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def keys_list(ctx, project, as_json) -> None:
    """List keys (prefix, project, plan, state); secrets are never shown."""
    c = _c(ctx)
    rows = [k.to_dict() for k in _key_store(c, None, create=False).list(project)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    from shoestring.cli.views import print_keys

    print_keys(c.out, rows)


@keys_group.command("revoke", cls=Command)
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx, key_id) -> None:
    """Revoke a key by id or shown prefix; servers refuse it within their key cache time."""
    c = _c(ctx)
    info = _key_store(c, None).revoke(key_id)
    c.out.print(f"Revoked {info.id} ({info.prefix}…) of project {info.project!r}.")


@click.group("projects", cls=Group, help="Project settings (monthly budgets).")
def projects_group() -> None:
    pass


@projects_group.command("budget", cls=Command)
@click.option("--project", required=True)
@click.option("--monthly-usd", type=float, default=None, help="cap; omit to remove the cap")
@click.pass_context
def projects_budget(ctx, project, monthly_usd) -> None:
    """Cap what a project's keys may spend per month; requests beyond it get 429."""
    c = _c(ctx)
    _key_store(c, None).set_budget(project, monthly_usd)
    c.out.print(f"Project {project!r}: monthly budget "
                f"{'unlimited' if monthly_usd is None else f'${monthly_usd:,.2f}'}.")


# -- usage, export, invoices ------------------------------------------------------------------

def _engine(c: CliContext):
    """The ledger, for the read-only usage commands: never created empty."""
    return c.engine(create=False)


def _warn_unknown_project(c: CliContext, engine, project: str) -> None:
    """A typo'd project reads as zero usage; say that no such project exists."""
    from shoestring.serve.usage import project_names

    known = project_names(engine)
    if project not in known:
        from difflib import get_close_matches

        close = get_close_matches(project, known, n=1)
        c.warn(f"no project named {project!r} in the ledger"
               + (f"; did you mean {close[0]!r}?" if close else
                  f" (projects: {', '.join(known) or 'none yet'})"))


@click.command("usage", cls=Command)
@click.option("--project", required=True)
@click.option("--month", default=None, help="YYYY-MM (default: this month, UTC)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def usage_cmd(ctx, project, month, as_json) -> None:
    """Requests, units and cost of a project in a month, per key."""
    c = _c(ctx)

    from shoestring.serve.usage import check_period, usage_summary, utc_now

    engine = _engine(c)
    s = usage_summary(engine, project, check_period(month, utc_now))
    _warn_unknown_project(c, engine, project)
    if as_json:
        click.echo(json.dumps(s))
        return
    from shoestring.cli.views import print_usage

    print_usage(c.out, project, s)


@click.command("usage-export", cls=Command)
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

    n = go()
    # With --out -, standard output holds the events alone.
    (c.err if to_stdout else c.out).print(
        f"Wrote {n} CloudEvents to {'standard output' if to_stdout else out}.", highlight=False)


@click.command("usage-replay", cls=Command)
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

    replica, n = go()
    c.out.print(f"Recorded {n} usage events of replica {replica} from {usage_log}; its leases "
                "are free.")


@click.command("invoice", cls=Command)
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

    inv = go()
    if as_json:
        click.echo(json.dumps(inv))
        return
    from shoestring.cli.views import print_invoice

    print_invoice(c.out, project, inv)


# -- licenses ---------------------------------------------------------------------------------

@click.group("license", cls=Group, help="Ed25519-signed licenses for on-premises customers.")
def license_group() -> None:
    pass


@license_group.command("keygen", cls=Command)
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

    go()
    c.out.print(f"Signing key {private} (keep secret), public key {public}.")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@license_group.command("issue", cls=Command)
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

    go()
    c.out.print(f"License for {customer} ({models}, until {expires.date()}) written to {out}.")


@license_group.command("verify", cls=Command)
@click.argument("license_file", type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(path_type=Path), required=True)
@click.pass_context
def license_verify(ctx, license_file, public_key) -> None:
    """Check a license offline: signature, format and expiry."""
    c = _c(ctx)

    def go():
        from shoestring.serve.licenses import verify_license

        return verify_license(license_file, public_key, date.today())

    lic = go()
    c.out.print(f"Valid license for {lic.customer}: models {', '.join(lic.models)}, "
                f"features {', '.join(lic.features) or '-'}, expires {lic.expires}.")


@license_group.command("pin", cls=Command)
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

    for out in go():
        c.out.print(f"Pinned the vendor key into {out}.")


def register(group: click.Group) -> None:
    """Add the serving commands to the ``shoestring`` command group."""
    group.add_command(serve_command(), "serve")
    for cmd in (keys_group, projects_group, usage_cmd, usage_export_cmd, usage_replay_cmd,
                invoice_cmd, license_group):
        group.add_command(cmd)
