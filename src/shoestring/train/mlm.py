"""Masked-language-model pre-training of the encoder (``--objective mlm``) on a text corpus.

BERT's recipe (Devlin et al. 2019, section 3.1) without next-sentence
prediction (which RoBERTa, Liu et al. 2019, arXiv:1907.11692, found does not
help): each example is ``[CLS]`` followed by a window of the corpus's tokens,
laid out as a text classifier's inputs are (:mod:`shoestring.models.text_layout`:
``[PAD]`` 0, ``[CLS]`` 1, token ids shifted by 2), so a classifier fine-tuned
from the run (``--init-from``) reads its texts with the same ids. The
vocabulary gains one id, ``[MASK]``, after the shifted tokens. 15% of the
tokens are chosen and corrupted 80/10/10 (:mod:`shoestring.data.masking`),
drawn from the seed and the step alone, so a resumed run sees the same masks.

Scored by the masked tokens' cross-entropy (``val_loss``) and how many of them
the model predicts exactly (``val_accuracy``), on the same masked validation
windows at every evaluation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from shoestring.data.masking import IGNORE, mask_tokens
from shoestring.errors import ShoestringError
from shoestring.models.card import (
    Architecture,
    DataCard,
    Inputs,
    ModelCard,
    Outputs,
    TextLayout,
    TokenizerCard,
)
from shoestring.models.registry import DataShape, architecture_for
from shoestring.models.text_layout import CLS_ID, OFFSET, PAD_ID, classifier_layout
from shoestring.train.batches import WindowBatches, _rank_slice
from shoestring.types import Task

DEFAULT_SEQ_LEN = 128  # BERT pre-trained 90% of its steps at 128 tokens (section A.2)
MASK_SALT = 0x6D6C6D   # keeps mask draws apart from the window draws of the same step


class MaskedWindows:
    """``[CLS]`` + a corpus window per example, BERT-masked; inputs and targets
    (``IGNORE`` where not scored). The global batch is drawn and masked, then each
    process takes its rank's slice, so the masks do not depend on the process count."""

    def __init__(self, split, batch_size: int, seq_len: int, seed: int, mask_id: int,
                 tokenizer_vocab: int, prob: float, rank: int = 0, world: int = 1) -> None:
        self.windows = WindowBatches(split, batch_size, seq_len - 1, seed)
        self.steps_per_epoch = self.windows.steps_per_epoch
        self.examples_per_epoch = self.windows.examples_per_epoch
        self.seed, self.mask_id, self.prob = seed, mask_id, prob
        self.high = tokenizer_vocab + OFFSET
        self.rank, self.world = rank, world
        _rank_slice(batch_size, rank, world)

    def masked(self, x: torch.Tensor, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.cat((torch.full((len(x), 1), CLS_ID, dtype=x.dtype), x + OFFSET), dim=1)
        return mask_tokens(ids, seed=salt, mask_id=self.mask_id, low=OFFSET, high=self.high,
                           prob=self.prob)

    def batch(self, epoch: int, step_in_epoch: int, global_step: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.windows.batch(epoch, step_in_epoch, global_step)
        inputs, targets = self.masked(x, self.seed * 1_000_003 + global_step + MASK_SALT)
        if self.world > 1:
            rows = _rank_slice(len(inputs), self.rank, self.world)
            inputs, targets = inputs[rows], targets[rows]
        return inputs, targets


@torch.inference_mode()
def masked_lm_metrics(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                      device: torch.device) -> dict[str, float]:
    """Masked tokens' mean cross-entropy, perplexity and exact-prediction accuracy."""
    was = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for x, y in batches:
        logits = model(x.to(device))[0].float()
        y = y.to(device)
        scored = y != IGNORE
        total += torch.nn.functional.cross_entropy(logits[scored], y[scored],
                                                   reduction="sum").item()
        correct += int((logits[scored].argmax(-1) == y[scored]).sum())
        count += int(scored.sum())
    model.train(was)
    loss = total / max(count, 1)
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)),
            "val_accuracy": correct / max(count, 1)}


