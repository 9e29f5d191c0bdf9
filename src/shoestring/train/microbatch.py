"""Auto micro-batching: the largest micro-batch that fits, same effective batch.

On CUDA the search tries a real forward/backward and halves on
``torch.cuda.OutOfMemoryError`` (caught by type, nothing else). On a CPU
there is no allocator to ask, so with ``--max-memory`` it measures the bytes
autograd saves for backward per example (``saved_tensors_hooks``), adds
weights, gradients and optimizer state, and divides. RNG state is restored
after each trial so the search does not change the run.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from shoestring.errors import ShoestringError

GIB = 1024 ** 3
# Optimizer state per parameter in fp32 words: Adam/AdamW keep two moments
# (Kingma & Ba 2015), SGD with momentum one buffer.
STATE_WORDS = {"adam": 2, "adamw": 2, "sgd": 1,
               # bitsandbytes: two 1-byte moments (Dettmers et al. 2022), in 4-byte words
               "adam8bit": 0.5, "paged-adam8bit": 0.5}


def saved_bytes_per_example(run_forward: Callable[[int], torch.Tensor], probe: int) -> float:
    """Bytes autograd keeps for backward, per example, measured on ``probe`` examples."""
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    rng = torch.get_rng_state()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run_forward(probe)
    del loss
    torch.set_rng_state(rng)
    return total / probe


def static_bytes(model: nn.Module, optimizer: str) -> int:
    """Weights, plus gradients and optimizer state of the trainable ones (LoRA: the adapters)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    words = STATE_WORDS.get(optimizer, 2)
    return int(weights + trained * (1 + words))


def cpu_micro_batch(batch: int, max_memory_gib: float, model: nn.Module, optimizer: str,
                    run_forward: Callable[[int], torch.Tensor]) -> tuple[int, str]:
    budget = max_memory_gib * GIB - static_bytes(model, optimizer)
    if budget <= 0:
        raise ShoestringError(
            f"--max-memory {max_memory_gib:g} GiB does not even hold the weights, gradients and "
            f"optimizer state ({static_bytes(model, optimizer) / GIB:.2f} GiB)",
            hint="raise --max-memory or choose a smaller model")
    per_example = saved_bytes_per_example(run_forward, min(batch, 4))
    micro = max(1, min(batch, int(budget // max(per_example, 1.0))))
    return micro, (f"micro-batch {micro} (activations {per_example / 2**20:.1f} MiB/example, "
                   f"budget {max_memory_gib:g} GiB)")


def cuda_micro_batch(batch: int, try_step: Callable[[int], None]) -> tuple[int, str]:
    micro = batch
    while True:
        cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state()
        try:
            try_step(micro)
            return micro, f"micro-batch {micro} fits in GPU memory"
        except torch.cuda.OutOfMemoryError:
            if micro == 1:
                raise ShoestringError("one example does not fit in GPU memory",
                                      hint="use activation checkpointing, bf16, a smaller "
                                      "block_size or a smaller model") from None
            micro = max(1, micro // 2)
        finally:
            torch.set_rng_state(cpu_rng)
            torch.cuda.set_rng_state(cuda_rng)
            torch.cuda.empty_cache()


def accumulation_steps(batch: int, micro: int) -> int:
    return math.ceil(batch / micro)
