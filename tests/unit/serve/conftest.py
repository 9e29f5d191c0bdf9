"""Fixtures for the serving unit tests: tiny real run folders and SQLite ledgers."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from serve_helpers import write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "tiny")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def may_2026() -> datetime:
    return datetime(2026, 5, 17, 12, 0, tzinfo=timezone.utc)
