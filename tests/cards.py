"""Model cards for hand-made test run folders (a unique module name: tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from shoestring.models.card import Architecture, Inputs, ModelCard, Outputs, TokenizerCard
from shoestring.types import Task


def card_for(arch: dict[str, Any], *, task: str = "classification",
             input_shape: list[int] | None = None, outputs: int | None = None,
             tokenizer: TokenizerCard | None = None, **fields: Any) -> ModelCard:
    """A card for architecture ``arch``; shapes default to what its params say."""
    p = arch.get("params", {})
    family = arch.get("family")
    tokens = family in ("gpt", "encoder")
    if input_shape is None:
        input_shape = [p["block_size"]] if tokens else [p.get("in_features", 1)]
    if outputs is None:
        outputs = p.get("vocab_size") if family == "gpt" else \
            p.get("num_classes") or p.get("out_features") or 1
    kind = "logits" if task == "language_modeling" else \
        "softmax" if task == "classification" else "identity"
    return ModelCard(architecture=Architecture(**arch), task=Task(task),
                     inputs=Inputs(shape=input_shape, dtype="int64" if tokens else "float32"),
                     outputs=Outputs(kind=kind, size=outputs), tokenizer=tokenizer, **fields)
