"""FLOPs of one step, split into forward, backward and recomputation.

Two numbers matter and they differ:

- *model FLOPs* (PaLM, Chowdhery et al. 2022, arXiv:2204.02311, appendix B;
  nanoGPT's ``estimate_mfu``): ``6·N + 12·L·H·Q·T`` per token — what MFU is
  defined against, whatever the implementation recomputes;
- *executed FLOPs*: what the kernels actually multiply, as torch's
  ``FlopCounterMode`` counts it — matmuls at 2 FLOPs per multiply-add, the
  attention scores and weighted sum over the full ``s×s`` square (the
  counter's convention, which ignores causal masking), a flash-attention
  backward that recomputes the scores (FlashAttention-2, Dao 2023,
  arXiv:2307.08691, section 3.1.2: 5 matmuls backward against 2 forward), and
  a second forward of every block under full activation checkpointing.

Time estimates divide executed FLOPs by an achieved rate; MFU is reported
against model FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params, layer_linears

# FlopCounterMode's SDPA formulas (torch/utils/flop_counter.py): forward = 2
# bmm (QKᵀ, PV); backward = 5 bmm (recomputed QKᵀ, dP, dV, dQ, dK).
ATTN_FWD_BMMS = 2
ATTN_BWD_BMMS = 5


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one optimizer step (all micro-batches) on one model replica."""

    forward: int
    backward: int
    recompute: int
    model: int      # PaLM model FLOPs (6N + 12LHQT per token), for MFU

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.recompute


def _lora_params_per_layer(spec: ModelSpec, setup: StepSetup) -> tuple[int, int]:
    """(adapter matmul params per layer, of which in the 'A' matrices)."""
    shapes = layer_linears(spec)
    r = setup.lora_rank
    a = sum(r * shapes[t][0] for t in setup.lora_targets if t in shapes)
    b = sum(r * shapes[t][1] for t in setup.lora_targets if t in shapes)
    return a + b, a


# The order in which a block's matmuls read their inputs: an input needs a
# gradient only downstream of the first trained weight.
STAGES = (("q", "k", "v"), ("o",), ("gate", "up", "fc"), ("down", "proj"))


def _first_layer_no_input_grad(spec: ModelSpec, setup: StepSetup) -> tuple[int, int]:
    """(frozen, adapter-A) matmul params of block 0 whose input needs no gradient.

    With the embedding frozen, block 0's input needs no gradient; each later
    stage's input does once an earlier stage holds an adapter.
    """
    shapes = layer_linears(spec)
    targets = set(setup.lora_targets)
    frozen = a_mats = 0
    for stage in STAGES:
        roles = [r for r in stage if r in shapes]
        for r in roles:
            frozen += shapes[r][0] * shapes[r][1]
            if r in targets:
                a_mats += setup.lora_rank * shapes[r][0]
        if targets & set(roles):
            break
    return frozen, a_mats


def model_flops(spec: ModelSpec, sequences: int, seq_len: int) -> int:
    """PaLM model FLOPs (appendix B) of training on ``sequences`` × ``seq_len`` tokens.

    6N per token, N the weights that multiply (every matmul weight of the blocks
    and the head; position, token-type and an untied input embedding are
    lookups), plus 12·L·H·Q·T per token for the attention scores and their
    weighted sum (half of the full-square forward+backward count of
    :func:`step_flops`); per-sequence matmuls (an encoder's pooler and
    classifier) count once per sequence. MFU, in planning and in training
    (:func:`shoestring.train.meter.transformer_flops_per_token`), is measured
    against this one definition. nanoGPT's ``estimate_mfu`` also counts norms
    and biases in N (GPT-2 124M: 855.2M FLOPs per token at 1024 against 854.4M).

    >>> from shoestring.plan.presets import load_preset
    >>> model_flops(load_preset("gpt2-124m"), 1, 1024) // 1024
    854438400
    """
    counts = count_params(spec)
    s = 1 if spec.family == "mlp" else seq_len
    tokens = sequences * s
    attention = 0 if spec.family == "mlp" else 12 * spec.layers * spec.hidden * s * tokens
    return 6 * tokens * counts.matmul_per_token + 6 * sequences * counts.matmul_per_sequence \
        + attention


