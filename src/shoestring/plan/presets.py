"""Where model specs come from: presets, Hugging Face ``config.json``, Shoestring runs.

:func:`resolve_model` accepts a preset name (``gpt2-124m``), the path of a
Hugging Face style ``config.json`` (GPT-2, BERT, Llama and Mistral families),
or a Shoestring run folder / ``config.toml``. The parsers are pure: they take
the decoded file contents and return a :class:`ModelSpec`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shoestring.config import problems_of
from shoestring.errors import ShoestringError
from shoestring.plan.specs import ModelSpec


def _presets() -> dict[str, dict[str, Any]]:
    """The one list of named shapes (``shoestring/models/presets.toml``)."""
    from shoestring.models.presets import preset_table

    return preset_table()


def preset_names() -> list[str]:
    return sorted(_presets())


def _spec(values: dict[str, Any], where: str) -> ModelSpec:
    try:
        return ModelSpec.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(problems_of(exc, ModelSpec))
        raise ShoestringError(f"model spec from {where} is invalid: {problems}",
                              hint="check the shapes in that file") from None


def load_preset(name: str) -> ModelSpec:
    """The spec of a shipped preset.

    >>> load_preset("llama-3-8b").kv_heads
    8
    """
    presets = _presets()
    if name not in presets:
        raise ShoestringError(f"unknown model preset {name!r}",
                              hint=f"choose one of: {', '.join(preset_names())}, or pass the "
                              "path of a config.json or of a Shoestring run folder")
    return _spec({"name": name, **presets[name]}, f"preset {name!r}")


# --- Hugging Face config.json ------------------------------------------------

def _gpt2(c: dict[str, Any]) -> dict[str, Any]:
    h = c["n_embd"]
    return {"family": "decoder", "vocab_size": c["vocab_size"], "hidden": h,
            "layers": c["n_layer"], "heads": c["n_head"],
            "intermediate": c.get("n_inner") or 4 * h,  # GPT2MLP: n_inner or 4·n_embd
            "max_seq": c.get("n_positions", 1024), "norm_eps": c.get("layer_norm_epsilon", 1e-5),
            "tie_embeddings": c.get("tie_word_embeddings", True)}


def _bert(c: dict[str, Any]) -> dict[str, Any]:
    return {"family": "encoder", "vocab_size": c["vocab_size"], "hidden": c["hidden_size"],
            "layers": c["num_hidden_layers"], "heads": c["num_attention_heads"],
            "intermediate": c["intermediate_size"],
            "max_seq": c.get("max_position_embeddings", 512),
            "type_vocab_size": c.get("type_vocab_size", 2),
            "norm_eps": c.get("layer_norm_eps", 1e-12), "pooler": True, "tie_embeddings": False}


def _llama(c: dict[str, Any]) -> dict[str, Any]:
    heads = c["num_attention_heads"]
    if c.get("head_dim") not in (None, c["hidden_size"] // heads):
        raise ShoestringError(f"config.json sets head_dim={c['head_dim']}, not hidden/heads",
                              hint="the planner supports head_dim = hidden_size / heads only")
    return {"family": "decoder", "vocab_size": c["vocab_size"], "hidden": c["hidden_size"],
            "layers": c["num_hidden_layers"], "heads": heads,
            "kv_heads": c.get("num_key_value_heads") or heads,
            "intermediate": c["intermediate_size"],
            "max_seq": c.get("max_position_embeddings", 4096), "norm": "rmsnorm",
            "mlp": "swiglu", "pos": "rope", "rope_theta": float(c.get("rope_theta", 10000.0)),
            "bias": bool(c.get("attention_bias", False)),
            "tie_embeddings": c.get("tie_word_embeddings", False),
            "norm_eps": c.get("rms_norm_eps", 1e-6), "sliding_window": c.get("sliding_window")}


HF_FAMILIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _llama,
}


def spec_from_hf_config(config: dict[str, Any], name: str = "config.json") -> ModelSpec:
    """A spec from the decoded contents of a Hugging Face ``config.json``."""
    model_type = config.get("model_type")
    if model_type not in HF_FAMILIES:
        raise ShoestringError(f"{name}: model_type {model_type!r} is not supported",
                              hint=f"supported: {', '.join(sorted(HF_FAMILIES))}")
    if model_type == "llama" and config.get("mlp_bias"):
        raise ShoestringError(f"{name}: mlp_bias=true is not supported",
                              hint="the planner models Llama MLPs without biases")
    try:
        values = HF_FAMILIES[model_type](config)
    except KeyError as exc:
        raise ShoestringError(f"{name}: {model_type} config lacks the key {exc.args[0]!r}",
                              hint="is this the model's config.json?") from None
    return _spec({"name": name, "source": name, **values}, name)


# --- Shoestring run folders --------------------------------------------------

def spec_from_architecture(arch: dict[str, Any], name: str) -> ModelSpec:
    """A spec from a ``model.json`` architecture (``{"family", "params"}``)."""
    family, p = arch.get("family"), arch.get("params", {})
    if family == "mlp":
        widths = [p["in_features"], *p["hidden"], p["out_features"]]
        return _spec({"name": name, "family": "mlp", "widths": widths,
                      "activation": p.get("activation", "relu"), "source": name}, name)
    if family in ("gpt", "decoder", "encoder"):
        from shoestring.models.presets import CONFIG_TO_SHAPE

        # The model code's names (n_embd, n_layer…) in the presets' vocabulary.
        shape = {CONFIG_TO_SHAPE[k]: v for k, v in p.items()
                 if k in CONFIG_TO_SHAPE and v is not None}
        if family == "encoder":
            return _spec({"name": name, "family": "encoder", "type_vocab_size": 2,
                          "norm_eps": 1e-12, **shape, "pooler": True,
                          "num_classes": p.get("num_classes", 0), "tie_embeddings": False,
                          "source": name}, name)
        if "intermediate" not in shape:
            # GPTConfig derives it (4h for GELU, Llama's rounded 8h/3 for SwiGLU).
            from shoestring.models.gpt import GPTConfig

            shape["intermediate"] = GPTConfig(**p).hidden_size
        shape.pop("type_vocab_size", None)
        return _spec({"name": name, "family": "decoder", **shape, "source": name}, name)
    raise ShoestringError(f"{name}: the planner does not model the {family!r} family",
                          hint="plan a transformer or MLP run, or use a preset")


def _model_registry_preset(name: str) -> ModelSpec | None:
    """The family names of the model registry (``gpt``, ``encoder``): their default shape."""
    from shoestring.models.presets import ALIASES

    return load_preset(ALIASES[name]).model_copy(update={"name": name}) \
        if name in ALIASES else None


def resolve_model(ref: str) -> ModelSpec:
    """A spec from a preset name, a ``config.json``, a run folder or a run ``.toml``.

    A run's workload (batch, sequence length, steps) comes with it from
    :func:`shoestring.plan.run_inputs.load_run_inputs`.
    """
    if ref in _presets():
        return load_preset(ref)
    model_preset = _model_registry_preset(ref)
    if model_preset is not None:
        return model_preset
    from shoestring.plan.run_inputs import is_run_reference, load_run_inputs

    if is_run_reference(ref):
        return load_run_inputs(ref).spec
    path = Path(ref)
    if path.is_dir() and (path / "config.json").exists():
        path = path / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ShoestringError(f"{path} is not valid JSON: {exc}",
                                  hint="pass a Hugging Face config.json") from None
        if "architecture" in config:  # a Shoestring model card (model.json)
            from shoestring.models.card import card_from_json

            card = card_from_json(config, str(path))
            return spec_from_architecture(card.architecture.model_dump(), str(path))
        return spec_from_hf_config(config, str(path))
    raise ShoestringError(f"unknown model {ref!r}: not a preset and no such file",
                          hint=f"presets: {', '.join(preset_names())}")
