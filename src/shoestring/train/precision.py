"""Choosing and applying numeric precision.

``auto`` picks what is fastest on the device, not what is smallest. On a CPU,
bf16 pays where the cores have native bf16 dot products: ``avx512_bf16``
(``vdpbf16ps``: Intel Cooper Lake, AMD Zen 4 and later) or AMX (Intel Sapphire
Rapids and later). Measured on this project's 2-core AMD EPYC (Zen 4,
``avx512_bf16``, no AMX) with torch 2.13, one thread, CPU time: a bf16 matmul
runs at 198-217 GFLOP/s against 91-93 for fp32 (n = 256-2048), and the GPT
step's own shapes gain 1.9-2.2x forward and backward. (An earlier note here
measured bf16 at 47 GFLOP/s and kept fp32 on CPUs without AMX; that no longer
holds.) Without those flags oneDNN emulates bf16 and it is slower, so ``auto``
keeps fp32; a per-process timing probe proved too noisy on a shared machine to
decide by, so the flags decide.

On a CPU, ``bf16`` means bf16 *matmuls* (:mod:`shoestring.train.bf16_matmul`):
``torch.autocast`` also moves attention, GELU and norms to bf16, and that made
the GPT step slower than fp32 (attention's backward is ~2.8x slower in bf16
there). Under activation checkpointing, whose recomputation cannot see that
path, CPU ``bf16`` falls back to autocast and ``auto`` keeps fp32.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

# /proc/cpuinfo flags of native bf16 dot products: AVX512_BF16's vdpbf16ps and
# AMX's tile units (Intel SDM vol. 1, ch. 18 "Intel AMX"; vol. 2, VDPBF16PS).
FAST_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def fast_bf16_flags(cpuinfo: str) -> list[str]:
    """The :data:`FAST_BF16_FLAGS` that ``cpuinfo`` reports (empty: no native bf16)."""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return [f for f in FAST_BF16_FLAGS if f in flags]


def cpu_has_fast_bf16(cpuinfo: str, capability: str = "AVX512") -> bool:
    """Native bf16 dot products that PyTorch may use: ``capability`` is
    ``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY=avx2``
    lowers to ``AVX2``; ``auto`` then chooses as on an AVX2-only CPU, so
    ``make test``'s AVX2 pass also covers what such a CI machine runs."""
    return bool(fast_bf16_flags(cpuinfo)) and capability.upper().startswith("AVX512")


def read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


# Model families whose CPU training measured faster with bf16 matmuls. The GPT
# (4 layers, 128 wide, 768 tokens a step) gained 1.23x per step in CPU time;
# the seed MLP (784-128-64-10, batch 128) lost 10% (1.0 -> 1.1 ms a step: its
# products are too small to repay the casts and the dispatch). Others are
# unmeasured and stay fp32 under ``auto``.
BF16_MATMUL_FAMILIES = ("gpt",)


def resolve_precision(requested: str, device: torch.device, cpuinfo: str = "",
                      cuda_bf16: bool = False, checkpointing: bool = False,
                      family: str = "gpt", capability: str = "AVX512") -> str:
    """``auto`` → fp32/bf16/fp16 for ``device``; explicit choices are checked.

    >>> resolve_precision("auto", torch.device("cpu"), "flags : avx512f avx2")
    'fp32'
    >>> resolve_precision("auto", torch.device("cpu"), "flags : avx512f avx512_bf16")
    'bf16'
    >>> resolve_precision("auto", torch.device("cpu"), "flags : avx512_bf16", family="mlp")
    'fp32'
    """
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_bf16 else "fp16"
        return "bf16" if cpu_has_fast_bf16(cpuinfo, capability) and not checkpointing and \
            family in BF16_MATMUL_FAMILIES else "fp32"
    if requested == "bf16-true":  # weights cast to bf16 (a card transform); no autocast
        return requested
    if requested == "fp16" and device.type != "cuda":
        from shoestring.errors import ShoestringError

        raise ShoestringError("fp16 training needs a CUDA device (it relies on a gradient "
                              "scaler and tensor cores)", hint="use --precision bf16 or fp32")
    return requested


def precision_note(requested: str, resolved: str, device: torch.device, cpuinfo: str = "",
                   checkpointing: bool = False, family: str = "gpt",
                   capability: str = "AVX512") -> str:
    """One line for the run's output and summary: what runs in which precision, and why."""
    what = Precision(resolved, device.type, checkpointing).description
    if requested != "auto":
        return f"{what} (--precision {requested})"
    if device.type != "cpu":
        return f"{what} (auto: what this GPU runs natively)"
    flags = fast_bf16_flags(cpuinfo)
    if resolved == "bf16":
        return f"{what} (auto: the CPU has {' and '.join(flags)}; --precision fp32 to keep fp32)"
    if flags and not cpu_has_fast_bf16(cpuinfo, capability):
        return f"{what} (auto: PyTorch's CPU kernels are limited to {capability})"
    if flags and checkpointing:
        return f"{what} (auto: bf16 matmuls do not combine with activation checkpointing)"
    if flags:
        return f"{what} (auto: bf16 matmuls measured no faster for {family} models)"
    return f"{what} (auto: no native bf16 on this CPU, where bf16 is emulated and slower)"


@dataclass(frozen=True)
class Precision:
    """How a resolved precision runs; master weights stay fp32 (except bf16-true)."""

    name: str
    device_type: str
    checkpointing: bool = False  # activation checkpointing: CPU bf16 uses autocast

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def bf16_matmuls(self) -> bool:
        return self.name == "bf16" and self.device_type == "cpu" and not self.checkpointing

    @property
    def description(self) -> str:
        if self.bf16_matmuls:
            return "bf16 matmuls in linear layers, fp32 weights, optimizer and all else"
        if self.dtype is not None:
            return f"{self.name} autocast over fp32 weights"
        return {"bf16-true": "bf16 weights, gradients and optimizer states"}.get(
            self.name, self.name)

    def autocast(self):
        """The context of a forward pass."""
        if self.bf16_matmuls:
            from shoestring.train.bf16_matmul import Bf16Matmuls

            return Bf16Matmuls()
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self):
        """fp16 needs loss scaling to keep small gradients from flushing to zero
        (Micikevicius et al. 2018, "Mixed Precision Training")."""
        if self.name == "fp16":
            return torch.amp.GradScaler("cuda")
        return None


def choose_precision(requested: str, device: torch.device, family: str,
                     activation_checkpointing: bool, private: bool) -> tuple[Precision, str]:
    """The run's precision and the line that explains it (DP-SGD trains in fp32)."""
    requested = "fp32" if private else requested
    cpuinfo = read_cpuinfo() if device.type == "cpu" else ""
    kernels = torch.backends.cpu.get_cpu_capability()
    name = resolve_precision(requested, device, cpuinfo,
                             device.type == "cuda" and torch.cuda.is_bf16_supported(),
                             activation_checkpointing, family, kernels)
    note = "fp32 (DP-SGD trains in fp32)" if private else \
        precision_note(requested, name, device, cpuinfo, activation_checkpointing, family, kernels)
    return Precision(name, device.type, activation_checkpointing), note
