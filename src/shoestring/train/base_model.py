"""What a fine-tune takes from the model it starts from (``--init-from``): shape and tokenizer.

A run warm-started from a transformer (a Shoestring run or a Hugging Face
checkpoint) keeps that model's shape, so its weights fit, and reads its data
with that model's tokenizer and id layout, so the token ids mean what they
meant in pre-training. What may change is the head: a classifier gets as many
outputs as the data has classes, and a masked language model becomes a
classifier. ``[model]`` shape fields set by hand must agree with the base
(they are refused, named, when they do not); ``dropout`` is this run's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoestring.errors import ConfigError, ShoestringError
from shoestring.models.card import ModelCard
from shoestring.models.presets import ENCODER_FIELDS, ENCODER_PRESETS, GPT_FIELDS, GPT_PRESETS

TRANSFORMER_FAMILIES = ("gpt", "encoder")
# Shape fields a fine-tune may set differently: dropout is not a shape, and a shorter
# block_size trains on shorter windows of a longer-context base.
FREE_FIELDS = ("dropout", "block_size")


@dataclass(frozen=True)
class Base:
    """The model a run is warm-started from, as the data and architecture need it."""

    path: Path
    card: ModelCard

    @property
    def family(self) -> str:
        return self.card.family

    @property
    def is_transformer(self) -> bool:
        return self.family in TRANSFORMER_FAMILIES

    @property
    def block_size(self) -> int:
        return int(self.card.architecture.params["block_size"])

    def tokenizer_file(self) -> Path:
        """The base's ``tokenizer.json``, which the data must be read with."""
        file = Path(self.path) / "tokenizer.json"
        if self.card.tokenizer is None or not file.is_file():
            raise ShoestringError(f"init_from '{self.path}' has no tokenizer.json, so the "
                                  "data cannot be tokenized as it was in pre-training",
                                  hint="copy the model's tokenizer.json into its folder")
        return file

    def architecture(self, model_cfg: Any, *, num_classes: int | None = None,
                     mlm: bool | None = None) -> dict[str, Any]:
        """The base's architecture with this run's head and dropout; refuses ``[model]``
        shape fields set to other values than the base's."""
        arch = self.card.architecture.model_dump()
        params = dict(arch["params"])
        fields = GPT_FIELDS if self.family == "gpt" else ENCODER_FIELDS
        given = getattr(model_cfg, "model_fields_set", set())
        conflicts = [f"{f} = {getattr(model_cfg, f)!r} (the base has {params.get(f)!r})"
                     for f in fields if f in given and f not in FREE_FIELDS
                     and getattr(model_cfg, f) is not None
                     and getattr(model_cfg, f) != params.get(f)]
        name = getattr(model_cfg, "name", None)
        presets = GPT_PRESETS if self.family == "gpt" else ENCODER_PRESETS
        if "name" in given and name not in presets:
            conflicts.append(f"name = {name!r} (the base is a {self.family!r} model)")
        if conflicts:
            raise ConfigError([f"model.{c}" for c in conflicts],
                              hint="a fine-tune keeps the shape of the model it starts from: "
                              "leave these [model] fields unset")
        params["dropout"] = float(getattr(model_cfg, "dropout", 0.0))
        if num_classes is not None:
            params["num_classes"] = num_classes
        if mlm is not None:
            params["mlm"] = mlm
        return {"family": arch["family"], "name": arch.get("name"), "params": params}

    def check_vocab(self, data_vocab: int) -> None:
        vocab = int(self.card.architecture.params["vocab_size"])
        if data_vocab > vocab:
            raise ShoestringError(f"the data's token ids reach {data_vocab} but init_from "
                                  f"'{self.path}' reads {vocab}",
                                  hint="the tokenizer does not belong to this model")

    def window(self, requested: int | None) -> int:
        """Training context: ``requested`` (``[model] block_size``) up to the base's."""
        if requested is not None and requested > self.block_size:
            raise ShoestringError(f"block_size {requested} is longer than the context of "
                                  f"init_from '{self.path}' ({self.block_size})",
                                  hint=f"use --block-size {self.block_size} or less")
        return requested or self.block_size