def _base_layout(base) -> TextLayout:
    layout = base.card.tokenizer.layout if base.card.tokenizer else None
    if base.family != "encoder" or layout is None or layout.kind != "cls-pad" or \
            layout.mask_id is None:
        raise ShoestringError(f"--objective mlm continues the pre-training of a Shoestring "
                              f"masked language model; init_from '{base.path}' is not one",
                              hint="fine-tune it for classification on jsonl: data instead, "
                              "or pre-train from scratch (no --init-from)")
    return layout


def mlm_problem(config, device: torch.device, workspace: Path, base=None):
    """The :class:`~shoestring.train.problem.Problem` of MLM pre-training on ``text:`` data
    (continued from ``base``, a Shoestring MLM run, when given)."""
    from shoestring.data.text import default_cache_dir, describe, load_text_data
    from shoestring.train.problem import Problem
    from shoestring.train.recipe import apply_recipe

    layout = _base_layout(base) if base is not None else None
    data = load_text_data(config.data.source, tokenizer=config.data.tokenizer or "char",
                          cache_dir=default_cache_dir(workspace),
                          bpe_vocab_size=config.data.bpe_vocab_size,
                          val_fraction=config.data.val_fraction,
                          tokenizer_file=base.tokenizer_file() if base else None)
    tok_vocab = data.vocab_size
    mask_id = layout.mask_id if layout else tok_vocab + OFFSET
    if base is not None:
        seq_len = min(config.data.max_length or base.block_size, base.block_size)
        arch = base.architecture(config.model, num_classes=0, mlm=True)
    else:
        seq_len = config.data.max_length or min(config.model.block_size or DEFAULT_SEQ_LEN,
                                               DEFAULT_SEQ_LEN)
        shape = DataShape(input_shape=(seq_len,), num_outputs=2, vocab_size=mask_id + 1,
                          pad_id=PAD_ID)
        arch = architecture_for(config.model, shape)
        if arch["family"] != "encoder":
            raise ShoestringError(f"--objective mlm pre-trains an encoder; model "
                                  f"{config.model.name!r} is a {arch['family']!r} model",
                                  hint="use --model encoder (or bert-tiny, bert-base)")
        arch["params"].update(mlm=True, num_classes=0)
    config, recipe_notes = apply_recipe(config, len(data.train) // seq_len)
    seed, prob = config.train.seed, config.train.mlm_probability

    def make_source(batch: int, s: int, rank: int, world: int) -> MaskedWindows:
        return MaskedWindows(data.train, batch, seq_len, s, mask_id, tok_vocab, prob, rank,
                             world)

    def make_evaluate(model: nn.Module, eval_batch: int) -> Callable[[], dict[str, float]]:
        # The same windows and masks at every evaluation, so they are comparable.
        val = MaskedWindows(data.val, eval_batch, seq_len, seed + 7919, mask_id, tok_vocab,
                            prob)
        batches = [val.batch(0, i, i) for i in range(config.train.eval_iters)]
        return lambda: masked_lm_metrics(model, batches, device)

    info = describe(data)
    layout = classifier_layout().model_copy(update={"mask_id": mask_id})
    card = ModelCard(
        architecture=Architecture(**arch), task=Task.language_modeling,
        inputs=Inputs(shape=[seq_len], dtype="int64"),
        outputs=Outputs(kind="logits", size=int(arch["params"]["vocab_size"])),
        tokenizer=TokenizerCard(kind=info["tokenizer"], vocab_size=tok_vocab, layout=layout),
        data=DataCard(source=config.data.source,
                      corpus={k: info[k] for k in ("tokenizer", "vocab_size", "tokens",
                                                   "sha256")}))
    problem = Problem(
        task=Task.language_modeling, data_name=config.data.source, arch=arch, card=card,
        n_train=len(data.train) // seq_len, tokens_per_example=seq_len,
        make_source=make_source, make_evaluate=make_evaluate, tokenizer=data.tokenizer,
        notes=[f"masked-LM pre-training: {info['tokens']:,} tokens, vocab {tok_vocab} "
               f"({info['tokenizer']}) + [PAD] [CLS] [MASK], {seq_len}-token examples, "
               f"{prob:.0%} masked"] + list(data.notes))
    return problem, config, recipe_notes
