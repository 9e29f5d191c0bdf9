"""Training hooks and warm starts: the extension points distillation, pruning, DP-SGD and
fine-tuning plug into (issue 11), exercised with real runs on the bundled digits data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from shoestring.data.sources import load_dataset
from shoestring.errors import ShoestringError
from shoestring.ledger.runs import RunLedger
from shoestring.models.run_folder import load_run
from shoestring.train.api import train
from shoestring.train.checkpoint import load_latest_checkpoint
from shoestring.train.config import resolve_config
from shoestring.train.hooks import TrainHooks


def cfg(out, model=None, **train_section):
    return resolve_config({"model": model or {"name": "seed-mlp"}, "data": {"source": "digits"},
                           "out": str(out), "train": {"epochs": 1, **train_section}})


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    train(cfg(out, epochs=3), ledger=None)
    return load_run(out)


def test_a_distillation_loss_hook_calls_a_teacher_and_needs_no_labels(tmp_path, teacher):
    calls = []

    def distill(model, x, y, default):
        calls.append(len(x))
        with torch.no_grad():
            soft = F.softmax(teacher.model(x) / 2.0, dim=-1)
        # Labels are not used at all: whatever the student learns, it learns from the teacher.
        # T² keeps the soft targets' gradient on the scale of a hard-label loss (Hinton,
        # Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", section 2).
        return 4.0 * F.kl_div(F.log_softmax(model(x) / 2.0, dim=-1), soft,
                              reduction="batchmean")

    result = train(cfg(tmp_path / "student", {"name": "mlp", "hidden": [32]}, epochs=10,
                       lr=0.003),
                   hooks=TrainHooks(loss=distill), ledger=None, kind="distill")
    assert len(calls) == result.summary["steps"]
    student = load_run(result.out_dir)
    x = student.card.preprocessing.to_preprocessing().apply(load_dataset("digits").test.x)
    with torch.no_grad():
        agree = (student.model(x).argmax(1) == teacher.model(x).argmax(1)).float().mean()
    assert agree > 0.8, agree
    assert student.card.lineage.stage == "distill"


def test_a_mask_reapplied_after_each_step_keeps_pruned_weights_at_zero(tmp_path):
    masks = {}
    steps = []

    def setup(parts):
        for name, p in parts.model.named_parameters():
            if name.endswith("weight"):
                masks[name] = (torch.arange(p.numel()) % 2 == 0).reshape(p.shape).float()
                with torch.no_grad():
                    p.mul_(masks[name])
        return parts

    def prune(model, step):
        steps.append(step)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in masks:
                    p.mul_(masks[name])

    result = train(cfg(tmp_path / "pruned", epochs=3),
                   hooks=TrainHooks(setup=setup, after_step=prune), ledger=None)
    assert steps == list(range(result.summary["steps"]))
    weights = load_run(result.out_dir).model.state_dict()
    for name, mask in masks.items():
        assert torch.count_nonzero(weights[name] * (1 - mask)) == 0, name
        assert torch.count_nonzero(weights[name]) > 0
    assert result.summary["test_accuracy"] > 0.3  # well above chance (0.1): still learning


def test_init_from_warm_starts_from_the_parent_and_records_it(tmp_path, teacher):
    ledger = RunLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    parent = train(cfg(tmp_path / "parent"), ledger=ledger)
    start = {}

    def capture(parts):
        start.update({k: v.clone() for k, v in parts.model.state_dict().items()})
        return parts

    child = train(cfg(tmp_path / "child"), init_from=tmp_path / "parent",
                  hooks=TrainHooks(setup=capture), ledger=ledger)
    for k, v in load_run(parent.out_dir).model.state_dict().items():
        assert torch.equal(start[k], v), k
    row = ledger.get(child.run_id)
    assert (row.kind, row.parent_id) == ("finetune", parent.run_id)
    card = load_run(child.out_dir).card
    assert card.lineage.parent_run == parent.run_id and card.lineage.stage == "finetune"
    assert "init_from" in (child.out_dir / "config.toml").read_text()
    by_name = train(cfg(tmp_path / "by-name"), init_from=parent.summary["name"], ledger=ledger)
    assert ledger.get(by_name.run_id).parent_id == parent.run_id
    with pytest.raises(ShoestringError, match="different architecture") as err:
        train(cfg(tmp_path / "wide", {"name": "mlp", "hidden": [8]}),
              init_from=tmp_path / "parent", ledger=ledger)
    assert "same model" in err.value.hint
    with pytest.raises(ShoestringError, match="neither a run folder nor a run"):
        train(cfg(tmp_path / "none"), init_from="no-such-run", ledger=ledger)
    ledger.close()


def test_on_checkpoint_state_is_saved_and_a_hooked_resume_is_bit_identical(tmp_path):
    def hooks():
        def remember(state):
            state.extra["checkpointed_at"] = state.global_step

        def noisy_batch(x, y, step):  # a pure function of (batch, step)
            g = torch.Generator().manual_seed(step)
            return x + 0.01 * torch.randn(x.shape, generator=g), y

        return TrainHooks(batch=noisy_batch, on_checkpoint=remember)

    # One thread: the measured thread count (train/threads.py) follows the machine's load,
    # and results differ in their last bits between thread counts.
    straight = train(cfg(tmp_path / "straight", max_steps=12, checkpoint_every=3, threads=1),
                     hooks=hooks(), ledger=None)
    train(cfg(tmp_path / "split", max_steps=6, checkpoint_every=3, threads=1), hooks=hooks(),
          ledger=None)
    ckpt, _ = load_latest_checkpoint(tmp_path / "split" / "checkpoints")
    assert ckpt.state.extra == {"checkpointed_at": 6}
    resumed = train(cfg(tmp_path / "split", max_steps=12, checkpoint_every=3, threads=1
                        ).model_copy(update={"resume": True}), hooks=hooks(), ledger=None)
    assert resumed.summary["steps"] == 12
    a = load_run(straight.out_dir).model.state_dict()
    b = load_run(resumed.out_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dp_sgd_through_opacus_wraps_the_model_and_the_optimizer(tmp_path):
    opacus = pytest.importorskip("opacus")
    from torch.utils.data import DataLoader, TensorDataset

    engine = opacus.PrivacyEngine(accountant="rdp")

    def make_private(parts):
        # Opacus reads the sampling rate off a data loader; the batches themselves still
        # come from parts.source (a pure function of the step, so resume works).
        n = parts.source.examples_per_epoch
        loader = DataLoader(TensorDataset(torch.zeros(n, 1)), batch_size=64)
        model, optimizer, _ = engine.make_private(
            module=parts.forward_model, optimizer=parts.optimizer, data_loader=loader,
            noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False)
        return replace(parts, forward_model=model, optimizer=optimizer)

    result = train(cfg(tmp_path / "dp", epochs=3, batch_size=64, lr=0.01),
                   hooks=TrainHooks(setup=make_private), ledger=None)
    steps = sum(n for _, _, n in engine.accountant.history)
    assert steps == result.summary["steps"]
    epsilon = engine.get_epsilon(delta=1e-5)
    assert 0 < epsilon < 100
    assert result.summary["test_accuracy"] > 0.3  # noisy, clipped, and still learning
