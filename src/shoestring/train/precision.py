"""Choosing and applying numeric precision.

``auto`` picks what is fastest on the device, not what is smallest. On a CPU,
only AMX (Intel Sapphire Rapids and later) makes bf16 training clearly faster
than fp32: this project's 2-core AMD EPYC development machine reports the
``avx512_bf16`` flag, yet a bf16 matmul runs there at ~47 GFLOP/s against ~174
for fp32, and a per-process timing probe proved too noisy on a shared machine
to decide by. So ``auto`` takes bf16 on a CPU only with ``amx_bf16``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

# /proc/cpuinfo flag of the tile units that run bf16 matmuls natively (Intel
# SDM vol. 1, ch. 18 "Intel AMX").
FAST_BF16_FLAGS = ("amx_bf16",)


def cpu_has_fast_bf16(cpuinfo: str) -> bool:
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in FAST_BF16_FLAGS)


def read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def resolve_precision(requested: str, device: torch.device, cpuinfo: str = "",
                      cuda_bf16: bool = False) -> str:
    """``auto`` → fp32/bf16/fp16 for ``device``; explicit choices are checked.

    >>> resolve_precision("auto", torch.device("cpu"), "flags : avx512f avx512_bf16")
    'fp32'
    >>> resolve_precision("auto", torch.device("cpu"), "flags : avx512f amx_bf16")
    'bf16'
    """
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_bf16 else "fp16"
        return "bf16" if cpu_has_fast_bf16(cpuinfo) else "fp32"
    if requested == "bf16-true":  # weights cast to bf16 (a card transform); no autocast
        return requested
    if requested == "fp16" and device.type != "cuda":
        from shoestring.errors import ShoestringError

        raise ShoestringError("fp16 training needs a CUDA device (it relies on a gradient "
                              "scaler and tensor cores)", hint="use --precision bf16 or fp32")
    return requested


@dataclass(frozen=True)
class Precision:
    """Autocast settings of a resolved precision; master weights stay fp32."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self):
        """fp16 needs loss scaling to keep small gradients from flushing to zero
        (Micikevicius et al. 2018, "Mixed Precision Training")."""
        if self.name == "fp16":
            return torch.amp.GradScaler("cuda")
        return None
