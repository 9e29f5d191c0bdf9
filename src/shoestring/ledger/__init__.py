"""The ledger: every run (and, with serving, every paid request) in a real database.

SQLite in the workspace by default; any SQLAlchemy URL (PostgreSQL for a
team) through ``--db`` or ``SHOESTRING_DB``. :func:`open_ledger` is the one way
in; it upgrades an older ledger in place (:mod:`shoestring.ledger.migrations`).
"""

from importlib import import_module

_EXPORTS = {"Base": "db", "LedgerMissing": "db", "default_db_url": "db", "open_ledger": "db",
            "resolve_db_url": "location", "RunLedger": "runs", "RunRecord": "run_table"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Loaded on first use (PEP 562): importing shoestring.ledger.money, which
    # training does on its main path, must not import SQLAlchemy (0.25 s of CPU);
    # a training run on an up-to-date SQLite ledger records its row without it
    # (shoestring.ledger.sqlite_runs).
    if name in _EXPORTS:
        return getattr(import_module(f"shoestring.ledger.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'shoestring.ledger' has no attribute {name!r}")
