"""The vocabulary of metering: billing periods, usage events and the outcome of a charge.

How a charge is made (see docs/serve.md, "Exactly-once metering"):
:mod:`~shoestring.serve.billing` holds a request's units from the replica's
leases before it runs (:mod:`~shoestring.serve.allowances`), its usage event
is made durable before it is answered (appended to the replica's
:mod:`~shoestring.serve.usage_log` by the thread that ran its batch; for
requests with an Idempotency-Key, committed to the SQL ledger by the
:mod:`~shoestring.serve.ledger_writer`), and the
:mod:`~shoestring.serve.reconciler` copies the log into the SQL ledger
(:mod:`~shoestring.serve.ledger_sql`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum


def period_of(t: datetime) -> str:
    """The billing period (UTC calendar month) of a time: ``YYYY-MM``."""
    t = t.astimezone(timezone.utc)
    return f"{t.year:04d}-{t.month:02d}"


def seconds_to_next_period(t: datetime) -> int:
    """Whole seconds until the next UTC month starts (for ``Retry-After``)."""
    t = t.astimezone(timezone.utc)
    nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=timezone.utc)
    return max(1, int((nxt - t).total_seconds() + 0.999))


def iso_utc(t: datetime) -> str:
    """How event times are stored: ISO 8601 in UTC, to the microsecond."""
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


class Outcome(str, Enum):
    charged = "charged"
    duplicate = "duplicate"      # the Idempotency-Key was recorded before: replay, no charge
    unrecorded = "unrecorded"    # the log or the ledger failed: not charged, answer 503


@dataclass(slots=True)
class UsageEvent:
    """A finished request to be charged.

    ``key_leased`` / ``project_leased``: its units (cost) came out of this
    replica's lease on the key's quota (the project's budget), which recording
    the event settles. ``period`` is the month the units were held for
    (default: that of ``created_at``).
    """

    id: str
    key_id: str
    project: str
    plan: str
    model: str
    version: str
    units: int
    cost_nano_usd: int
    latency_ms: float
    created_at: datetime
    idempotency_key: str | None = None
    request_sha256: str | None = None
    response_json: str | None = None
    key_leased: bool = False
    project_leased: bool = False
    period: str = ""
    created_iso: str = ""

    def __post_init__(self) -> None:
        if not self.period:
            self.period = period_of(self.created_at)
        if not self.created_iso:
            self.created_iso = iso_utc(self.created_at)

    def values(self) -> tuple:
        """The event's row of ``serve_usage_events`` (``ledger_sql.EVENT_COLS`` order)."""
        return (self.id, self.key_id, self.project, self.plan, self.model, self.version,
                self.units, self.cost_nano_usd, self.latency_ms, self.created_iso, self.period,
                self.idempotency_key, self.request_sha256, self.response_json)

    def record(self) -> list:
        """The event as a usage-log record (``usage_log.FIELDS`` order)."""
        return [self.id, self.key_id, self.project, self.plan, self.model, self.version,
                self.units, self.cost_nano_usd, self.latency_ms, self.created_iso, self.period,
                self.key_leased, self.project_leased]


@dataclass(frozen=True)
class Stored:
    """What a recorded idempotent request returned."""

    event_id: str
    request_sha256: str | None
    response_json: str | None


@dataclass(frozen=True)
class ChargeResult:
    outcome: Outcome
    stored: Stored | None = None  # for duplicates
