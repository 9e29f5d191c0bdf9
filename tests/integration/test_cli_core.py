"""train / eval / runs / quickstart through the CLI test runner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from shoestring.cli.main import build_cli


@pytest.fixture
def cli(isolated_env):
    runner = CliRunner()
    group = build_cli()

    def invoke(*args):
        return runner.invoke(group, list(args), catch_exceptions=False)

    return invoke


def test_train_eval_runs(cli, isolated_env):
    r = cli("train", "--data", "digits", "--epochs", "2", "--out", "runs/a", "--lr", "0.002")
    assert r.exit_code == 0, r.output
    assert "finished" in r.output and "Run folder: runs/a" in r.output
    saved = (isolated_env / "runs/a/config.toml").read_text()
    assert "lr = 0.002" in saved and "epochs = 2" in saved
    r = cli("eval", "runs/a", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["test_accuracy"] > 0.3
    r = cli("runs", "--json")
    rows = json.loads(r.output)
    assert [row["name"] for row in rows] == ["a"] and rows[0]["status"] == "finished"
    assert (isolated_env / ".shoestring" / "ledger.db").exists()
    r = cli("runs")
    assert "finished" in r.output


def test_config_file_with_flag_override(cli, isolated_env):
    (isolated_env / "run.toml").write_text(
        '[model]\nname = "mlp"\nhidden = [32]\n[data]\nsource = "digits"\n'
        '[train]\nepochs = 5\nbatch_size = 64\n')
    r = cli("train", "run.toml", "--epochs", "1", "--out", "runs/b")
    assert r.exit_code == 0, r.output
    summary = json.loads((isolated_env / "runs/b/summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["batch_size"] == 64 and summary["model"] == "mlp"


def test_target_flag_means_metric_or_column(cli, isolated_env):
    rows = "\n".join(f"{i % 5},{(i * 7) % 3},{'a' if i % 5 < 2 else 'b'}" for i in range(100))
    (isolated_env / "t.csv").write_text("x,z,label\n" + rows)
    r = cli("train", "--data", "csv:t.csv", "--target", "label", "--model", "mlp", "--hidden", "8",
            "--epochs", "40", "--out", "runs/c", "--train-target", "test_accuracy=0.9")
    assert r.exit_code == 0, r.output
    s = json.loads((isolated_env / "runs/c/summary.json").read_text())
    assert s["target"] == "test_accuracy=0.9" and s["task"] == "classification"


def test_errors_are_for_people(cli, isolated_env):
    r = cli("train", "--data", "csv:missing.csv", "--target", "y")
    assert r.exit_code == 1
    assert "Error: data path 'missing.csv' does not exist" in r.output
    assert "Hint:" in r.output and "Traceback" not in r.output
    r = cli("--debug", "train", "--data", "csv:missing.csv", "--target", "y")
    assert r.exit_code == 1 and "Traceback" in r.output
    r = cli("train", "--epochs", "0", "--lr", "-1")
    assert r.exit_code == 1 and "2 problems" in r.output
    r = cli("eval", "nowhere")
    assert r.exit_code == 1 and "not a Shoestring run folder" in r.output
    r = cli("train", "--optimizer", "lbfgs")
    assert r.exit_code == 2 and "lbfgs" in r.output


def test_quickstart(cli, isolated_env):
    r = cli("quickstart", "--lm-steps", "10")
    assert r.exit_code == 0, r.output
    assert "test_accuracy" in r.output and "val_loss" in r.output and "Done in" in r.output
    mlp = list((isolated_env / "runs").glob("quickstart-seed-mlp-*"))
    lm = list((isolated_env / "runs").glob("quickstart-gpt-nano-*"))
    assert len(mlp) == 1 and len(lm) == 1
    assert json.loads((mlp[0] / "summary.json").read_text())["test_accuracy"] > 0.9
    s = json.loads((lm[0] / "summary.json").read_text())
    assert s["steps"] == 10 and s["tokens_per_second"] > 0
    report = list((isolated_env / "runs").glob("quickstart-report-*.html"))
    assert len(report) == 1 and f"Report: runs/{report[0].name}" in r.output
    page = report[0].read_text()
    assert 'id="compare"' in page and page.count('class="plot"') >= 6


def test_help_explains_every_command(cli):
    r = cli("--help")
    for command in ("train", "eval", "runs", "quickstart"):
        assert command in r.output
    r = cli("train", "--help")
    assert "--max-cost" in r.output and "--recipe" in r.output and "--resume" in r.output


def test_each_command_module_loads_alone_and_train_imports_no_other():
    """``shoestring train`` imports only its own command module (startup time), and each
    module named in OWN_NAME adds the command of that name (else lazy loading breaks)."""
    import ast
    import subprocess
    import sys

    code = """
import sys
from shoestring.cli import main
try:
    main.cli.main(["train", "--help"], prog_name="shoestring")
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.startswith(("shoestring.cli.", "shoestring.report",
                                                    "shoestring.plan", "sqlalchemy"))))
for name in sorted(main.OWN_NAME):
    main.cli.register(name)
    assert name in main.cli.commands, name
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    loaded = ast.literal_eval(out)  # the printed list of module names
    assert "shoestring.cli.train" in loaded
    assert not [m for m in loaded if m.endswith("_cmd") or m.startswith(
        ("shoestring.report", "shoestring.plan", "sqlalchemy"))], loaded
