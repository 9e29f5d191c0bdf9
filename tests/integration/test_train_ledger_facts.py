"""The ledger records what happened: failures with their message, real wall time and cost,
why a run stopped, its price; and runs started from Python are recorded too (issue 16, items
5 and 7)."""

from __future__ import annotations

import pytest

from shoestring.errors import ConfigError
from shoestring.ledger.runs import RunLedger
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.reporter import SilentReporter


def cfg(out, data=None, **train_section):
    return resolve_config({"data": data or {"source": "digits"}, "out": str(out),
                           "train": {"epochs": 1, **train_section}})


@pytest.fixture
def ledger(tmp_path):
    led = RunLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield led
    led.close()


def test_a_configuration_error_after_the_row_opens_is_failed_with_its_message(
        tmp_path, idx_dir, ledger):
    with pytest.raises(ConfigError, match="spin"):
        train(cfg(tmp_path / "run", {"source": f"idx:{idx_dir}", "augment": "spin"}),
              ledger=ledger)
    [row] = ledger.list()
    assert row.status == "failed"  # not 'running', which `shoestring runs` would call killed
    assert "spin" in row.error and row.stop_reason == "error"
    ledger.reconcile()
    assert ledger.get(row.id).status == "failed"


class InterruptAtStart(SilentReporter):
    """Ctrl-C while the first step runs: the loop never reaches a checkpoint."""

    def start(self, total_steps, completed, description):
        raise KeyboardInterrupt


def test_a_run_stopped_in_its_first_step_records_its_real_time_and_cost(tmp_path, ledger):
    ticks = iter(range(0, 10_000, 240))  # every clock reading is 4 minutes after the last
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "run", price_per_hour=3.0), ledger=ledger,
              reporter=InterruptAtStart(), clock=lambda: float(next(ticks)),
              handle_signals=False)
    [row] = ledger.list()
    assert row.status == "interrupted" and row.wall_seconds >= 240
    assert row.cost_nano_usd == round(row.wall_seconds / 3600 * 3.0 * 1e9)
    assert row.price_per_hour_nano_usd == 3_000_000_000


def test_max_cost_without_a_price_is_an_error_with_a_hint(tmp_path, ledger):
    with pytest.raises(ConfigError, match="max_cost") as err:
        train(cfg(tmp_path / "run", max_cost=0.5), ledger=ledger, environ={})
    assert "SHOESTRING_PRICE_PER_HOUR" in err.value.hint and "--price-per-hour" in err.value.hint
    assert ledger.list() == []  # refused before any row or folder is written
    assert not (tmp_path / "run").exists()


def test_the_price_can_be_set_once_in_the_environment(tmp_path, ledger):
    result = train(cfg(tmp_path / "run", max_cost=100.0), ledger=ledger,
                   environ={"SHOESTRING_PRICE_PER_HOUR": "7.2"})
    s = result.summary
    assert s["price_per_hour"] == 7.2
    assert s["cost_usd"] == pytest.approx(s["train_seconds"] / 3600 * 7.2, abs=1e-6)
    row = ledger.get(result.run_id)
    assert row.price_per_hour_nano_usd == 7_200_000_000
    assert row.cost_nano_usd == s["cost_nano_usd"] and row.stop_reason == "all epochs done"
    assert "price_per_hour = 7.2" in (result.out_dir / "config.toml").read_text()
    with pytest.raises(ConfigError, match="not a price"):
        train(cfg(tmp_path / "r2"), ledger=ledger, environ={"SHOESTRING_PRICE_PER_HOUR": "lots"})


def test_runs_started_from_python_reach_the_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'team.db'}"
    result = train(cfg(tmp_path / "run"), environ={"SHOESTRING_DB": url})
    ledger = RunLedger(url, create=False)
    try:
        assert [r.id for r in ledger.list()] == [result.run_id]
    finally:
        ledger.close()
    train(cfg(tmp_path / "quiet"), ledger=None, workspace=tmp_path, environ={})
    assert not (tmp_path / ".shoestring").exists()
