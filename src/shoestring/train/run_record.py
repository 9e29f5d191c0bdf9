"""The run's row in the ledger: which ledger a run records into, and the row itself from
the moment it opens until it is finished or failed (with the wall time really spent)."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shoestring.errors import ShoestringError
from shoestring.ledger.location import resolve_db_url
from shoestring.ledger.money import usd_to_nano
from shoestring.ledger.runs import RunLedger
from shoestring.train.distributed import DistInfo
from shoestring.train.stopping import cost_usd


@contextmanager
def open_run_ledger(ledger: RunLedger | str | None, info: DistInfo, environ: Mapping[str, str],
                    workspace: Path) -> Iterator[RunLedger | None]:
    """The ledger rank 0 records into (opened here, and closed, when given by URL)."""
    if not info.is_main or ledger is None:
        yield None
    elif isinstance(ledger, str):
        opened = RunLedger(resolve_db_url(None, environ, workspace) if ledger == "auto"
                           else ledger)
        try:
            yield opened
        finally:
            opened.close()
    else:
        yield ledger


def error_text(exc: BaseException) -> str:
    if isinstance(exc, ShoestringError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class LedgerRow:
    """The run's ledger row, from the moment it opens: finished, or failed with its message
    and the wall time really spent (not only up to the last checkpoint)."""

    def __init__(self, ledger: RunLedger | None, clock: Callable[[], float],
                 elapsed_before: float, price_per_hour: float) -> None:
        self.ledger, self.clock, self.price = ledger, clock, price_per_hour
        self.started, self.elapsed_before = clock(), elapsed_before
        self.id: str | None = None

    def open(self, **fields: Any) -> str | None:
        if self.ledger is not None:
            self.id = self.ledger.start(price_per_hour_nano_usd=usd_to_nano(self.price),
                                        **fields)
        return self.id

    def fail(self, exc: BaseException) -> None:
        if self.id is None:
            return
        wall = self.elapsed_before + (self.clock() - self.started)
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self.ledger.finish(self.id, status=status, metrics={}, wall_seconds=wall,
                           cost_nano_usd=usd_to_nano(cost_usd(wall, self.price)),
                           stop_reason="interrupted" if status == "interrupted" else "error",
                           error=error_text(exc))

    def finish(self, summary: dict[str, Any]) -> None:
        if self.id is not None:
            self.ledger.finish(self.id, status=summary["status"], metrics=summary,
                               wall_seconds=summary["train_seconds"],
                               cost_nano_usd=summary["cost_nano_usd"],
                               stop_reason=summary["stop_reason"])


