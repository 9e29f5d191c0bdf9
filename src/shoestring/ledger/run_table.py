"""The runs table's ORM class (SQLAlchemy); :mod:`shoestring.ledger.runs` records runs.

Kept apart so that recording a run on an up-to-date SQLite ledger does not
import SQLAlchemy (:mod:`shoestring.ledger.sqlite_runs`).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shoestring.ledger.db import Base
from shoestring.ledger.money import nano_to_usd


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
