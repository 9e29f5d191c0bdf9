"""Named transformer shapes, and how a ``[model]`` section picks one.

The shapes live in one list, ``presets.toml`` beside this module, which the
planner reads too (:func:`preset_table`): each entry is written in one
vocabulary (``hidden``, ``layers``, ``heads``, ``kv_heads``, ``intermediate``,
``max_seq``, as plan's ``ModelSpec`` names them) and names its source.
:data:`SHAPE_TO_CONFIG` maps that vocabulary onto the model code's
(``n_embd``, ``n_layer``, ``n_head``… of :class:`GPTConfig` and
:class:`EncoderConfig`), in this one place. A model name (``gpt``,
``gpt2-124m``, ``encoder``, ``bert-base``…) starts from its preset; every shape
field set in ``[model]`` (not ``None``) overrides it; the data decides the
vocabulary (and, for encoders, the number of classes).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from shoestring.errors import DataError
from shoestring.models.encoder import EncoderConfig, build_encoder
from shoestring.models.gpt import GPTConfig, build_gpt

if TYPE_CHECKING:
    from shoestring.models.registry import DataShape

PRESETS_FILE = "presets.toml"

# The presets' (and plan's) shape vocabulary → GPTConfig / EncoderConfig fields.
SHAPE_TO_CONFIG = {
    "layers": "n_layer", "heads": "n_head", "kv_heads": "n_kv_head", "hidden": "n_embd",
    "max_seq": "block_size", "vocab_size": "vocab_size", "intermediate": "intermediate_size",
    "norm": "norm", "mlp": "mlp", "pos": "pos", "rope_theta": "rope_theta", "bias": "bias",
    "tie_embeddings": "tie_embeddings", "norm_eps": "norm_eps",
    "type_vocab_size": "type_vocab_size",
}
CONFIG_TO_SHAPE = {v: k for k, v in SHAPE_TO_CONFIG.items()}
# Encoder layout is fixed (post-norm, GELU, learned positions, biases, pooler).
_ENCODER_SHAPE = ("layers", "heads", "hidden", "max_seq", "vocab_size", "intermediate",
                  "norm_eps", "type_vocab_size")


@lru_cache(maxsize=1)
def preset_table() -> dict[str, dict[str, Any]]:
    """Every named shape, as written in ``presets.toml`` (validated by the planner's
    ``ModelSpec`` when it loads one; tests check every entry)."""
    return tomllib.loads(resources.files("shoestring.models").joinpath(PRESETS_FILE)
                         .read_text())


def _buildable(entry: dict[str, Any]) -> bool:
    """Layouts the model code has: decoders without sliding-window attention or ALiBi."""
    if entry["family"] == "encoder":
        return True
    return entry["family"] == "decoder" and "sliding_window" not in entry \
        and entry.get("pos", "learned") in ("learned", "rope")


def gpt_config(entry: dict[str, Any]) -> GPTConfig:
    """The :class:`GPTConfig` of a decoder entry of the preset table."""
    values = {SHAPE_TO_CONFIG[k]: v for k, v in entry.items() if k in SHAPE_TO_CONFIG
              and k != "type_vocab_size"}
    if values.get("n_kv_head") in (0, values.get("n_head")):
        values.pop("n_kv_head")
    # An MLP width the layout derives (4h for GELU, Llama's rounded 8h/3 for SwiGLU)
    # stays derived, so that a [model] n_embd override rescales it as well.
    derived = GPTConfig(**{k: v for k, v in values.items() if k != "intermediate_size"})
    if values.get("intermediate_size") == derived.hidden_size:
        values.pop("intermediate_size")
    return GPTConfig(**values)


def encoder_config(entry: dict[str, Any]) -> EncoderConfig:
    """The :class:`EncoderConfig` of an encoder entry of the preset table."""
    return EncoderConfig(**{SHAPE_TO_CONFIG[k]: entry[k] for k in _ENCODER_SHAPE if k in entry})


def _presets(family: str, build: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    return {name: build(e) for name, e in preset_table().items()
            if e["family"] == family and _buildable(e)}


GPT_PRESETS: dict[str, GPTConfig] = _presets("decoder", gpt_config)
# 'gpt' builds from [model] fields, with gpt-nano's values where a field is unset.
GPT_PRESETS["gpt"] = GPT_PRESETS["gpt-nano"]

ENCODER_PRESETS: dict[str, EncoderConfig] = _presets("encoder", encoder_config)
ENCODER_PRESETS["encoder"] = ENCODER_PRESETS["bert-tiny"]
# Names that are families rather than published shapes.
ALIASES = {"gpt": "gpt-nano", "encoder": "bert-tiny"}

# [model] fields that override a preset when set; the rest come from the data.
GPT_FIELDS = ("n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "bias", "norm", "mlp",
              "intermediate_size", "pos", "rope_theta", "tie_embeddings", "norm_eps", "dropout")
ENCODER_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "intermediate_size",
                  "type_vocab_size", "norm_eps", "dropout")

Architecture = dict[str, Any]


def _overrides(cfg: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    # getattr: the fields may not exist in an older ModelConfig.
    return {f: getattr(cfg, f) for f in fields if getattr(cfg, f, None) is not None}


def _vocab(cfg: Any, data_vocab: int | None, name: str) -> dict[str, int]:
    """The model vocabulary: the [model] value if set (at least the data's), else the data's."""
    wanted = getattr(cfg, "vocab_size", None)
    if wanted is not None and data_vocab and wanted < data_vocab:
        raise DataError(f"vocabulary overflow: the tokenizer produces {data_vocab} token ids but "
                        f"model {name!r} has vocab_size {wanted}",
                        hint=f"set vocab_size to at least {data_vocab}, or leave it unset")
    if wanted is not None:
        return {"vocab_size": wanted}
    return {"vocab_size": data_vocab} if data_vocab else {}


def gpt_architecture(name: str) -> Callable[[Any, DataShape], Architecture]:
    """Architecture function of GPT preset ``name`` for the model registry."""
    def arch(cfg: Any, shape: DataShape) -> Architecture:
        # For language-model data the outputs are the vocabulary.
        data_vocab = getattr(shape, "vocab_size", None) or shape.num_outputs
        config = replace(GPT_PRESETS[name], **_overrides(cfg, GPT_FIELDS),
                         **_vocab(cfg, data_vocab, name))
        return {"family": "gpt", "params": config.to_dict()}
    return arch


def encoder_architecture(name: str) -> Callable[[Any, DataShape], Architecture]:
    """Architecture function of encoder preset ``name`` for the model registry."""
    def arch(cfg: Any, shape: DataShape) -> Architecture:
        values = _overrides(cfg, ENCODER_FIELDS)
        values.update(_vocab(cfg, getattr(shape, "vocab_size", None), name))
        values["pad_id"] = getattr(shape, "pad_id", None)
        values["num_classes"] = shape.num_outputs
        config = replace(ENCODER_PRESETS[name], **values)
        length = shape.input_shape[0] if shape.input_shape else 0
        if length > config.block_size:
            raise DataError(f"inputs are {length} tokens long but model {name!r} has "
                            f"block_size {config.block_size}",
                            hint="lower the data's max length or raise block_size")
        return {"family": "encoder", "params": config.to_dict()}
    return arch


def register_presets(register_model: Callable[..., None]) -> None:
    """Add every transformer name and family to the model registry."""
    for name in GPT_PRESETS:
        register_model(name, gpt_architecture(name), "gpt", build_gpt)
    for name in ENCODER_PRESETS:
        register_model(name, encoder_architecture(name), "encoder", build_encoder)
