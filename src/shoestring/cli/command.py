"""The one CLI error boundary, and the options every command takes.

Every ``shoestring`` command is a :class:`Command` (and every group a
:class:`Group`): the command body is a plain function that raises; here, and
only here, a :class:`~shoestring.errors.ShoestringError` becomes ``Error: …``
/ ``Hint: …`` and exit code 1, Ctrl-C exit code 130, and anything else an
"unexpected" error with a hint to rerun with ``--debug`` for the traceback.
``--db`` and ``--debug`` work before the command name and after it alike.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from shoestring.cli.context import CliContext, cli_context
from shoestring.errors import ShoestringError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
KEY_FILE_HELP = ("Key file of encrypted run and prepared folders (base64 of 32 bytes, mode "
                 "600; default: $SHOESTRING_ENCRYPTION_KEY). See 'shoestring encryption keygen'.")
DB_HELP = ("Ledger database URL (default: $SHOESTRING_DB, else "
           "sqlite:///./.shoestring/ledger.db).")


def report_error(console: Console, exc: BaseException, debug: bool) -> int:
    """Print ``Error: …`` and ``Hint: …`` (traceback only with --debug); return the exit code."""
    if debug:
        console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    if isinstance(exc, ShoestringError):
        console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
        if exc.hint:
            console.print(f"[bold]Hint:[/] {exc.hint}", highlight=False)
        return EXIT_ERROR
    if isinstance(exc, KeyboardInterrupt):
        console.print("[bold red]Error:[/] interrupted")
        return EXIT_INTERRUPTED
    console.print(f"[bold red]Error:[/] unexpected {type(exc).__name__}: {exc}", highlight=False)
    console.print("[bold]Hint:[/] rerun with --debug for the traceback, and report it if it "
                  "looks like a bug", highlight=False)
    return EXIT_ERROR


def _set_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        cli_context(ctx).db = value


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        cli_context(ctx).debug = True


def _set_key_file(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # Through the environment, so that the workers a command starts (torchrun,
    # server processes) find the key too; the file is read where a key is needed.
    if value is not None:
        os.environ["SHOESTRING_ENCRYPTION_KEY_FILE"] = str(Path(value).expanduser().absolute())


def common_options() -> list[click.Option]:
    """``--db``, ``--debug`` and ``--key-file``, accepted by the group and by every command."""
    return [click.Option(["--db"], default=None, expose_value=False, is_eager=True,
                         callback=_set_db, help=DB_HELP),
            click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                         callback=_set_debug, help="Show tracebacks on errors."),
            click.Option(["--key-file"], default=None, expose_value=False, is_eager=True,
                         metavar="PATH", callback=_set_key_file, help=KEY_FILE_HELP)]


def _guarded(ctx: click.Context, invoke) -> Any:
    try:
        return invoke()
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    except (Exception, KeyboardInterrupt) as exc:
        c = cli_context(ctx)
        sys.stdout.flush()
        ctx.exit(report_error(c.err, exc, c.debug))


class Command(click.Command):
    """A command with ``--db``/``--debug`` and the error boundary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("max_content_width", 100)
        super().__init__(*args, **kwargs)
        self.params.extend(common_options())

    def invoke(self, ctx: click.Context) -> Any:
        return _guarded(ctx, lambda: super(Command, self).invoke(ctx))


class Group(click.Group):
    """A group whose commands (and subgroups) are :class:`Command` and :class:`Group`."""

    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("max_content_width", 100)
        super().__init__(*args, **kwargs)
        self.params.extend(common_options())

    def invoke(self, ctx: click.Context) -> Any:
        ctx.ensure_object(CliContext)
        return _guarded(ctx, lambda: super(Group, self).invoke(ctx))


Group.group_class = Group
