"""The runs table: one row per run (train, compress, fine-tune, audit…), whatever its fate.

A run is inserted as ``running`` when it starts and updated when it finishes,
fails or is interrupted. A run killed with SIGKILL cannot update its row;
:meth:`RunLedger.reconcile` marks ``running`` rows whose process on this host
is gone as ``killed``. A run made from another run (a fine-tune, a compressed
copy) names it in ``parent_id``. Money is integer nano-dollars
(:mod:`shoestring.ledger.money`).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from shoestring.errors import ShoestringError
from shoestring.ledger import sqlite_runs
from shoestring.ledger.location import sqlite_path

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from shoestring.ledger.run_table import RunRecord

STATUSES = ("running", "finished", "budget_exhausted", "interrupted", "failed", "killed")
# What made the run; a new capability adds its own kind here.
KINDS = ("train", "finetune", "compress", "audit", "distill")


def __getattr__(name: str):
    # RunRecord lives in run_table (SQLAlchemy), imported on first use (PEP 562).
    if name == "RunRecord":
        from shoestring.ledger.run_table import RunRecord

        return RunRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLedger:
    """Records runs in the ledger at ``url``.

    ``create=False`` (read-only commands) refuses to create a SQLite ledger
    that does not exist yet (:class:`~shoestring.ledger.db.LedgerMissing`).

    >>> ledger = RunLedger("sqlite:///:memory:")
    >>> run_id = ledger.start(name="demo", model="seed-mlp", data="digits",
    ...                       out_dir="runs/demo", config={})
    >>> ledger.finish(run_id, status="finished", metrics={"test_accuracy": 0.9},
    ...               wall_seconds=1.0, cost_nano_usd=330_000, stop_reason="all epochs done")
    >>> [(r.status, r.cost_usd, r.stop_reason) for r in ledger.list()]
    [('finished', 0.00033, 'all epochs done')]
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._engine: Engine | None = None
        # An up-to-date SQLite file: runs are recorded without SQLAlchemy
        # (shoestring.ledger.sqlite_runs); reads and anything else open the engine.
        path = sqlite_path(url)
        self._plain = path if sqlite_runs.up_to_date_file(path) else None
        if self._plain is None:
            self._open(create)

    def _open(self, create: bool = True) -> Engine:
        from shoestring.ledger.db import open_ledger

        self._engine = open_ledger(self.url, create=create)
        return self._engine

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (opened on first use)."""
        return self._engine if self._engine is not None else self._open()

    def start(self, *, name: str, model: str, data: str, out_dir: str, config: dict[str, Any],
              device: str = "cpu", kind: str = "train", run_id: str | None = None,
              parent_id: str | None = None, price_per_hour_nano_usd: int | None = None) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r} (known: {', '.join(KINDS)})")
        run_id = run_id or str(uuid.uuid4())
        if self._plain is not None:
            sqlite_runs.start_row(self._plain, {
                "id": run_id, "name": name, "kind": kind, "parent_id": parent_id,
                "model": model, "data": data, "out_dir": out_dir,
                "config_json": json.dumps(config), "started_at": _now(),
                "price_per_hour_nano_usd": price_per_hour_nano_usd, "device": device,
                "host": socket.gethostname(), "pid": os.getpid()})
            return run_id
        from sqlalchemy.orm import Session

        from shoestring.ledger.run_table import RunRecord

        with Session(self.engine) as s, s.begin():
            existing = s.get(RunRecord, run_id)
            if existing is not None:  # a resumed run reuses its row
                existing.status = "running"
                existing.pid = os.getpid()
                existing.host = socket.gethostname()
                existing.finished_at = None
                existing.stop_reason = None
                existing.error = None
                return run_id
            s.add(RunRecord(id=run_id, name=name, kind=kind, parent_id=parent_id,
                            status="running", model=model, data=data, out_dir=out_dir,
                            config_json=json.dumps(config), started_at=_now(), device=device,
                            host=socket.gethostname(), pid=os.getpid(),
                            price_per_hour_nano_usd=price_per_hour_nano_usd, cost_nano_usd=0))
        return run_id

    def finish(self, run_id: str, *, status: str, metrics: dict[str, Any], wall_seconds: float,
               cost_nano_usd: int, stop_reason: str | None = None,
               error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        if self._plain is not None:
            if not sqlite_runs.finish_row(self._plain, {
                    "id": run_id, "status": status, "metrics_json": json.dumps(metrics),
                    "wall_seconds": wall_seconds, "cost_nano_usd": int(cost_nano_usd),
                    "finished_at": _now(), "stop_reason": stop_reason, "error": error}):
                raise _not_in_ledger(run_id, self.url)
            return
        from sqlalchemy.orm import Session

        from shoestring.ledger.run_table import RunRecord

        with Session(self.engine) as s, s.begin():
            row = s.get(RunRecord, run_id)
            if row is None:
                raise _not_in_ledger(run_id, self.url)
            row.status = status
            row.metrics_json = json.dumps(metrics)
            row.wall_seconds = wall_seconds
            row.cost_nano_usd = int(cost_nano_usd)
            row.finished_at = _now()
            row.stop_reason = stop_reason
            row.error = error

    def reconcile(self) -> int:
        """Mark runs of this host whose process died without a word as ``killed``."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from shoestring.ledger.run_table import RunRecord

        host = socket.gethostname()
        changed = 0
        with Session(self.engine) as s, s.begin():
            rows = s.scalars(select(RunRecord).where(RunRecord.status == "running",
                                                     RunRecord.host == host))
            for row in rows:
                if row.pid != os.getpid() and not _pid_alive(row.pid):
                    row.status = "killed"
                    row.stop_reason = "the process ended without recording why (kill -9, " \
                        "out of memory, power loss)"
                    changed += 1
        return changed

    def list(self, limit: int = 50, status: str | None = None) -> list[RunRecord]:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from shoestring.ledger.run_table import RunRecord

        with Session(self.engine, expire_on_commit=False) as s:
            q = select(RunRecord).order_by(RunRecord.started_at.desc()).limit(limit)
            if status:
                q = q.where(RunRecord.status == status)
            return list(s.scalars(q))

    def get(self, run_id: str) -> RunRecord | None:
        from sqlalchemy.orm import Session

        from shoestring.ledger.run_table import RunRecord

        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(RunRecord, run_id)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _not_in_ledger(run_id: str, url: str) -> ShoestringError:
    return ShoestringError(f"run {run_id} is not in the ledger at {url}",
                           hint="was it started with another --db?")
