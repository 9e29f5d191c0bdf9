"""DP-SGD end to end on the bundled digits data: ε in metrics.jsonl and summary.json, a crashed
and resumed run equal to an uninterrupted one, the budget never exceeded, a BatchNorm model fixed,
refusals, and the model card stating ε under ``audit --strict`` (train/privacy.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from shoestring.errors import ConfigError
from shoestring.models.card import TransformRecord
from shoestring.models.run_folder import load_run
from shoestring.models.transforms import register_transform
from shoestring.train.api import train
from shoestring.train.checkpoint import load_latest_checkpoint
from shoestring.train.config import resolve_config
from shoestring.train.hooks import TrainHooks

pytest.importorskip("opacus")

EPSILON = 3.0


def cfg(out, data=None, privacy=None, **train_section):
    # One thread: results differ in their last bits between thread counts (train/threads.py).
    t = {"epochs": 3, "batch_size": 64, "lr": 0.01, "threads": 1, "checkpoint_every": 10,
         **train_section}
    return resolve_config({"model": {"name": "seed-mlp"}, "data": data or {"source": "digits"},
                           "out": str(out), "train": t,
                           "privacy": privacy or {"epsilon": EPSILON}})


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "run"
    return train(cfg(out), ledger=None, handle_signals=False)


def test_epsilon_is_logged_per_evaluation_and_summarized(dp_run):
    p = dp_run.summary["privacy"]
    n = p["examples"]
    assert p["sample_rate"] == pytest.approx(64 / n) and p["expected_batch_size"] == 64
    assert p["planned_steps"] == p["steps"] == dp_run.summary["steps"] == 3 * -(-n // 64)
    assert p["delta"] == pytest.approx(1 / n ** 1.1) and p["delta"] < 1 / n
    assert p["accountant"] == "rdp" and p["max_grad_norm"] == 1.0 and p["noise_multiplier"] > 0.5
    assert EPSILON - 0.05 < p["epsilon"] <= EPSILON          # the budget, and not more
    eps = [r["epsilon"] for r in metrics(dp_run.out_dir)]
    assert len(eps) == 3 and eps == sorted(eps) and eps[0] > 0 and eps[-1] == p["epsilon"]
    # Noisy and clipped, and still far above the majority class.
    assert dp_run.summary["test_accuracy"] > 0.6, dp_run.summary["test_accuracy"]
    kinds = [t.kind for t in load_run(dp_run.out_dir).card.transforms]
    assert kinds == ["dp-fix"]


def test_the_model_card_states_epsilon_and_strict_checks_it(dp_run, tmp_path):
    from shoestring.cli.main import build_cli

    run = tmp_path / "run"
    shutil.copytree(dp_run.out_dir, run)
    cli = build_cli()

    def invoke(*args):
        return CliRunner().invoke(cli, ["audit", str(run), "--explain", "0", "--n-boot", "60",
                                        *args], catch_exceptions=False)

    assert invoke().exit_code == 0
    card = (run / "audit" / "model_card.md").read_text()
    line = next(x for x in card.splitlines() if x.startswith("- Differential privacy:"))
    p = dp_run.summary["privacy"]
    assert f"epsilon {p['epsilon']:.4g}" in line and f"delta {p['delta']:.4g}" in line
    assert "noise_multiplier" in line and "max_grad_norm 1" in line and "none" not in line
    data = json.loads((run / "audit" / "model_card.json").read_text())
    assert data["privacy"]["differential_privacy"]["epsilon"] == p["epsilon"]
    ok = invoke("--strict")
    assert ok.exit_code == 0, ok.output
    # A card claiming a smaller ε than summary.json gives is caught.
    (run / "audit" / "model_card.md").write_text(
        card.replace(f"epsilon {p['epsilon']:.4g}", "epsilon 0.5"))
    bad = invoke("--strict")
    assert bad.exit_code == 1 and "epsilon 0.5" in bad.output


class Crash(RuntimeError):
    pass


def test_a_crashed_dp_run_resumes_to_the_same_epsilon_and_weights(dp_run, tmp_path):
    def crash(model, step):
        if step == 25:  # after the checkpoints at steps 10, 20 and the epoch end (23)
            raise Crash("simulated kill")

    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(cfg(out), hooks=TrainHooks(after_step=crash), ledger=None, handle_signals=False)
    saved = load_latest_checkpoint(out / "checkpoints")[0].state.extra["privacy"]
    assert saved["history"] == [[saved["plan"]["noise_multiplier"], saved["plan"]["sample_rate"],
                                 23]]   # the accountant, one entry, saved with the run
    resumed = train(cfg(out).model_copy(update={"resume": True}), ledger=None,
                    handle_signals=False)
    assert resumed.summary["privacy"] == dp_run.summary["privacy"]
    a, b = load_run(dp_run.out_dir).model.state_dict(), load_run(out).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [(r["step"], r["epsilon"]) for r in metrics(out)] == \
        [(r["step"], r["epsilon"]) for r in metrics(dp_run.out_dir)]


def test_more_epochs_on_resume_never_spend_more_than_the_budget(dp_run, tmp_path):
    out = tmp_path / "more"
    shutil.copytree(dp_run.out_dir, out)
    more = train(cfg(out, epochs=6).model_copy(update={"resume": True}), ledger=None,
                 handle_signals=False)
    assert more.summary["steps"] == dp_run.summary["steps"]
    assert more.summary["privacy"]["epsilon"] == dp_run.summary["privacy"]["epsilon"] <= EPSILON
    assert "privacy budget" in more.summary["stop_reason"]


def _with_batchnorm(module: nn.Module, config: dict) -> nn.Module:
    # A model that has what DP-SGD cannot train: BatchNorm and an in-place activation.
    return nn.Sequential(nn.BatchNorm1d(config["features"]), nn.ReLU(inplace=True), module)


def test_a_batchnorm_model_is_fixed_for_dp_and_loads_fixed(tmp_path):
    register_transform("test-batchnorm", _with_batchnorm)
    hooks = TrainHooks(transforms=(TransformRecord(kind="test-batchnorm",
                                                   config={"features": 64}),))
    result = train(cfg(tmp_path / "bn", epochs=1), hooks=hooks, ledger=None,
                   handle_signals=False)
    loaded = load_run(result.out_dir)
    assert [t.kind for t in loaded.card.transforms] == ["test-batchnorm", "dp-fix"]
    kinds = {type(m) for m in loaded.model.modules()}
    assert nn.GroupNorm in kinds and not any(issubclass(k, nn.modules.batchnorm._BatchNorm)
                                             for k in kinds)
    assert loaded.model[1].inplace is False
    assert result.summary["privacy"]["epsilon"] <= EPSILON


def test_too_little_data_and_a_large_delta_are_refused_together(tmp_path):
    csv = tmp_path / "small.csv"
    g = torch.Generator().manual_seed(0)
    rows = ["a,b,label"] + [f"{x:.3f},{y:.3f},{int(x > y)}"
                            for x, y in torch.rand(300, 2, generator=g).tolist()]
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError) as err:
        train(cfg(tmp_path / "small", data={"source": f"csv:{csv}", "label": "label"},
                  batch_size=16, privacy={"epsilon": 3, "delta": 0.1}),
              ledger=None, handle_signals=False)
    text = str(err.value)
    assert "at least 1000" in text and "privacy.delta=0.1 is not below 1/N" in text
    assert not (tmp_path / "small" / "checkpoints").exists()


def test_cli_dp_flag_reports_every_bad_key(tmp_path):
    from shoestring.cli.main import build_cli

    res = CliRunner().invoke(build_cli(), ["train", "--data", "digits", "--out",
                                           str(tmp_path / "x"), "--dp",
                                           "epsilon=-1,max-grad-norm=0,noise=2"])
    assert res.exit_code == 1
    for needle in ("privacy.epsilon", "privacy.max_grad_norm", "privacy.noise: unknown key"):
        assert needle in res.output, res.output
    assert not (tmp_path / "x").exists()


def test_sigkill_then_resume_gives_the_uninterrupted_epsilon_and_weights(tmp_path):
    """``kill -9`` of a ``shoestring train --dp`` process, then ``--resume``: the accountant
    and the sampler continue from the checkpoint, as if nothing had happened."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "--data", "digits", "--epochs", "6", "--batch-size", "32", "--lr", "0.01",
            "--seed", "1", "--threads", "1", "--checkpoint-every", "20", "--dp", "epsilon=3"]
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{tmp_path / 'ledger.db'}"}

    def shoestring(*extra):
        return subprocess.Popen([sys.executable, "-m", "shoestring", *args, *extra], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    ref = shoestring("--out", str(tmp_path / "ref"))   # meanwhile, the uninterrupted run
    victim = tmp_path / "victim"
    proc = shoestring("--out", str(victim))
    manifest = victim / "checkpoints" / "manifest.json"
    deadline = time.monotonic() + 300
    while not manifest.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (victim / "summary.json").exists()       # killed mid-run, not after it
    resumed = shoestring("--out", str(victim), "--resume")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0 and "resumed from" in output, output
    ref_out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_out
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ref", "victim"))
    assert a["privacy"] == b["privacy"] and a["privacy"]["epsilon"] <= 3.0
    wa, wb = load_run(tmp_path / "ref").model.state_dict(), load_run(victim).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["epsilon"] for r in metrics(tmp_path / "ref")] == \
        [r["epsilon"] for r in metrics(victim)]
