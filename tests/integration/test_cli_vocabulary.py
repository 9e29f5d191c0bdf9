"""One vocabulary and one place for options (issue 16, item 12; issue 11, item 3):
--db anywhere, read-only commands that never create a ledger, plan and train naming
things alike, and every renamed flag still working with a deprecation message."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from shoestring.cli.main import build_cli
from shoestring.ledger.runs import RunLedger


@pytest.fixture
def cli(isolated_env):
    runner = CliRunner()
    group = build_cli()

    def invoke(*args):
        return runner.invoke(group, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def team_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'team' / 'ledger.db'}"
    ledger = RunLedger(url)
    rid = ledger.start(name="from-the-team", model="m", data="d", out_dir="x", config={})
    ledger.finish(rid, status="finished", metrics={}, wall_seconds=1.0, cost_nano_usd=0)
    ledger.close()
    return url


@pytest.mark.parametrize("where", ["before", "after"])
def test_db_works_before_or_after_the_command(cli, team_db, where):
    args = ["runs", "--json"]
    r = cli(*(["--db", team_db, *args] if where == "before" else [*args, "--db", team_db]))
    assert r.exit_code == 0, r.output
    assert [row["name"] for row in json.loads(r.output)] == ["from-the-team"]
    for command in (["keys", "list"], ["usage", "--project", "acme"],
                    ["invoice", "--project", "acme", "--month", "2026-05"]):
        r = cli(*command, "--db", team_db)
        assert r.exit_code == 0, (command, r.output)


def test_every_command_takes_db_and_debug(cli):
    group = build_cli()

    def commands(g, prefix=()):
        for name, cmd in g.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, (*prefix, name))
            else:
                yield (*prefix, name), cmd

    seen = 0
    for path, cmd in commands(group):
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"--db", "--debug"} <= names, path
        seen += 1
    assert seen >= 20


@pytest.mark.parametrize("command", [["runs"], ["usage", "--project", "acme"], ["keys", "list"],
                                     ["invoice", "--project", "acme", "--month", "2026-05"],
                                     ["usage-export", "--out", "x.jsonl"]])
def test_read_only_commands_say_there_is_no_ledger_instead_of_creating_one(
        cli, isolated_env, command):
    r = cli(*command)
    assert r.exit_code == 1, r.output
    assert "Error: no ledger at" in r.output and "--db" in r.output
    assert not (isolated_env / ".shoestring").exists()


def test_a_typo_in_the_project_of_usage_warns(cli, tmp_path):
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert cli("keys", "create", "--project", "acme", "--db", db).exit_code == 0
    r = cli("usage", "--project", "acm", "--db", db)
    assert r.exit_code == 0
    assert "Warning: no project named 'acm'" in r.output and "did you mean 'acme'" in r.output
    r = cli("usage", "--project", "acme", "--db", db)
    assert "Warning" not in r.output


def _plan_config(cli, *args):
    r = cli("plan", "gpt2-124m", "--tokens", "1e8", "--hardware", "a100-80gb", *args, "--json")
    assert r.exit_code == 0, r.output
    text = r.output
    return json.loads(text[text.index("{"):])["config"], text[:text.index("{")]


def test_plan_and_train_name_things_alike_and_old_plan_flags_still_work(cli):
    new, warnings = _plan_config(cli, "--micro-batch-size", "4", "--nproc", "2",
                                 "--precision", "bf16", "--activation-checkpointing")
    assert warnings.strip() == ""
    assert (new["micro_batch_size"], new["nproc"], new["precision"],
            new["activation_checkpointing"]) == (4, 2, "bf16", True)
    old, warnings = _plan_config(cli, "--micro-batch", "4", "--gpus", "2",
                                 "--precision", "bf16-mixed", "--checkpointing", "full")
    assert old == new
    for flag, now in (("--micro-batch", "--micro-batch-size"), ("--gpus", "--nproc"),
                      ("--checkpointing", "--activation-checkpointing"),
                      ("--precision bf16-mixed", "--precision bf16")):
        assert f"{flag} is deprecated; use {now}" in warnings, flag
    train_help = cli("train", "--help").output
    plan_help = cli("plan", "--help").output
    for flag in ("--micro-batch-size", "--nproc", "--activation-checkpointing", "--precision"):
        assert flag in train_help and flag in plan_help, flag


def test_renamed_train_flags_warn_and_keep_working(cli, isolated_env):
    rows = "\n".join(f"{i % 5},{(i * 7) % 3},{'a' if i % 5 < 2 else 'b'}" for i in range(60))
    (isolated_env / "t.csv").write_text("x,z,y\n" + rows)
    r = cli("train", "--data", "csv:t.csv", "--target", "y", "--epochs", "1", "--out", "runs/a",
            "--train-target", "test_accuracy=0.99")
    assert r.exit_code == 0, r.output
    assert "--target y (a column) is deprecated; use --label y" in r.output
    assert "--train-target is deprecated; use --target METRIC=VALUE" in r.output
    s = json.loads((isolated_env / "runs/a/summary.json").read_text())
    assert s["target"] == "test_accuracy=0.99" and s["task"] == "classification"
    r = cli("train", "--data", "csv:t.csv", "--label", "y", "--epochs", "1", "--out", "runs/b")
    assert r.exit_code == 0 and "deprecated" not in r.output


def test_prepare_target_flag_is_deprecated_for_label(cli, isolated_env):
    rows = "\n".join(f"{i % 5},{(i * 7) % 3},{'a' if i % 2 else 'b'}" for i in range(40))
    (isolated_env / "t.csv").write_text("x,z,y\n" + rows)
    r = cli("data", "prepare", "csv:t.csv", "--out", "prep", "--target", "y", "--json",
            "--no-label-issues")
    assert r.exit_code == 0, r.output
    assert "--target is deprecated; use --label" in r.output


def test_one_test_fraction_default():
    from shoestring.data.prepare.config import PrepareConfig
    from shoestring.data.sources import SourceOptions
    from shoestring.train.config import DataConfig

    assert PrepareConfig.model_fields["test_fraction"].default == \
        DataConfig.model_fields["test_fraction"].default == SourceOptions().test_fraction


def test_no_flag_of_the_previous_cli_is_lost():
    """Every option the CLI had before the one flag generator (commit 074a925, frozen in
    tests/fixtures/release_0_1/cli_flags.json) is still accepted: as itself, or hidden
    behind a deprecation warning."""
    from pathlib import Path

    before = json.loads((Path(__file__).parents[1] / "fixtures" / "release_0_1" /
                         "cli_flags.json").read_text())

    def options(g, prefix=()):
        for name, cmd in g.commands.items():
            if hasattr(cmd, "commands"):
                yield from options(cmd, (*prefix, name))
            else:
                yield " ".join((*prefix, name)), {o for p in cmd.params for o in
                                                 (*getattr(p, "opts", []),
                                                  *getattr(p, "secondary_opts", []))}

    now = dict(options(build_cli()))
    lost = {c: sorted(set(flags) - now.get(c, set())) for c, flags in before.items()}
    assert {c: f for c, f in lost.items() if f} == {}


def test_run_name_and_old_data_target_flags(cli, isolated_env):
    rows = "\n".join(f"{i % 5},{(i * 7) % 3},{'a' if i % 5 < 2 else 'b'}" for i in range(60))
    (isolated_env / "t.csv").write_text("x,z,y\n" + rows)
    r = cli("train", "--data", "csv:t.csv", "--data-target", "y", "--epochs", "1",
            "--name", "named-run", "--out", "runs/n")
    assert r.exit_code == 0, r.output
    assert "--data-target is deprecated; use --label" in r.output
    assert 'name = "named-run"' in (isolated_env / "runs/n/config.toml").read_text()
