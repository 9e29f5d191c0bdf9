"""What is being trained: data, model architecture, evaluation, per data kind.

Two kinds share the engine:

- *examples*: an in-memory :class:`Dataset` (images, tables, labelled texts),
  batched by shuffled slices, selected on a validation split (the source's own,
  or carved from the training split when the run stops on a target or follows
  a recipe) and scored once on its test split;
- *text*: a tokenized corpus for language modelling, batched as random token
  windows and scored by validation loss.

:func:`load_problem` decides which, loads the data once and returns what the
orchestrator needs; it performs no training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from shoestring.data.holdout import carve_validation
from shoestring.data.sources import SourceOptions, load_dataset, split_spec
from shoestring.errors import ShoestringError
from shoestring.models.card import (
    Architecture,
    DataCard,
    Inputs,
    ModelCard,
    Outputs,
    PreprocessingCard,
    TokenizerCard,
)
from shoestring.models.registry import DataShape, architecture_for
from shoestring.models.text_layout import classifier_layout
from shoestring.train.base_model import Base
from shoestring.train.batches import BatchSource, TensorBatches, WindowBatches
from shoestring.train.config import TrainConfig
from shoestring.train.distributed import DistInfo, barrier
from shoestring.train.engine import SCREEN_SIZE, screening_margin
from shoestring.train.evaluate import baseline_metrics, evaluate
from shoestring.train.recipe import apply_recipe
from shoestring.train.stopping import Target
from shoestring.train.table_defaults import table_defaults
from shoestring.train.tensors import prepare_tensors
from shoestring.types import Preprocessing, Task, TensorDataset

TOKEN_FAMILIES = ("gpt", "encoder")


@dataclass
class Problem:
    task: Task
    data_name: str
    arch: dict[str, Any]
    card: ModelCard                          # what the run folder's model.json will say
    n_train: int                             # examples (or windows) per epoch
    tokens_per_example: int                  # block_size for text, else 0
    make_source: Callable[[int, int, int, int], BatchSource]  # (batch, seed, rank, world)
    make_evaluate: Callable[[nn.Module, int], Callable[[], dict[str, float]]]  # (model, batch)
    make_screen: Callable[[nn.Module, Target | None], Callable[[], bool]] = \
        field(default=lambda model, target: (lambda: True))
    tokenizer: Any = None                    # saved beside the model (text runs)
    # The test split, scored once after training (None: the loop's evaluation is final).
    make_test_evaluate: Callable[[nn.Module, int], Callable[[], dict[str, float]]] | None = None
    notes: list[str] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)  # see evaluate.baseline_metrics


def _is_text_corpus(spec: str) -> bool:
    return split_spec(spec)[0] == "text"


def load_problem(config: TrainConfig, options: SourceOptions, device: torch.device,
                 workspace: Path, info: DistInfo = DistInfo(), base: Base | None = None
                 ) -> tuple[Problem, TrainConfig, list[str]]:
    """The problem, the config after its recipe, and the recipe's notes.

    The recipe runs between loading the raw data (it needs the number of
    examples) and preparing it (it may change the preprocessing). A transformer
    ``base`` (``--init-from``) gives the architecture and the tokenizer
    (:mod:`shoestring.train.base_model`).
    """
    base = base if base is not None and base.is_transformer else None
    mlm = config.train.objective == "mlm"
    if mlm and not _is_text_corpus(config.data.source):
        raise ShoestringError("--objective mlm pre-trains on a text corpus, got "
                              f"{config.data.source!r}", hint="pass --data text:FILE_OR_FOLDER")
    if _is_text_corpus(config.data.source):
        # Rank 0 tokenizes (or finds the cache) first; the others then reuse it.
        if not info.is_main:
            barrier(info)
        if mlm:
            from shoestring.train.mlm import mlm_problem

            result = mlm_problem(config, device, workspace, base)
        else:
            result = _text_problem(config, device, workspace, base)
        if info.is_main:
            barrier(info)
        return result
    return _examples_problem(config, options, device, base)


def _text_problem(config: TrainConfig, device: torch.device, workspace: Path,
                  base: Base | None = None) -> tuple[Problem, TrainConfig, list[str]]:
    from shoestring.data.text import default_cache_dir, describe, load_text_data

    if base is not None and base.family != "gpt":
        raise ShoestringError(f"init_from '{base.path}' is an {base.family!r} model, which "
                              "does not predict the next token of a corpus",
                              hint="continue its pre-training with --objective mlm, or "
                              "fine-tune it on labelled jsonl: data")
    data = load_text_data(config.data.source, tokenizer=config.data.tokenizer or "char",
                          cache_dir=default_cache_dir(workspace),
                          bpe_vocab_size=config.data.bpe_vocab_size,
                          val_fraction=config.data.val_fraction,
                          tokenizer_file=base.tokenizer_file() if base else None)
    if base is not None:
        base.check_vocab(data.vocab_size)
        arch = base.architecture(config.model)
        block = base.window(config.model.block_size)
    else:
        shape = DataShape(input_shape=(config.model.block_size or 0,),
                          num_outputs=data.vocab_size, vocab_size=data.vocab_size)
        arch = architecture_for(config.model, shape)
        if arch["family"] != "gpt":
            raise ShoestringError(f"model {config.model.name!r} cannot model a text corpus",
                                  hint="use model 'gpt' or a GPT preset such as gpt-nano")
        block = int(arch["params"]["block_size"])
    vocab = int(arch["params"]["vocab_size"])
    config, recipe_notes = apply_recipe(config, len(data.train) // block)
    eval_iters, seed = config.train.eval_iters, config.train.seed

    def make_evaluate(model: nn.Module, eval_batch: int) -> Callable[[], dict[str, float]]:
        # The same validation windows every time, so evaluations are comparable.
        @torch.inference_mode()
        def run() -> dict[str, float]:
            was = model.training
            model.eval()
            gen = torch.Generator().manual_seed(seed + 7919)
            total = 0.0
            for _ in range(eval_iters):
                x, y = data.get_batch("val", eval_batch, block, gen)
                total += model(x.to(device), y.to(device))[1].float().item()
            model.train(was)
            val = total / eval_iters
            return {"val_loss": val, "val_ppl": math.exp(min(val, 50.0))}
        return run

    info = describe(data)
    tokenizer_card = TokenizerCard(kind=info["tokenizer"], vocab_size=data.vocab_size)
    if base is not None:  # the base's own tokenizer, described as the base describes it
        tokenizer_card = base.card.tokenizer.model_copy(update={"vocab_size": data.vocab_size})
    card = ModelCard(
        architecture=Architecture(**arch), task=Task.language_modeling,
        inputs=Inputs(shape=[int(arch["params"]["block_size"])], dtype="int64"),
        outputs=Outputs(kind="logits", size=vocab),
        tokenizer=tokenizer_card,
        data=DataCard(source=config.data.source,
                      corpus={k: info[k] for k in ("tokenizer", "vocab_size", "tokens",
                                                   "sha256")}))
    problem = Problem(
        task=Task.language_modeling, data_name=config.data.source, arch=arch, card=card,
        n_train=len(data.train) // block, tokens_per_example=block,
        make_source=lambda batch, s, rank, world: WindowBatches(data.train, batch, block, s,
                                                                rank, world),
        make_evaluate=make_evaluate, tokenizer=data.tokenizer,
        notes=[f"corpus: {info['tokens']:,} tokens, vocab {info['vocab_size']} "
               f"({info['tokenizer']}), cache {'reused' if info['cache_hit'] else 'built'}"]
        + list(data.notes))
    return problem, config, recipe_notes


# Sources whose decoded arrays the workspace caches in plaintext (data/idx.py ->
# data/array_cache.py): statistics derived from them may be cached beside them.
ARRAY_CACHED_SOURCES = ("fashion-mnist", "idx")


def _stats_cache(spec: str, options: SourceOptions) -> Path | None:
    """Where feature statistics of this source are cached (train/stats_cache.py), if at all."""
    if options.cache_dir is None or split_spec(spec)[0] not in ARRAY_CACHED_SOURCES:
        return None
    return Path(options.cache_dir).parent / "feature-stats"


def _examples_problem(config: TrainConfig, options: SourceOptions, device: torch.device,
                      base: Base | None = None) -> tuple[Problem, TrainConfig, list[str]]:
    if base is not None:
        if base.family != "encoder":
            raise ShoestringError(f"init_from '{base.path}' is a {base.family!r} model; "
                                  f"labelled data ({config.data.source!r}) trains an encoder",
                                  hint="fine-tune a gpt model on text: data")
        length = min(options.max_length or base.block_size, base.block_size)
        options = replace(options, tokenizer_file=base.tokenizer_file(), max_length=length,
                          layout=base.card.tokenizer.layout)
    dataset = load_dataset(config.data.source, options)
    notes: list[str] = []
    if dataset.val is None and (config.train.target or config.train.recipe):
        # Stopping and recipes select the model on held-out data: give them a
        # validation split of their own, so the test split stays unseen.
        n, seed = len(dataset.train), config.train.seed
        dataset = carve_validation(dataset, config.data.val_fraction, seed)
        notes.append(f"validation: {len(dataset.val):,} of {n:,} training examples held out "
                     f"(--val-fraction {config.data.val_fraction:g}, seed {seed}) for stopping "
                     "and target checks; the test split is scored once, at the end")
    tokens = not dataset.train.x.is_floating_point() and dataset.train.x.dtype != torch.uint8
    if not tokens and len(dataset.input_shape) == 1 and config.train.recipe is None:
        config, table_notes = table_defaults(config, len(dataset.train))
        notes += table_notes
    config, recipe_notes = apply_recipe(config, len(dataset.train))
    shape = DataShape(dataset.input_shape, dataset.num_outputs,
                      vocab_size=getattr(dataset, "vocab_size", None) or None,
                      pad_id=getattr(dataset, "pad_id", None))
    if base is not None:
        base.check_vocab(shape.vocab_size or 0)
        arch = base.architecture(config.model, num_classes=dataset.num_outputs, mlm=False)
    else:
        arch = architecture_for(config.model, shape)
    if tokens != (arch["family"] in TOKEN_FAMILIES):
        raise ShoestringError(
            f"model {config.model.name!r} does not fit data {config.data.source!r} "
            f"({'token ids' if tokens else 'numeric features'})",
            hint="use an 'encoder' model for labelled texts, and mlp/cnn for numeric data")
    train_inputs = None
    if tokens:
        pre = Preprocessing()
        train = TensorDataset(dataset.train.x, dataset.train.y.long())
        test = TensorDataset(dataset.test.x, dataset.test.y.long())
        val = None if dataset.val is None else TensorDataset(dataset.val.x,
                                                             dataset.val.y.long())
    else:
        prepared = prepare_tensors(dataset, config.data.normalize, raw_train=True,
                                   stats_cache=_stats_cache(config.data.source, options))
        train, test, pre = prepared.train, prepared.test, prepared.preprocessing
        train_inputs = prepared.train_inputs
        val = prepared.val
        if config.data.normalize == "auto":
            notes.append(f"inputs: {prepared.normalize}"
                         + (" (per feature, training-split statistics)"
                            if prepared.normalize == "standardize" else "")
                         + ("; regression targets standardized, predictions mapped back"
                            if pre.target_mean is not None else ""))
    task = dataset.task
    baseline = baseline_metrics(dataset.train.y, test, task, dataset.class_names,
                                prefix=dataset.test_split)
    train = TensorDataset(train.x.to(device), train.y.to(device))
    test = TensorDataset(test.x.to(device), test.y.to(device))
    if val is not None:
        val = TensorDataset(val.x.to(device), val.y.to(device))

    def make_evaluate(model: nn.Module, eval_batch: int) -> Callable[[], dict[str, float]]:
        # During training only the validation split is scored; a run without
        # one records its training loss alone until the final test score.
        return (lambda: evaluate(model, val, task, prefix="val", preprocessing=pre)) \
            if val is not None else dict

    def make_test_evaluate(model: nn.Module, eval_batch: int) -> Callable[[], dict[str, float]]:
        return lambda: evaluate(model, test, task, prefix=dataset.test_split, preprocessing=pre)

    def make_screen(model: nn.Module, target: Target | None) -> Callable[[], bool]:
        if target is None or val is None or not target.metric.endswith("accuracy") or \
                len(val) < 3 * SCREEN_SIZE:
            return lambda: True
        pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:SCREEN_SIZE]
        screen = TensorDataset(val.x.index_select(0, pick.to(val.x.device)),
                               val.y.index_select(0, pick.to(val.y.device)))
        floor = target.value - screening_margin(target.value, SCREEN_SIZE)
        return lambda: evaluate(model, screen, task, prefix="val",
                                preprocessing=pre)[target.metric] >= floor

    tokenizer = getattr(dataset, "tokenizer", None) if tokens else None
    d = config.data
    card = ModelCard(
        architecture=Architecture(**arch), task=task,
        inputs=Inputs(shape=list(dataset.input_shape), dtype="int64" if tokens else "float32"),
        outputs=Outputs(kind="softmax" if task is Task.classification else "identity",
                        size=dataset.num_outputs),
        preprocessing=PreprocessingCard.of(pre),
        class_names=list(dataset.class_names) if dataset.class_names else None,
        feature_names=list(dataset.feature_names) if dataset.feature_names else None,
        tokenizer=(base.card.tokenizer.model_copy(update={"vocab_size": tokenizer.vocab_size})
                   if base is not None else
                   TokenizerCard(kind=getattr(tokenizer, "kind", None),
                                 vocab_size=tokenizer.vocab_size, layout=classifier_layout()))
        if tokenizer is not None else None,
        data=DataCard(source=d.source, label=d.label or ("label" if tokens else None),
                      text_field=d.text_field if tokens else None))
    problem = Problem(task=task, data_name=dataset.name, arch=arch, card=card,
                      n_train=len(train), tokens_per_example=0,
                      make_source=lambda batch, s, rank, world: TensorBatches(
                          train, batch, s, rank, world, inputs=train_inputs),
                      make_evaluate=make_evaluate, make_screen=make_screen, tokenizer=tokenizer,
                      make_test_evaluate=make_test_evaluate,
                      notes=list(dataset.notes) + notes, baseline=baseline)
    return problem, config, recipe_notes
