"""The ledger: every run (and, with serving, every paid request) in a real database.

SQLite in the workspace by default; any SQLAlchemy URL (PostgreSQL for a
team) through ``--db`` or ``SHOESTRING_DB``. :func:`open_ledger` is the one way
in; it upgrades an older ledger in place (:mod:`shoestring.ledger.migrations`).
"""

from shoestring.ledger.db import Base, LedgerMissing, default_db_url, open_ledger, resolve_db_url
from shoestring.ledger.runs import RunLedger, RunRecord

__all__ = ["Base", "LedgerMissing", "RunLedger", "RunRecord", "default_db_url", "open_ledger",
           "resolve_db_url"]