def step_flops(spec: ModelSpec, setup: StepSetup) -> StepFlops:
    """Executed and model FLOPs of one step of ``setup`` (one replica, all micro-batches).

    >>> from shoestring.plan.presets import load_preset
    >>> f = step_flops(load_preset("gpt2-124m"), StepSetup(micro_batch=4, seq_len=1024))
    >>> round(f.total / 1e12, 3)
    3.577
    """
    counts = count_params(spec)
    b = setup.micro_batch
    s = 1 if spec.family == "mlp" else setup.seq_len
    tokens = b * s
    block_mats = counts.matmul_per_token - counts.head_matmul
    head = counts.head_matmul
    seq_mats = counts.matmul_per_sequence
    attn_fwd = 0 if spec.family == "mlp" else \
        ATTN_FWD_BMMS * 2 * b * spec.heads * s * s * spec.head_dim * spec.layers
    attn_bwd = attn_fwd * ATTN_BWD_BMMS // ATTN_FWD_BMMS

    adapters = 0
    if setup.adapters:
        adapters = _lora_params_per_layer(spec, setup)[0] * spec.layers
    fwd_mats = 2 * tokens * (block_mats + head + adapters) + 2 * b * seq_mats
    forward = fwd_mats + attn_fwd

    if setup.mode == "serve":
        # Prefill: every position through the blocks, the LM head at the last one only.
        prefill = 2 * tokens * block_mats + 2 * b * (head + seq_mats) + attn_fwd
        return StepFlops(forward=prefill, backward=0, recompute=0, model=prefill)
    if setup.adapters:
        # Frozen weights need input gradients only (1× forward); adapters need
        # both (2×); block 0 skips the input gradients nothing upstream needs.
        no_grad_frozen, no_grad_a = _first_layer_no_input_grad(spec, setup)
        backward = 2 * tokens * (block_mats + head - no_grad_frozen) + 2 * b * seq_mats \
            + 2 * (2 * tokens * adapters) - 2 * tokens * no_grad_a + attn_bwd
    else:
        backward = 2 * fwd_mats + attn_bwd
        if spec.family == "mlp":
            # The data needs no gradient: the first layer computes its weight gradient only.
            backward -= 2 * tokens * spec.widths[0] * spec.widths[1]
    recompute = 0
    if setup.checkpointing == "full":
        # torch.utils.checkpoint stops recomputing once every tensor the block's
        # backward needs exists again ("early stop", the default): in a pre-norm
        # decoder block the MLP's output projection feeds only the residual sum,
        # which saves nothing, so it is not rerun. Post-norm (BERT) blocks end in
        # a norm that saves its input, so the whole block reruns.
        # An adapter on that projection saves its A output, so the projection
        # and A rerun and only B does not; a QLoRA layer's saved 4-bit codes
        # count as tensors to rebuild, so there the projection reruns too.
        shapes = layer_linears(spec)
        role = "down" if spec.mlp == "swiglu" else "proj"
        if spec.family != "decoder":
            skipped = 0
        elif setup.adapters and role in setup.lora_targets:
            skipped = setup.lora_rank * shapes[role][1]
        elif setup.finetune == "qlora":
            skipped = 0
        else:
            skipped = shapes[role][0] * shapes[role][1]
        recompute = 2 * tokens * (block_mats + adapters - spec.layers * skipped) + attn_fwd
    model = model_flops(spec, b, s)
    acc = setup.grad_accum
    return StepFlops(forward=forward * acc, backward=backward * acc, recompute=recompute * acc,
                     model=model * acc)


def trained_params(spec: ModelSpec, setup: StepSetup) -> int:
    """Parameters that get gradients: all of them, or only the LoRA adapters."""
    if setup.adapters:
        return _lora_params_per_layer(spec, setup)[0] * spec.layers
    return count_params(spec).total
