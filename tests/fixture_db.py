"""Databases for tests: a fresh PostgreSQL database per use, and release fixtures restored into it.

A unique module name (tests/ has no packages, and several conftest.py files clash).
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RELEASE_0_1 = FIXTURES / "release_0_1"


def pg_base_url() -> str:
    """The test server's URL, or a skip (a failure under CI=true)."""
    base = os.environ.get("SHOESTRING_TEST_PG_URL")
    if not base:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but SHOESTRING_TEST_PG_URL is not set: scripts/ci-postgres.sh "
                        "should have started PostgreSQL")
        pytest.skip("no PostgreSQL: set SHOESTRING_TEST_PG_URL (make test starts one with "
                    "scripts/ci-postgres.sh)")
    return base


@contextmanager
def fresh_pg_database(prefix: str = "shoestring_test") -> Iterator[str]:
    """A new, uniquely named database on the test server; dropped afterwards."""
    import psycopg

    base = pg_base_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore_pg_dump(url: str, dump: Path) -> None:
    """Load a ``pg_dump --inserts`` file into ``url`` (psql meta-commands left out)."""
    import psycopg

    sql = "\n".join(line for line in dump.read_text().splitlines()
                    if not line.startswith("\\"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)
