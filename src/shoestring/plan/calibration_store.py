"""The ``plan_calibrations`` ledger table: throughput measured on this machine.

One row per probe point of ``shoestring plan --calibrate``: which device,
model and dtype, the step's FLOPs and its measured seconds. Later plans fit
their step-time model to these rows (see :mod:`shoestring.plan.rates`).
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from sqlalchemy import Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from shoestring.ledger.db import Base, open_ledger
from shoestring.plan.rates import Measurement


class CalibrationRecord(Base):
    __tablename__ = "plan_calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[str] = mapped_column(String(40))
    host: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(100), index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    dtype: Mapped[str] = mapped_column(String(16))
    batch: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    flops_per_step: Mapped[float] = mapped_column(Float)
    seconds_per_step: Mapped[float] = mapped_column(Float)


def save_calibration(url: str, rows: list[dict], *, now: datetime | None = None) -> int:
    """Store probe points (dicts with the record's fields); returns how many were stored."""
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    engine = open_ledger(url)
    try:
        with Session(engine) as s, s.begin():
            for r in rows:
                s.add(CalibrationRecord(created_at=stamp, host=socket.gethostname(), **r))
    finally:
        engine.dispose()
    return len(rows)


def load_calibration(url: str, *, device: str | None = None, models: tuple[str, ...] = (),
                     latest_only: bool = True) -> list[Measurement]:
    """Stored points, newest calibration per (device, model, dtype) when ``latest_only``."""
    engine = open_ledger(url, create=False)
    try:
        with Session(engine) as s:
            q = select(CalibrationRecord).order_by(CalibrationRecord.created_at.desc())
            if device:
                q = q.where(CalibrationRecord.device == device)
            if models:
                q = q.where(CalibrationRecord.model.in_(models))
            rows = list(s.scalars(q))
    finally:
        engine.dispose()
    newest: dict[tuple[str, str, str], str] = {}
    out = []
    for r in rows:
        key = (r.device, r.model, r.dtype)
        newest.setdefault(key, r.created_at)
        if latest_only and r.created_at != newest[key]:
            continue
        out.append(Measurement(r.device, r.model, r.dtype, r.flops_per_step,
                               r.seconds_per_step, f"calibration {r.created_at}"))
    return out
