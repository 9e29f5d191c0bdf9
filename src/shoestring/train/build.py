"""Building what a run trains: the module (warm-started, transformed, restored), and the
parts the loop drives (optimizer, wrappers, batch source, loss)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from shoestring.errors import ShoestringError
from shoestring.models.card import Lineage, ModelCard
from shoestring.models.registry import build_model
from shoestring.models.run_folder import RunFolder, load_run, read_card
from shoestring.models.transforms import apply_transforms
from shoestring.train.checkpoint import Checkpoint, TrainingState, load_latest_checkpoint
from shoestring.train.config import TrainConfig
from shoestring.train.distributed import DistInfo, load_optimizer_state, wrap_model
from shoestring.train.evaluate import loss_fn
from shoestring.train.hooks import TrainHooks, TrainingParts
from shoestring.train.optim import build_optimizer
from shoestring.train.reporter import Reporter
from shoestring.train.stepper import loss_function

if TYPE_CHECKING:
    from shoestring.ledger.runs import RunLedger
    from shoestring.train.problem import Problem


@dataclass(frozen=True)
class Parent:
    """The model a warm start begins from: a run folder or a Hugging Face checkpoint.

    Its weights are read once, when the module is built, and not kept: a
    fine-tune holds one copy of the model, not two.
    """

    path: Path
    card: ModelCard
    run_id: str | None

    def weights(self) -> dict[str, torch.Tensor]:
        """The parent's tensors (its transforms applied), read now."""
        return load_run(self.path).model.state_dict()


def resolve_parent(ref: str | Path, ledger: RunLedger | None) -> Parent:
    """``init_from``: a run folder, a Hugging Face checkpoint folder, or the id or name of a
    run in the ledger."""
    from shoestring.models.hf import is_hf_checkpoint

    folder = RunFolder(Path(ref).expanduser())
    if is_hf_checkpoint(folder.path):
        return Parent(folder.path, read_card(folder.path), None)
    if not folder.has_model() and ledger is not None:
        row = ledger.get(str(ref)) or next(
            (r for r in ledger.list(limit=1000) if r.name == str(ref)), None)
        if row is not None:
            folder = RunFolder(Path(row.out_dir))
    if not folder.has_model():
        raise ShoestringError(f"init_from {str(ref)!r} is neither a run folder nor a run in "
                              "the ledger", hint="pass the --out folder of a finished run, its "
                              "id or name from 'shoestring runs', or a Hugging Face checkpoint "
                              "folder (config.json + model.safetensors)")
    return Parent(folder.path, read_card(folder.path), folder.run_id())


def run_card(problem: Problem, kind: str, parent: Parent | None, hooks: TrainHooks
             ) -> ModelCard:
    """The card this run will save: the problem's, with its lineage and transforms."""
    lineage = Lineage(stage=kind, parent_run=parent.run_id if parent else None,
                      parent_dir=str(parent.path.resolve()) if parent else None)
    inherited = list(parent.card.transforms) if parent else []
    return problem.card.model_copy(update={"lineage": lineage,
                                           "transforms": inherited + list(hooks.transforms)})


# Architecture params a fine-tune may change: its head, and dropout (not a shape).
HEAD_PARAMS = ("num_classes", "mlm", "dropout", "pad_id")


def _body(arch) -> tuple:
    family, params = (arch.family, arch.params) if hasattr(arch, "family") else \
        (arch["family"], arch["params"])
    return family, {k: v for k, v in params.items() if k not in HEAD_PARAMS}


def build_run_model(problem: Problem, config: TrainConfig, device: torch.device,
                    parent: Parent | None, hooks: TrainHooks,
                    notes: list[str] | None = None) -> nn.Module:
    """The module to train: built from the architecture, with the parent's transforms and
    weights (a warm start; a new head starts fresh), then the hooks' transforms, on
    ``device``. What the warm start loaded and left out is appended to ``notes``."""
    from shoestring.models.warm_start import load_matching_weights

    torch.manual_seed(config.train.seed)  # initialisation and dropout; data has its own
    model = build_model(problem.arch)
    if parent is not None:
        theirs = parent.card.architecture
        if _body(theirs) != _body(problem.arch):
            raise ShoestringError(
                f"init_from '{parent.path}' holds a different architecture "
                f"({theirs.family} {theirs.params}) than this run builds "
                f"({problem.arch['family']} {problem.arch['params']})",
                hint="warm-start from a run of the same model and data shape")
        model = apply_transforms(model, parent.card.transforms)
        done = load_matching_weights(model, parent.weights(), str(parent.path))
        model.weights_from = str(parent.path.resolve())  # the lora transform need not reload
        if notes is not None:
            notes.extend(done.notes(str(parent.path)))
    model = apply_transforms(model, hooks.transforms).to(device)
    if config.train.activation_checkpointing:
        if not hasattr(model, "set_activation_checkpointing"):
            raise ShoestringError(f"model {config.model.name!r} has no blocks to checkpoint",
                                  hint="activation checkpointing applies to transformers")
        model.set_activation_checkpointing(True)
    return model


def restore_checkpoint(config: TrainConfig, folder: RunFolder, model: nn.Module,
                       reporter: Reporter) -> tuple[TrainingState, Checkpoint | None]:
    """A resumed run's state, with the latest good checkpoint's weights loaded."""
    if not config.resume:
        return TrainingState(), None
    ckpt, skipped = load_latest_checkpoint(folder.checkpoints)
    for w in skipped:
        reporter.warn(w)
    if ckpt is None:
        reporter.warn(f"no usable checkpoint in '{folder.checkpoints}'; starting from step 0")
        return TrainingState(), None
    model.load_state_dict(ckpt.model_state)
    torch.set_rng_state(ckpt.rng_state)
    reporter.log(f"resumed from '{ckpt.path.name}' at step {ckpt.state.global_step}")
    return ckpt.state, ckpt


def assemble_parts(model: nn.Module, problem: Problem, config: TrainConfig, info: DistInfo,
                   device: torch.device, ckpt: Checkpoint | None, hooks: TrainHooks
                   ) -> tuple[TrainingParts, nn.Module]:
    """The loop's parts after ``hooks.setup``, and the data-parallel wrapper."""
    cfg = config.train
    wrapped = wrap_model(model, info, cfg.strategy, device)
    parts = TrainingParts(
        model=model, forward_model=torch.compile(wrapped) if cfg.compile else wrapped,
        # One CPU process: torch's fused kernel without torch.optim (no torch._dynamo import).
        optimizer=build_optimizer(wrapped, cfg, standalone=not info.active and
                                  device.type == "cpu"),
        source=problem.make_source(cfg.batch_size, cfg.seed, info.rank, info.world),
        loss_of=loss_function(problem.arch["family"], loss_fn(problem.task)))
    if hooks.setup is not None:
        parts = hooks.setup(parts)
    if ckpt is not None:
        load_optimizer_state(wrapped, parts.optimizer, ckpt.optimizer_state, info, cfg.strategy)
    return parts, wrapped
