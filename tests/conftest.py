"""Shared fixtures: small generated data on disk; nothing from ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from idx_files import write_idx_dir


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    return write_idx_dir(tmp_path / "idx")


@pytest.fixture(scope="session")
def _session_ledger_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"


@pytest.fixture(autouse=True)
def _ledger_outside_the_repo(monkeypatch, _session_ledger_url):
    """Runs started from Python record themselves in the ledger by default; keep the tests'
    records in a throw-away one, never in the checkout's or the developer's."""
    monkeypatch.setenv("SHOESTRING_DB", _session_ledger_url)
    monkeypatch.delenv("SHOESTRING_PRICE_PER_HOUR", raising=False)


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Run in an empty workspace with no SHOESTRING_DB from the outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHOESTRING_DB", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def digits_run_dir(tmp_path_factory) -> Path:
    """The seed MLP trained one epoch on digits, shared read-only by tests that serve it.

    Its folder is named ``digits``, which is the served model's name.
    """
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    out = tmp_path_factory.mktemp("digits-run") / "digits"
    train(resolve_config({"data": {"source": "digits"}, "train": {"epochs": 1}, "out": str(out)}),
          ledger=None)
    return out
