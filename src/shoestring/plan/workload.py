"""The workload a plan prices: how many tokens, in what batches, doing what.

Defaults, when the user gives none:

- pre-training tokens: 20 per parameter, the compute-optimal ratio of
  Hoffmann et al. 2022 ("Chinchilla", arXiv:2203.15556, table 3);
- fine-tuning tokens: 10M (a few thousand instruction examples);
- pre-training batch: ~0.5M tokens per step (GPT-3, Brown et al. 2020, table 2.1
  uses 0.5M for its 125M–350M models), fine-tuning 32 sequences, MLP 128 samples
  (the seed example's Keras batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shoestring.plan.config import PlanConfig
from shoestring.plan.specs import ModelSpec, count_params

CHINCHILLA_TOKENS_PER_PARAM = 20
FINETUNE_TOKENS = 10_000_000
PRETRAIN_BATCH_TOKENS = 524_288
FINETUNE_BATCH = 32
MLP_BATCH = 128
MLP_SAMPLES = 60_000  # Fashion-MNIST's training split, the seed workload
MAX_DEFAULT_SEQ = 2048
ENCODER_SEQ = 512


@dataclass(frozen=True)
class Workload:
    """A resolved workload; ``units`` are tokens (samples for an MLP)."""

    kind: str              # pretrain | finetune | serve
    seq_len: int
    global_batch: int      # sequences (samples) per optimizer step
    total_units: float     # tokens (samples) to process
    finetune: str          # full | lora | qlora
    notes: tuple[str, ...] = ()

    @property
    def units_per_step(self) -> int:
        return self.global_batch * self.seq_len

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.total_units / self.units_per_step))


def resolve_workload(spec: ModelSpec, cfg: PlanConfig) -> Workload:
    """Fill the workload's defaults from the model and the config."""
    notes: list[str] = []
    if spec.family == "mlp":
        seq = 1
    elif cfg.serve:
        seq = cfg.context
    elif cfg.seq_len:
        seq = cfg.seq_len
    else:
        seq = min(spec.max_seq, ENCODER_SEQ if spec.family == "encoder" else MAX_DEFAULT_SEQ)
        notes.append(f"sequence length {seq} (the model's context, capped)")
    if spec.family != "mlp" and seq > spec.max_seq:
        notes.append(f"sequence length {seq} exceeds the model's context {spec.max_seq}")
    kind = "serve" if cfg.serve else ("finetune" if cfg.finetune else "pretrain")
    if cfg.serve:
        return Workload(kind, seq, cfg.serve_batch, float(cfg.requests), "full", tuple(notes))
    if cfg.tokens is not None:
        units = cfg.tokens
    elif cfg.samples is not None:
        units = cfg.samples * cfg.epochs * seq
    elif spec.family == "mlp":
        units = MLP_SAMPLES * cfg.epochs
        notes.append(f"{MLP_SAMPLES} samples × {cfg.epochs:g} epochs (Fashion-MNIST size)")
    elif kind == "finetune":
        units = FINETUNE_TOKENS
        notes.append(f"{FINETUNE_TOKENS:.0e} fine-tuning tokens (default; set --tokens)")
    else:
        units = CHINCHILLA_TOKENS_PER_PARAM * count_params(spec).total
        notes.append(f"{units:.3g} tokens = 20 per parameter (Chinchilla-optimal)")
    if cfg.batch_size:
        batch = cfg.batch_size
    elif spec.family == "mlp":
        batch = MLP_BATCH
    elif kind == "finetune" or spec.family == "encoder":
        batch = FINETUNE_BATCH
    else:
        batch = max(1, PRETRAIN_BATCH_TOKENS // seq)
    return Workload(kind, seq, batch, float(units), cfg.finetune or "full", tuple(notes))
