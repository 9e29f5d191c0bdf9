"""The ledger: every run (and, with serving, every paid request) in a real database.

SQLite in the workspace by default; any SQLAlchemy URL (PostgreSQL for a
team) through ``--db`` or ``SHOESTRING_DB``.
"""

from shoestring.ledger.db import Base, default_db_url, make_engine, resolve_db_url
from shoestring.ledger.runs import RunLedger, RunRecord

__all__ = ["Base", "RunLedger", "RunRecord", "default_db_url", "make_engine", "resolve_db_url"]
