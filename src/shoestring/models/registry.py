"""Model registry: name → (architecture from config and data, builder).

``architecture_for`` is pure: it turns a model config and the data's shape
into the JSON-ready architecture stored in ``model.json``. ``build_model``
turns that architecture back into a module, so a run folder can be loaded
without the config or the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from shoestring.errors import ShoestringError
from shoestring.models.cnn import SmallCNN
from shoestring.models.mlp import MLP, SEED_HIDDEN, flat_size


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about its data.

    ``vocab_size`` and ``pad_id`` describe token-id inputs (text data); other
    data leaves them ``None``.
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    vocab_size: int | None = None
    pad_id: int | None = None


Architecture = dict[str, Any]


def _mlp_arch(cfg: Any, shape: DataShape, hidden: tuple[int, ...]) -> Architecture:
    return {"family": "mlp", "params": {
        "in_features": flat_size(shape.input_shape), "hidden": list(hidden),
        "out_features": shape.num_outputs, "dropout": float(cfg.dropout),
        "activation": cfg.activation}}


def _cnn_arch(cfg: Any, shape: DataShape) -> Architecture:
    if len(shape.input_shape) != 3:
        raise ShoestringError(
            f"model 'cnn' needs image data shaped [channels, height, width], "
            f"got input shape {list(shape.input_shape)}",
            hint="use an image source (idx:, fashion-mnist) or an 'mlp' for tables")
    return {"family": "cnn", "params": {
        "in_channels": shape.input_shape[0], "channels": list(cfg.channels),
        "out_features": shape.num_outputs, "dropout": float(cfg.dropout)}}


_ARCHS: dict[str, Callable[[Any, DataShape], Architecture]] = {
    "seed-mlp": lambda cfg, shape: _mlp_arch(cfg, shape, SEED_HIDDEN),
    "mlp": lambda cfg, shape: _mlp_arch(cfg, shape, tuple(cfg.hidden)),
    "cnn": _cnn_arch,
}

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
}


def register_model(name: str, arch: Callable[[Any, DataShape], Architecture],
                   family: str | None = None, builder: Callable[..., nn.Module] | None = None) -> None:
    """Add a model name (and, if new, its family's builder)."""
    _ARCHS[name] = arch
    if family is not None and builder is not None:
        _BUILDERS[family] = builder


def model_names() -> list[str]:
    return sorted(_ARCHS)


def architecture_for(cfg: Any, shape: DataShape) -> Architecture:
    """The architecture of model ``cfg.name`` for data of ``shape``."""
    if cfg.name not in _ARCHS:
        raise ShoestringError(f"unknown model {cfg.name!r}",
                              hint=f"choose one of: {', '.join(model_names())}")
    arch = _ARCHS[cfg.name](cfg, shape)
    arch["name"] = cfg.name
    return arch


def build_model(arch: Architecture) -> nn.Module:
    family = arch.get("family")
    if family not in _BUILDERS:
        raise ShoestringError(f"unknown model family {family!r} in architecture",
                              hint=f"known families: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[family](**arch["params"])


def _register_transformers() -> None:
    # The transformer families (gpt, encoder and their presets) register
    # through the public hook, like any other capability would.
    from shoestring.models.presets import register_presets

    register_presets(register_model)


_register_transformers()
