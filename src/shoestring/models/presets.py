"""Named transformer shapes, and how a ``[model]`` section picks one.

Each preset is a full config. A model name (``gpt``, ``gpt2-124m``,
``encoder``, ``bert-base``…) starts from its preset; every shape field set in
``[model]`` (not ``None``) overrides it; the data decides the vocabulary (and,
for encoders, the number of classes). Sources of the published shapes:

- GPT-2 124M / 350M: Radford et al. 2019, table 2, and the Hugging Face
  ``gpt2`` / ``gpt2-medium`` configs (vocab 50257, context 1024).
- Llama 3 8B: Meta's ``Meta-Llama-3-8B`` ``params.json`` (dim 4096, 32 layers,
  32 heads, 8 KV heads, FFN 14336, vocab 128256, rope θ 500000).
- BERT-base: Devlin et al. 2019; BERT-tiny (2 layers, 128 wide): Turc et al.
  2019, arXiv:1908.08962 (``google/bert_uncased_L-2_H-128_A-2``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shoestring.errors import DataError
from shoestring.models.encoder import EncoderConfig, build_encoder
from shoestring.models.gpt import GPTConfig, build_gpt

if TYPE_CHECKING:
    from shoestring.models.registry import DataShape

_LLAMA = {"bias": False, "norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "tie_embeddings": False}

GPT_PRESETS: dict[str, GPTConfig] = {
    # Fits a laptop CPU: ~0.8M parameters plus the embedding at a char vocabulary.
    "gpt-nano": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=256),
    "gpt2-124m": GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
    "gpt2-350m": GPTConfig(n_layer=24, n_head=16, n_embd=1024, block_size=1024,
                           vocab_size=50257),
    # Llama-style shapes at CPU size, for trying RoPE/RMSNorm/SwiGLU/GQA cheaply.
    "llama-nano": GPTConfig(n_layer=4, n_head=4, n_kv_head=2, n_embd=128, block_size=64,
                            vocab_size=256, **_LLAMA),
    "llama-3-8b": GPTConfig(n_layer=32, n_head=32, n_kv_head=8, n_embd=4096, block_size=8192,
                            vocab_size=128256, intermediate_size=14336, rope_theta=500000.0,
                            **_LLAMA),
}
# 'gpt' builds from [model] fields, with gpt-nano's values where a field is unset.
GPT_PRESETS["gpt"] = GPT_PRESETS["gpt-nano"]

ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "bert-tiny": EncoderConfig(n_layer=2, n_head=2, n_embd=128, block_size=512,
                               intermediate_size=512),
    "bert-base": EncoderConfig(),
}
ENCODER_PRESETS["encoder"] = ENCODER_PRESETS["bert-tiny"]

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
