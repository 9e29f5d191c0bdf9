"""Issue 16.11: tables keep names, values and paths whole at 80 and 120 columns.

Release 0.1 let rich shrink a wide table by cutting cells with an ellipsis:
at 80 columns `shoestring runs` cut every column, at 120 the metric value,
and the quickstart's "files" column lost its paths. Here the same commands
print through a console of a fixed width and every value must appear whole.
"""

from __future__ import annotations

import doctest

import pytest
from click.testing import CliRunner

import shoestring.cli.layout
import shoestring.cli.views
from shoestring.cli.main import build_cli
from shoestring.ledger.runs import RunLedger

NAME = "fashion-seed-mlp-lr0.001-batch128-long-experiment-name"
FOLDER = "runs/experiments/2026-11/fashion-seed-mlp-lr0.001-batch128-long-experiment-name"
REASON = "target val_accuracy=0.87 reached"


def _cells(output: str) -> str:
    """The output with table borders and line breaks removed, so a value that
    wrapped at a word boundary reads as one string again."""
    for ch in "│┃┏┓┗┛┡┩└┘┌┐├┤┬┴┼━─═╇╈╿":
        output = output.replace(ch, " ")
    return " ".join(output.split())


@pytest.fixture
def ledger_url(isolated_env):
    url = f"sqlite:///{isolated_env / 'ledger.db'}"
    ledger = RunLedger(url)
    run = ledger.start(name=NAME, model="seed-mlp", data="fashion-mnist", out_dir=FOLDER,
                       config={})
    ledger.finish(run, status="finished", metrics={"test_accuracy": 0.87654321},
                  wall_seconds=12.5, cost_nano_usd=4_170_000, stop_reason=REASON)
    return url


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_runs_shows_every_value_whole(ledger_url, width):
    r = CliRunner().invoke(build_cli(), ["--db", ledger_url, "runs"],
                           env={"COLUMNS": str(width)}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "…" not in r.output, r.output
    lines = r.output.splitlines()
    assert max(len(ln) for ln in lines) <= width, r.output
    # a path or name may wrap only where it has no word boundary to break at;
    # joined back, each value is whole
    flat = _cells(r.output).replace(" ", "")
    for value in (NAME, FOLDER, "test_accuracy0.8765", REASON.replace(" ", ""), "0.0042",
                  "12.50"):
        assert value in flat, (value, r.output)


def test_layout_examples():
    for module in (shoestring.cli.layout, shoestring.cli.views):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
