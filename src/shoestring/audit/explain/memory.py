"""How many (example × step) rows integrated gradients can push through at once.

Captum runs ``n_steps`` interpolated copies of every input through forward
and backward; with ``internal_batch_size`` unset that is one batch of
``examples × steps`` rows, which is where users run out of memory (the
Captum FAQ's advice is to tune it by hand). Here it is sized from memory: one
forward of a single example with hooks on every module measures the bytes of
the activations it keeps, autograd keeps about as much again for the
gradients (an upper bound: element-wise layers share storage), and the batch
is the free memory budget divided by that. An out-of-memory error halves the
batch and retries (:func:`run_with_backoff`), so a wrong estimate costs time,
not the audit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")
GIB = 1 << 30
# Of the memory free now, the share integrated gradients may take (the rest is
# the model, the data and whatever else runs on the machine).
FREE_SHARE = 0.25


def row_bytes(model: nn.Module, forward: Callable[..., torch.Tensor], example: torch.Tensor,
              *extra) -> int:
    """Bytes one input row costs in a forward + backward (activations ×2, plus the input)."""
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                total += o.numel() * o.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules()
               if not list(m.children())]
    try:
        with torch.no_grad():
            forward(example, *extra)
    finally:
        for h in handles:
            h.remove()
    return max(2 * total + example.numel() * max(example.element_size(), 4), 1)


def free_bytes(device: torch.device, meminfo: Path = Path("/proc/meminfo")) -> int:
    """Memory free for new tensors: the GPU's free memory, or Linux's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * GIB  # an unknown system: assume a small machine


def internal_batch_size(per_row: int, budget_bytes: int, rows: int) -> int:
    """Rows per forward/backward pass: as many as fit in the budget, at least 1.

    >>> internal_batch_size(per_row=1000, budget_bytes=50_000, rows=400)
    50
    """
    return int(max(1, min(rows, budget_bytes // max(per_row, 1))))


def is_out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and
                                    "out of memory" in str(exc).lower())


def run_with_backoff(fn: Callable[[int], T], batch: int) -> tuple[T, int]:
    """``fn(batch)``, halving ``batch`` after each out-of-memory error; returns the batch
    that worked too."""
    while True:
        try:
            return fn(batch), batch
        except (RuntimeError, MemoryError) as exc:
            if not (isinstance(exc, MemoryError) or is_out_of_memory(exc)) or batch == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch = max(1, batch // 2)
