"""Compress a trained run under an accuracy guard, every candidate measured.

``compress(CompressConfig(run=..., out=...))`` builds candidates (ONNX float32,
dynamic and static int8, weight-only 8/4-bit, structured pruning with a
fine-tune, distillation, and chains of them), measures each on this machine
(size on disk, p50/p95 latency and throughput per batch size, the metric on
the held-out split), keeps the fastest within ``max_drop`` and writes it as a
new run folder with its lineage and the whole table
(``compress/candidates.json``, see :mod:`shoestring.compress.table`).

Imports are lazy: onnx, onnxruntime and Torch-Pruning load on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "compress": "shoestring.compress.api",
    "CompressResult": "shoestring.compress.api",
    "CompressConfig": "shoestring.compress.config",
    "OnnxFloat32": "shoestring.compress.config",
    "DynamicInt8": "shoestring.compress.config",
    "StaticInt8": "shoestring.compress.config",
    "WeightOnly": "shoestring.compress.config",
    "Prune": "shoestring.compress.config",
    "Distill": "shoestring.compress.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'shoestring.compress' has no attribute {name!r}")
