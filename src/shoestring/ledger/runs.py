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
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from shoestring.errors import ShoestringError
from shoestring.ledger.db import Base, open_ledger
from shoestring.ledger.money import nano_to_usd

STATUSES = ("running", "finished", "budget_exhausted", "interrupted", "failed", "killed")
# What made the run; a new capability adds its own kind here.
KINDS = ("train", "finetune", "compress", "audit", "distill")


class RunRecord(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="train")
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(String(500))
    out_dir: Mapped[str] = mapped_column(String(1000))
    config_json: Mapped[str] = mapped_column(Text)
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    started_at: Mapped[str] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    price_per_hour_nano_usd: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_nano_usd: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    device: Mapped[str] = mapped_column(String(100), default="cpu")
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_json or "{}")

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json or "{}")

    @property
    def cost_usd(self) -> float:
        """The cost in dollars, for display (the ledger keeps integer nano-dollars)."""
        return nano_to_usd(self.cost_nano_usd or 0)


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
        self.engine = open_ledger(url, create=create)

    def start(self, *, name: str, model: str, data: str, out_dir: str, config: dict[str, Any],
              device: str = "cpu", kind: str = "train", run_id: str | None = None,
              parent_id: str | None = None, price_per_hour_nano_usd: int | None = None) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r} (known: {', '.join(KINDS)})")
        run_id = run_id or str(uuid.uuid4())
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
        with Session(self.engine) as s, s.begin():
            row = s.get(RunRecord, run_id)
            if row is None:
                raise ShoestringError(f"run {run_id} is not in the ledger at {self.url}",
                                      hint="was it started with another --db?")
            row.status = status
            row.metrics_json = json.dumps(metrics)
            row.wall_seconds = wall_seconds
            row.cost_nano_usd = int(cost_nano_usd)
            row.finished_at = _now()
            row.stop_reason = stop_reason
            row.error = error

    def reconcile(self) -> int:
        """Mark runs of this host whose process died without a word as ``killed``."""
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
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(RunRecord).order_by(RunRecord.started_at.desc()).limit(limit)
            if status:
                q = q.where(RunRecord.status == status)
            return list(s.scalars(q))

    def get(self, run_id: str) -> RunRecord | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(RunRecord, run_id)

    def close(self) -> None:
        self.engine.dispose()
