"""Throughput and model-FLOPs utilisation (MFU).

MFU = model FLOPs per token × tokens per second ÷ the device's peak FLOP/s at
the precision in use (PaLM, Chowdhery et al. 2022, appendix B; nanoGPT's
``estimate_mfu``). Peaks come from the planner's hardware catalog.
"""

from __future__ import annotations

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def device_peak_flops(name: str, precision: str) -> float | None:
    """Peak FLOP/s of ``name`` at ``precision`` from the catalog, or None if unknown."""
    try:
        from shoestring.plan.catalog import peak_flops
    except ImportError:
        return None
    try:
        return peak_flops(name, precision)
    except Exception:  # unknown device: MFU is reported as null, not guessed
        return None


def transformer_flops_per_token(arch: dict) -> int | None:
    """6N + attention FLOPs per token for transformer families, else None."""
    family = arch.get("family")
    if family not in ("gpt", "encoder"):
        return None
    from shoestring.models.encoder import EncoderConfig
    from shoestring.models.flops import flops_per_token
    from shoestring.models.gpt import GPTConfig

    cls = GPTConfig if family == "gpt" else EncoderConfig
    return int(flops_per_token(cls(**arch["params"])))


def mfu(flops_per_token: int | None, tokens_per_second: float, peak: float | None) -> float | None:
    if not flops_per_token or not peak:
        return None
    return flops_per_token * tokens_per_second / peak
