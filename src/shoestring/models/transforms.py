"""Transforms: changes to a freshly built module that its saved weights depend on.

A compressed, pruned or fine-tuned model's state dict may not fit the plain
architecture: int8 weights with scales, ``weight_orig`` plus a mask, LoRA
``A``/``B`` matrices. Its card lists the transforms that turn the built module
into one that fits, and :func:`~shoestring.models.run_folder.load_run` applies
them in order before loading the weights. A transform is
``apply(module, config) -> module`` registered under a ``kind`` with the
newest ``version`` it can read.

Where transforms come from: the built-ins below are named by module path and
imported only when a card uses them; a capability registers its own with
:func:`register_transform` from a module under :mod:`shoestring.models` (they
rebuild module structure, which is the models layer's business; the
algorithms that choose the quantization or the mask live in their
capability), and adds the module's path to :data:`BUILTIN` so a fresh process
that only loads a run folder finds it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shoestring.errors import ShoestringError

Apply = Callable[[nn.Module, dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class Transform:
    kind: str
    apply: Apply
    version: int = 1


_REGISTRY: dict[str, Transform] = {}
# kind → "module:function" of a built-in transform, imported on first use.
BUILTIN: dict[str, str] = {
    "cast": "shoestring.models.transforms:cast",
    "onnx": "shoestring.models.onnx_module:onnx",
    "prune": "shoestring.models.pruned:prune",
    "lora": "shoestring.models.adapters:apply_lora_transform",
    "dp-fix": "shoestring.models.dp_fix:dp_fix",
}


def register_transform(kind: str, apply: Apply, *, version: int = 1) -> None:
    """Make cards that list ``kind`` (up to ``version``) loadable in this process."""
    _REGISTRY[kind] = Transform(kind, apply, version)


def transform_kinds() -> list[str]:
    return sorted(set(_REGISTRY) | set(BUILTIN))


def get_transform(kind: str) -> Transform:
    if kind not in _REGISTRY and kind in BUILTIN:
        module, _, name = BUILTIN[kind].partition(":")
        register_transform(kind, getattr(importlib.import_module(module), name))
    if kind not in _REGISTRY:
        raise ShoestringError(f"unknown model transform {kind!r}",
                              hint=f"known transforms: {', '.join(transform_kinds())}; the run "
                              "was written by a newer Shoestring or a plugin that is not "
                              "installed here")
    return _REGISTRY[kind]


def apply_transforms(module: nn.Module, records: Iterable[Any]) -> nn.Module:
    """Apply each card record (``kind``, ``config``, ``version``) in order."""
    for record in records:
        t = get_transform(record.kind)
        if record.version > t.version:
            raise ShoestringError(f"transform {record.kind!r} version {record.version} is newer "
                                  f"than this Shoestring reads ({t.version})",
                                  hint="upgrade Shoestring to load this run")
        module = t.apply(module, dict(record.config))
    return module


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cast(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """Floating-point parameters and buffers to ``config["dtype"]`` (e.g. bf16 weights
    saved at half the size)."""
    dtype = config.get("dtype")
    if dtype not in DTYPES:
        raise ShoestringError(f"cast transform: unknown dtype {dtype!r}",
                              hint=f"use one of: {', '.join(DTYPES)}")
    return module.to(DTYPES[dtype])
