"""The serving ledger: keys, projects, usage events and quota counters.

All tables live on :class:`shoestring.ledger.db.Base`, so one database (SQLite
by default, PostgreSQL for several replicas) holds runs and usage together.
Money is stored as integer nano-dollars and units as integers, so sums are
exact.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from shoestring.ledger.db import Base


class ApiKeyRow(Base):
    """An API key; only the SHA-256 of the secret is stored."""

    __tablename__ = "serve_api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    project: Mapped[str] = mapped_column(String(200), index=True)
    plan: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200), default="")
    monthly_quota_units: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


class ProjectRow(Base):
    """A customer project; keys belong to one, budgets and invoices are per project."""

    __tablename__ = "serve_projects"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    monthly_budget_nano_usd: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))


class UsageEventRow(Base):
    """One charged request. Written in the same transaction as its quota charge."""

    __tablename__ = "serve_usage_events"
    __table_args__ = (
        # A retried request with the same Idempotency-Key cannot be charged twice, even by
        # two replicas at once. Partial: events without the header (most) skip this index,
        # one index update fewer per charge. Queries that name a key use it all the same.
        Index("uq_serve_usage_idempotency", "key_id", "idempotency_key", unique=True,
              sqlite_where=text("idempotency_key IS NOT NULL"),
              postgresql_where=text("idempotency_key IS NOT NULL")),
        Index("ix_serve_usage_project_period", "project", "period"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    project: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    units: Mapped[int] = mapped_column(Integer)
    cost_nano_usd: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(7))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    response_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class UsageCounterRow(Base):
    """Running total per scope and month: units for ``key:ID``, nano-USD for ``project:NAME``.

    Quotas are enforced with a conditional ``UPDATE … WHERE used + n <= limit``.
    Under READ COMMITTED, PostgreSQL makes a second updater wait for the first's
    row lock and then re-evaluates the WHERE clause on the newest row version
    (PostgreSQL 15 manual, section 13.2.1 "Read Committed Isolation Level"), so
    replicas can never overshoot a limit together; SQLite serialises writers.
    """

    __tablename__ = "serve_usage_counters"

    scope: Mapped[str] = mapped_column(String(250), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class LeaseRow(Base):
    """A replica's hold on a limited counter (a key's quota, a project's budget) in a month.

    ``granted`` units were handed to the replica, ``settled`` of them are in the
    counter's ``used`` (its recorded events); ``granted - settled`` is what it
    still holds. Leases are granted only while ``used + Σ held <= limit``
    (:mod:`shoestring.serve.ledger_sql`).
    """

    __tablename__ = "serve_leases"

    replica: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(250), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    granted: Mapped[int] = mapped_column(BigInteger)
    settled: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)  # Unix time; reclaimable after it


class RateBucketRow(Base):
    """A key's token bucket, shared by every replica (tokens refill with the clock)."""

    __tablename__ = "serve_rate_buckets"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    stamp: Mapped[float] = mapped_column(Float)  # Unix time of the last refill


class LogCheckpointRow(Base):
    """How far a replica's usage log is recorded here (moved with the events it covers)."""

    __tablename__ = "serve_log_checkpoints"

    replica: Mapped[str] = mapped_column(String(32), primary_key=True)
    segment: Mapped[int] = mapped_column(Integer)
    byte_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[str] = mapped_column(String(40))


SERVE_TABLES = [ApiKeyRow.__table__, ProjectRow.__table__, UsageEventRow.__table__,
                UsageCounterRow.__table__, LeaseRow.__table__, RateBucketRow.__table__,
                LogCheckpointRow.__table__]
