import json
import uuid
from datetime import datetime, timezone

import pytest

from shoestring.errors import ShoestringError
from shoestring.ledger.db import open_ledger
from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.metering import UsageEvent
from shoestring.serve.plans import load_plans
from shoestring.serve.usage import (
    check_period,
    cloudevent_lines,
    export_cloudevents,
    invoice,
    usage_summary,
)


def charge(meter, when, key, plan, model, units):
    p = load_plans()[plan]
    meter.apply([UsageEvent(id=uuid.uuid4().hex, key_id=key, project="acme", plan=plan,
                             model=model, version="1", units=units,
                             cost_nano_usd=p.cost_nano_usd(units), latency_ms=2.0,
                             created_at=when).record()], None)


@pytest.fixture
def ledger(db_url):
    engine = open_ledger(db_url)
    m = LedgerSql(engine, "test")
    may = datetime(2026, 5, 3, tzinfo=timezone.utc)
    charge(m, may, "k1", "pro", "digits", 3)       # $0.50 / 1000
    charge(m, may, "k1", "pro", "digits", 1)
    charge(m, may, "k2", "enterprise", "text", 1000)  # $0.20 / 1000
    charge(m, datetime(2026, 6, 1, tzinfo=timezone.utc), "k1", "pro", "digits", 7)
    return engine


def test_usage_sums_the_events_of_the_month(ledger):
    s = usage_summary(ledger, "acme", "2026-05")
    assert (s["requests"], s["units"]) == (3, 1004)
    assert s["cost_usd"] == pytest.approx(0.002 + 0.2)
    assert [(k["key_id"], k["requests"], k["units"]) for k in s["keys"]] == \
        [("k1", 2, 4), ("k2", 1, 1000)]
    assert usage_summary(ledger, "acme", "2026-06")["units"] == 7
    assert usage_summary(ledger, "nobody", "2026-05")["requests"] == 0


def test_invoices_are_per_plan_and_model(ledger):
    inv = invoice(ledger, "acme", "2026-05")
    assert [(ln["plan"], ln["model"], ln["units"], ln["price_per_1000_units_usd"],
             ln["amount_usd"]) for ln in inv["lines"]] == [
        ("enterprise", "text", 1000, 0.2, 0.2), ("pro", "digits", 4, 0.5, 0.002)]
    assert inv["total_usd"] == pytest.approx(0.202)


def test_cloudevents_export_carries_each_event_once_with_its_id(ledger, tmp_path):
    out = tmp_path / "usage.jsonl"
    assert export_cloudevents(ledger, out, project="acme", period="2026-05") == 3
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(e["specversion"] == "1.0" and e["type"] == "dev.shoestring.usage.v1"
               for e in events)
    assert len({e["id"] for e in events}) == 3
    assert sum(e["data"]["units"] for e in events) == 1004
    assert export_cloudevents(ledger, out) == 4  # all months, all projects
    # What `usage-export --out -` prints: the same lines.
    assert cloudevent_lines(ledger) == out.read_text().splitlines()


def test_months_are_validated():
    assert check_period("2026-05", lambda: None) == "2026-05"
    with pytest.raises(ShoestringError, match="not YYYY-MM"):
        check_period("May", lambda: None)
