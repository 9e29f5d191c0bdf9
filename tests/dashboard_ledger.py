"""A ledger with runs and metered requests, for the dashboard tests (a unique module name:
tests/ has no packages). Keys come from serve's KeyStore; usage events are written as the
metering writes them (one row per charged request)."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from shoestring.ledger.db import open_ledger
from shoestring.ledger.runs import RunLedger
from shoestring.serve.keys import KeyStore
from shoestring.serve.plans import load_plans
from shoestring.serve.tables import UsageEventRow

PERIOD = "2026-11"


def fill_ledger(url: str, runs: list[Path]) -> dict:
    """Record ``runs`` (finished) and two projects' requests over three days of PERIOD."""
    ids = []
    ledger = RunLedger(url)
    try:
        for r in runs:
            rid = ledger.start(name=r.name, model="seed-mlp", data="digits", out_dir=str(r),
                               config={})
            ledger.finish(rid, status="finished", metrics={"test_accuracy": 0.9},
                          wall_seconds=1.5, cost_nano_usd=1234)
            ids.append(rid)
    finally:
        ledger.close()
    engine = open_ledger(url)
    keys = KeyStore(engine, load_plans())
    _, acme = keys.create(project="acme", plan="pro", label="acme prod")
    _, beta = keys.create(project="beta", plan="free", label="beta trial")
    with Session(engine) as s, s.begin():
        for day, key, n in ((1, acme, 5), (2, acme, 8), (2, beta, 3), (3, beta, 4)):
            for i in range(n):
                s.add(UsageEventRow(
                    id=str(uuid.uuid4()), key_id=key.id, project=key.project, plan=key.plan,
                    model="digits", version="1", units=10, cost_nano_usd=5_000_000 * (
                        key.plan == "pro"), latency_ms=2.0 + i,
                    created_at=f"{PERIOD}-{day:02d}T10:{i:02d}:00+00:00", period=PERIOD))
    engine.dispose()
    return {"run_ids": ids, "acme": acme, "beta": beta}
