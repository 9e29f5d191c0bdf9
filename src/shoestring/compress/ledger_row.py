"""The ledger row of a ``compress`` run: kind ``compress``, the parent's id, what it cost.

Opened once the parent has loaded; finished with the chosen candidate's
metrics, or ``failed`` with the reason (no candidate within the budget, or
the error), and the wall time spent either way.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shoestring.errors import ShoestringError
from shoestring.ledger.money import usd_to_nano

PRICE_ENV = "SHOESTRING_PRICE_PER_HOUR"


def _price(environ: Mapping[str, str]) -> float:
    try:
        price = float(environ.get(PRICE_ENV, "") or 0.0)
    except ValueError:
        return 0.0
    return price if price >= 0 else 0.0


class CompressRow:
    def __init__(self, ledger: Any, config: Any, workload: Any, environ: Mapping[str, str],
                 workspace: Path, clock: Callable[[], float]) -> None:
        from shoestring.ledger.db import resolve_db_url
        from shoestring.ledger.runs import RunLedger

        self.owned = None
        if isinstance(ledger, str):
            url = resolve_db_url(None, environ, workspace) if ledger == "auto" else ledger
            ledger = self.owned = RunLedger(url)
        self.ledger, self.config, self.workload = ledger, config, workload
        self.price, self.clock = _price(environ), clock
        self.id: str | None = None
        self.started = clock()
        self.done = False

    def __enter__(self) -> CompressRow:
        if self.ledger is not None:
            w, c = self.workload, self.config
            self.id = self.ledger.start(
                name=c.out.name, model=w.card.architecture.name or w.family,
                data=w.card.data.source or "", out_dir=str(c.out.resolve()),
                config=c.model_dump(mode="json"), device=c.target, kind="compress",
                parent_id=w.run_id, price_per_hour_nano_usd=usd_to_nano(self.price))
        return self

    def _cost(self, wall: float) -> int:
        return usd_to_nano(wall / 3600 * self.price)

    def finish(self, result: Any, wall: float) -> None:
        self.done = True
        if self.id is None:
            return
        table = result.table
        if result.chosen is None:
            self.ledger.finish(self.id, status="failed", metrics={}, wall_seconds=wall,
                               cost_nano_usd=self._cost(wall),
                               stop_reason="no candidate within the accuracy budget")
            return
        row = next(r for r in table["candidates"] if r["chosen"])
        metrics = {table["metric"]: row["metric"], "metric_drop": row["metric_drop"],
                   "size_bytes": row["size_bytes"], "size_ratio": row["size_ratio"],
                   "chosen": result.chosen}
        self.ledger.finish(self.id, status="finished", metrics=metrics, wall_seconds=wall,
                           cost_nano_usd=self._cost(wall), stop_reason=f"chose {result.chosen}")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and self.id is not None and not self.done:
                wall = self.clock() - self.started
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                text = exc.message if isinstance(exc, ShoestringError) else \
                    "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.ledger.finish(self.id, status=status, metrics={}, wall_seconds=wall,
                                   cost_nano_usd=self._cost(wall), stop_reason="error",
                                   error=text)
        finally:
            if self.owned is not None:
                self.owned.close()
