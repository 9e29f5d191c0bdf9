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


def transformer_flops_per_token(arch: dict, seq_len: int | None = None) -> int | None:
    """PaLM model FLOPs per token of a transformer run (None for other families).

    The planner's :func:`~shoestring.plan.compute.model_flops`, so that a run's
    measured MFU and the plan's estimate share one definition; ``seq_len``
    defaults to the model's context.
    """
    if arch.get("family") not in ("gpt", "encoder"):
        return None
    from shoestring.plan.compute import model_flops
    from shoestring.plan.presets import spec_from_architecture

    spec = spec_from_architecture(arch, arch["family"])
    t = seq_len or spec.max_seq
    per_token = model_flops(spec, 1, t) // t
    if arch["family"] == "encoder" and arch.get("params", {}).get("mlm"):
        # A masked-LM head scores every token: its dense layer and the (tied) word
        # embedding are matmuls per token; the planner's encoder has a pooler instead.
        per_token += 6 * (spec.hidden * spec.hidden + spec.vocab_size * spec.hidden)
    return per_token


def mfu(flops_per_token: int | None, tokens_per_second: float, peak: float | None) -> float | None:
    if not flops_per_token or not peak:
        return None
    return flops_per_token * tokens_per_second / peak
