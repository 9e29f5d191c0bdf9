"""Read-side helpers of the ledger used by ``shoestring runs``."""

from __future__ import annotations

from typing import Any

from shoestring.ledger.runs import RunLedger


def list_runs(db_url: str, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
    """The latest runs as plain dicts, after marking dead ``running`` rows ``killed``.

    A missing SQLite ledger is an error (:class:`~shoestring.ledger.db.LedgerMissing`),
    not a new empty file.
    """
    ledger = RunLedger(db_url, create=False)
    try:
        ledger.reconcile()
        rows = ledger.list(limit=limit, status=status)
        return [{
            "id": r.id, "name": r.name, "kind": r.kind, "parent_id": r.parent_id,
            "status": r.status, "stop_reason": r.stop_reason, "model": r.model, "data": r.data,
            "started_at": r.started_at, "finished_at": r.finished_at,
            "wall_seconds": r.wall_seconds, "cost_usd": r.cost_usd,
            "cost_nano_usd": r.cost_nano_usd, "out_dir": r.out_dir,
            **{k: r.metrics.get(k) for k in ("test_accuracy", "test_mse", "val_accuracy",
                                             "val_mse", "val_loss")},
            "error": r.error,
        } for r in rows]
    finally:
        ledger.close()
