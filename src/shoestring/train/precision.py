"""Choosing and applying numeric precision.

``auto`` picks what is fastest on the device, not what is smallest. A CPU
flag is no promise of speed: this project's 2-core AMD EPYC development
machine reports ``avx512_bf16``, yet a bf16 matmul runs there at ~47 GFLOP/s
against ~174 for fp32. So on a CPU ``auto`` times the same matmul in both
precisions and takes bf16 only if it is clearly faster.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

# /proc/cpuinfo flags that mean bf16 runs natively (Intel SDM: AVX512_BF16 in
# Cooper Lake, AMX-BF16 in Sapphire Rapids).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str) -> bool:
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


# bf16 must beat fp32 by this factor to be chosen: autocast adds casts that
# a bare matmul timing does not see.
BF16_MIN_SPEEDUP = 1.3


def matmul_gflops(dtype: torch.dtype, n: int = 384, reps: int = 6) -> float:
    """Achieved GFLOP/s of an n×n matmul (2n³ FLOPs) on the CPU, best of ``reps``."""
    import time

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: first call pays for kernel selection
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def cpu_bf16_is_faster(measure=matmul_gflops) -> bool:
    return measure(torch.bfloat16) >= BF16_MIN_SPEEDUP * measure(torch.float32)


def resolve_precision(requested: str, device: torch.device, cpuinfo: str = "",
                      cuda_bf16: bool = False, measure=matmul_gflops) -> str:
    """``auto`` → fp32/bf16/fp16 for ``device``; explicit choices are checked."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_bf16 else "fp16"
        if not cpu_has_native_bf16(cpuinfo):
            return "fp32"  # emulated bf16 is never faster
        return "bf16" if cpu_bf16_is_faster(measure) else "fp32"
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
