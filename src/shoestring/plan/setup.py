"""One training (or serving) step on one device: what the estimates and the trace share.

A :class:`StepSetup` fixes every choice that changes the memory or the FLOPs of
a step: micro-batch, sequence length, precision, activation checkpointing,
optimizer, fine-tuning method, sharding, and which kernel set runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Precision = Literal["fp32", "bf16-mixed", "bf16"]
Checkpointing = Literal["none", "selective", "full"]
Optimizer = Literal["adamw", "sgd", "adam8bit", "paged-adam8bit"]
Finetune = Literal["full", "lora", "qlora"]
Kernels = Literal["cuda", "cpu"]

# PEFT's usual LoRA defaults (Hu et al. 2021 adapt q and v; QLoRA section 4
# shows adapting every linear layer is needed to match full fine-tuning).
DEFAULT_LORA_RANK = 16
DEFAULT_LORA_ALPHA = 32.0
DEFAULT_LORA_TARGETS = ("q", "k", "v", "o")


@dataclass(frozen=True)
class StepSetup:
    """One step on one device.

    Attributes:
        mode: ``train`` (forward, backward, optimizer step) or ``serve`` (inference).
        micro_batch: sequences (samples) per forward pass on one device.
        seq_len: tokens per sequence (ignored by MLPs); for ``serve``, the context.
        precision: ``fp32``; ``bf16-mixed`` (fp32 master weights, bf16 autocast
            compute); ``bf16`` (pure bf16: weights, gradients and optimizer
            states in bf16, as torchtune and Shoestring's ``--finetune`` recipes
            train; and serving's bf16 weights).
        checkpointing: activation recomputation: ``none``, ``selective``
            (attention core only, Korthikanti et al. 2022) or ``full`` (each block).
        optimizer: ``adamw`` (two moments in the parameters' dtype), ``sgd``
            (momentum), ``adam8bit`` (two 8-bit moments, Dettmers et al. 2022),
            ``paged-adam8bit`` (the same in CUDA unified memory, paged out to
            CPU RAM when the GPU is full: QLoRA, Dettmers et al. 2023, section 3).
        optimizer_in_backward: each parameter is stepped (and its gradient
            freed) as soon as its gradient is ready, so at most one gradient
            is alive (torchtune's ``optimizer_in_bwd``); needs ``grad_accum == 1``.
        loss_chunks: cross-entropy over this many chunks of the tokens; with
            more than one, each chunk's logits are computed, differentiated and
            freed before the next, so the full ``[tokens, vocab]`` logits never
            exist (unless ``loss_keeps_logits``).
        loss_keeps_logits: the head runs once and only the fp32 loss is chunked,
            so all bf16 logits stay alive (torchtune's CEWithChunkedOutputLoss).
        offload_activations: saved activations go to CPU RAM during the forward
            and come back for the backward; about two blocks' worth stay on the
            device (torchtune's OffloadActivations).
        lora_dropout: dropout on each adapter's input; above zero every adapted
            projection keeps its own dropped copy of the input and a mask.
        loss_impl: what an unchunked loss keeps: ``bf16-logits`` (Shoestring's
            GPT: the caller holds the bf16 logits, the loss upcasts), ``fp32-logits``
            (the model returns ``logits.float()``, held: torchtune's decoder), or
            ``hf-shifted`` (Hugging Face transformers before 4.45: fp32 logits
            held and shifted into a contiguous copy before the loss), or
            ``fused-inplace`` (a fused Triton cross-entropy that saves one
            log-sum-exp per row and writes the gradient over the logits:
            Unsloth's ``Fast_CrossEntropyLoss``; chunked or not, only the bf16
            logits exist).
        fused_optimizer: ``torch.optim.AdamW(fused=True)``: one kernel per
            step, no temporaries (torch's default on CUDA is ``foreach``).
        compiled: ``torch.compile``d step: the partitioner recomputes cheap
            pointwise results in backward instead of saving them, and the loss
            keeps the bf16 logits, not an fp32 log-softmax.
        finetune: ``full``; ``lora`` (frozen bf16/fp32 base + adapters);
            ``qlora`` (frozen 4-bit base + adapters).
        grad_accum: micro-batches per optimizer step.
        dp: data-parallel devices; zero_stage shards across them (1: optimizer
            states, 2: + gradients, 3: + weights; FSDP full-shard = 3).
        tp: tensor-parallel degree (Megatron-LM, Shoeybi et al. 2019).
        kernels: whose kernels run the step: ``cuda`` (fused RMSNorm, foreach
            optimizers) or ``cpu`` (composite RMSNorm, per-tensor optimizer).
        output_tokens: tokens generated per request when serving.
        half: the 16-bit type of ``bf16-mixed``/``bf16``: ``bf16``, or ``fp16``
            (with loss scaling, Micikevicius et al. 2018) on GPUs without bf16
            such as the T4. Same bytes, so memory and FLOPs do not change.
    """

    mode: Literal["train", "serve"] = "train"
    micro_batch: int = 1
    seq_len: int = 1024
    precision: Precision = "bf16-mixed"
    checkpointing: Checkpointing = "none"
    optimizer: Optimizer = "adamw"
    finetune: Finetune = "full"
    lora_rank: int = DEFAULT_LORA_RANK
    lora_alpha: float = DEFAULT_LORA_ALPHA
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lora_dropout: float = 0.0
    optimizer_in_backward: bool = False
    loss_chunks: int = 1
    loss_keeps_logits: bool = False
    offload_activations: bool = False
    loss_impl: Literal["bf16-logits", "fp32-logits", "hf-shifted", "fused-inplace"] = \
        "bf16-logits"
    fused_optimizer: bool = False
    compiled: bool = False
    grad_accum: int = 1
    dp: int = 1
    zero_stage: int = 0
    tp: int = 1
    kernels: Kernels = "cuda"
    output_tokens: int = 0
    half: Literal["bf16", "fp16"] = "bf16"

    def with_(self, **changes) -> StepSetup:
        return replace(self, **changes)

    @property
    def mixed(self) -> bool:
        return self.precision == "bf16-mixed"

    @property
    def param_bytes(self) -> int:
        """Bytes per stored trainable weight: 2 in pure bf16, else 4 (fp32 masters)."""
        return 2 if self.precision == "bf16" else 4

    @property
    def chunked_loss(self) -> bool:
        return self.loss_chunks > 1

    @property
    def precision_label(self) -> str:
        """The precision as a user would write it: ``fp16-mixed`` on a T4, not ``bf16-mixed``."""
        return self.precision.replace("bf16", self.half)

    @property
    def adapters(self) -> bool:
        return self.finetune in ("lora", "qlora")
