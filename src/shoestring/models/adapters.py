"""LoRA as a run-folder transform: an adapter run is saved small and rebuilt over its base.

An adapter run's card lists a ``lora`` transform whose config holds the LoRA
settings and the folder of its ``base`` (a run folder or a Hugging Face
checkpoint; the card's ``lineage`` names it too). Its ``model.safetensors``
holds only the adapters (and any ``train_also`` head), megabytes where the
base is gigabytes. :func:`~shoestring.models.run_folder.load_run` rebuilds it
the usual way, card → module → transforms → weights: applying this transform
loads the base's weights into the fresh module, adds the adapters (QLoRA:
over a 4-bit base), and makes the module's ``state_dict`` hold the adapters
only, so the adapter file loads strictly and checkpoints stay small too.

A module whose ``weights_from`` attribute already names the base (set by a
warm start that has just loaded it) is not loaded twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from shoestring.errors import ShoestringError
from shoestring.models.lora import ADAPTER_MARK, LoRASpec, add_lora

KIND = "lora"
VERSION = 1


def lora_config(spec: LoRASpec, *, base: str | None, train_also: tuple[str, ...] = (),
                quantize: bool = False) -> dict[str, Any]:
    """The transform's config as a card records it."""
    return {"rank": spec.rank, "alpha": spec.alpha, "dropout": spec.dropout,
            "targets": list(spec.targets), "train_also": list(train_also),
            "base": base, "quantize": "nf4" if quantize else None}


def _keeps(name: str, also: tuple[str, ...]) -> bool:
    return ADAPTER_MARK in name or any(name == t or name.startswith(t + ".") for t in also)


def adapters_only(module: nn.Module, also: tuple[str, ...]) -> None:
    """``state_dict`` of ``module`` holds adapters (and ``also``) only; loading one does not
    miss the frozen base tensors, which come from the base."""
    def drop_base(mod, state, prefix, meta) -> None:
        for key in [k for k in state if k.startswith(prefix) and
                    not _keeps(k[len(prefix):], also)]:
            del state[key]

    def ignore_missing_base(mod, incompatible) -> None:
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                        if _keeps(k, also)]

    # Kept so merge_lora can remove them: a merged model's state is whole again.
    module.adapter_state_hooks = [module.register_state_dict_post_hook(drop_base),
                                  module.register_load_state_dict_post_hook(ignore_missing_base)]


def load_base_into(module: nn.Module, base: str) -> list[str]:
    """The base's weights into ``module`` (its head may differ); notes for the log."""
    from shoestring.models.run_folder import load_run
    from shoestring.models.warm_start import load_matching_weights

    if not Path(base).exists():
        raise ShoestringError(f"the base model of this adapter run, '{base}', is gone",
                              hint="adapters are saved without their base: restore the base "
                              "folder, or train with --merge to save whole weights")
    done = load_matching_weights(module, load_run(Path(base)).model.state_dict(), base)
    module.weights_from = base
    return done.notes(base)


def apply_lora_transform(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The ``lora`` transform: base weights (if named), adapters, adapter-only state."""
    spec = LoRASpec(rank=int(config["rank"]), alpha=float(config["alpha"]),
                    dropout=float(config.get("dropout", 0.0)),
                    targets=tuple(config["targets"]))
    base = config.get("base")
    also = tuple(config.get("train_also") or ())
    if base and getattr(module, "weights_from", None) != base:
        load_base_into(module, base)
    add_lora(module, spec, also, quantize=bool(config.get("quantize")))
    if base:
        adapters_only(module, also)
    return module
