"""Fine-tuning recipes and memory savers as training hooks (``--finetune``, ``--precision
bf16-true``, ``--loss-chunks``, ``--offload-activations``), and ``--merge``.

Each option becomes one of the loop's documented hooks
(:mod:`shoestring.train.hooks`), so the loop itself knows nothing of them:

- ``--finetune lora|qlora``: a ``lora`` transform (:mod:`shoestring.models.adapters`)
  applied after the warm start and recorded on the card, naming the base; the
  run then saves its adapters alone. A classifier's head is trained with the
  adapters (it is task-specific: PEFT's ``modules_to_save``), and so is a
  pooler the base lacks.
- ``--precision bf16-true``: a ``cast`` transform to bf16, recorded on the card.
- ``--loss-chunks N``: ``setup`` switches the GPT's loss to the chunked one.
- ``--offload-activations``: ``loss`` runs the forward pass under
  ``save_on_cpu`` (CUDA; a no-op on a CPU, said once in the log).
- ``--merge``: after training, the adapters are folded into the base's
  full-precision weights (also under QLoRA, whose 4-bit copy is only for
  training) and the run saves whole weights, with no ``lora`` transform.

8-bit optimizers and the optimizer step in backward are the optimizer's
business (:func:`shoestring.train.optim.build_optimizer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from shoestring.errors import ConfigError
from shoestring.models.adapters import KIND as LORA
from shoestring.models.adapters import lora_config
from shoestring.models.card import ModelCard, TransformRecord
from shoestring.models.lora import LoRASpec
from shoestring.train.hooks import TrainHooks, TrainingParts
from shoestring.train.memory_savers import activation_offload, offload_note

if TYPE_CHECKING:
    from shoestring.train.build import Parent
    from shoestring.train.config import TrainConfig
    from shoestring.train.problem import Problem


def lora_spec(cfg) -> LoRASpec:
    targets = tuple(t.strip() for t in cfg.lora_targets.split(",") if t.strip())
    return LoRASpec(rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                    targets=targets)


def heads_to_train(problem_arch: dict[str, Any], parent: Parent) -> tuple[str, ...]:
    """Head modules trained in full beside LoRA adapters: a classifier's, and a pooler that
    the base has no trained weights for."""
    params = problem_arch["params"]
    if problem_arch["family"] != "encoder" or not params.get("num_classes"):
        return ()
    theirs = parent.card.architecture.params
    return ("classifier",) + (("pooler",) if theirs.get("mlm") else ())


def recipe_problems(config: TrainConfig, parent: Parent | None) -> list[str]:
    cfg, out = config.train, []
    if cfg.finetune is not None and parent is None:
        out.append(f"--finetune {cfg.finetune} fine-tunes a model: name it with --init-from "
                   "(a run folder, a run in the ledger, or a Hugging Face checkpoint)")
    if cfg.finetune in ("lora", "qlora") and parent is not None and \
            any(t.kind == LORA for t in parent.card.transforms):
        out.append(f"init_from '{parent.path}' is itself an adapter run; merge it first "
                   "(train it with --merge) and fine-tune the merged run")
    if cfg.merge and cfg.finetune not in ("lora", "qlora"):
        out.append("--merge folds LoRA adapters into the weights; it needs --finetune lora "
                   "or qlora")
    return out


def settled(config: TrainConfig, world: int) -> TrainConfig:
    """The config with what a recipe implies made explicit: the optimizer step in backward
    takes the whole per-process batch in one micro-batch (no search that would step it)."""
    cfg = config.train
    if cfg.optimizer_in_backward and cfg.micro_batch_size is None:
        cfg = cfg.model_copy(update={"micro_batch_size": max(cfg.batch_size // world, 1)})
        return config.model_copy(update={"train": cfg})
    return config


def recipe_hooks(config: TrainConfig, problem: Problem, parent: Parent | None,
                 device_type: str, world: int = 1) -> TrainHooks:
    """The hooks that carry out this config's fine-tuning recipe and memory savers."""
    from shoestring.train.memory_savers import recipe_problems as saver_problems

    cfg = config.train
    problems = recipe_problems(config, parent) + \
        saver_problems(cfg, device_type, world, problem.arch["family"])
    if problems:
        raise ConfigError(problems, hint="see docs/finetune.md")
    transforms: list[TransformRecord] = []
    if cfg.precision == "bf16-true":
        transforms.append(TransformRecord(kind="cast", config={"dtype": "bfloat16"}))
    if cfg.finetune in ("lora", "qlora"):
        transforms.append(TransformRecord(kind=LORA, config=lora_config(
            lora_spec(cfg), base=str(parent.path.resolve()),
            train_also=heads_to_train(problem.arch, parent), quantize=cfg.finetune == "qlora")))
    setup = loss = None
    if cfg.loss_chunks > 1:
        def setup(parts: TrainingParts) -> TrainingParts:
            parts.model.set_loss_chunks(cfg.loss_chunks)
            return parts
    if cfg.offload_activations and device_type == "cuda":
        def loss(model, x, y, default):
            with activation_offload(True, device_type):
                return default(model, x, y)
    note = offload_note(cfg.offload_activations, device_type)
    return TrainHooks(transforms=tuple(transforms), setup=setup, loss=loss,
                      notes=(note,) if note else ())


def trainable_note(model: nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {trained:,} of {total:,} ({trained / max(total, 1):.2%})"


def merged_for_saving(model: nn.Module, card: ModelCard, problem: Problem,
                      parent: Parent) -> tuple[nn.Module, ModelCard]:
    """The trained adapters folded into the base's full-precision weights, and the card
    without the ``lora`` transform: a whole model that loads without its base."""
    from shoestring.models.lora import adapter_state, add_lora, merge_lora
    from shoestring.models.registry import build_model
    from shoestring.models.transforms import apply_transforms
    from shoestring.models.warm_start import load_matching_weights

    record = next(t for t in card.transforms if t.kind == LORA)
    others = [t for t in card.transforms if t.kind != LORA]
    fresh = apply_transforms(build_model(problem.arch), others)
    load_matching_weights(fresh, parent.weights(), str(parent.path))
    spec = LoRASpec(rank=record.config["rank"], alpha=record.config["alpha"],
                    dropout=record.config["dropout"], targets=tuple(record.config["targets"]))
    add_lora(fresh, spec, tuple(record.config["train_also"]))
    fresh.load_state_dict(adapter_state(model), strict=False)
    merged = merge_lora(fresh).to(next(model.parameters()).device)
    return merged, card.model_copy(update={"transforms": others})
