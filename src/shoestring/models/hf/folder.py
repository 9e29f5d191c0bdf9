"""Hugging Face checkpoint folders on disk: read one into a Shoestring module, write one back.

A folder is a checkpoint when it holds ``config.json`` and safetensors
weights: ``model.safetensors``, or shards listed in
``model.safetensors.index.json`` (the ``weight_map`` from tensor name to shard
file, as ``transformers``' ``save_pretrained`` writes them). Tensors are read
lazily, shard by shard, through ``safetensors.safe_open``, and only after every
name and shape has been checked. Pickled weights (``pytorch_model.bin``) are
refused: loading them can run arbitrary code.

>>> from pathlib import Path
>>> inspect_checkpoint(Path("/nonexistent"))
Traceback (most recent call last):
...
shoestring.errors.ShoestringError: '/nonexistent' is not a Hugging Face checkpoint: no such folder
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes
from shoestring.models.hf import CONFIG, is_hf_checkpoint
from shoestring.models.hf.convert import find_prefix, to_hf, to_shoestring
from shoestring.models.hf.families import (
    Imported,
    family_for_architecture,
    family_of_model_type,
)

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"
# Side files a checkpoint may carry that export copies from the model's origin.
SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
# transformers' save_pretrained default shard size (5 GB).
DEFAULT_SHARD_BYTES = 5 * 10**9
# Token ids export carries over from the checkpoint a model was imported from.
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _not_a_checkpoint(path: Path, why: str) -> ShoestringError:
    return ShoestringError(f"'{path}' is not a Hugging Face checkpoint: {why}",
                           hint="pass a folder with config.json and model.safetensors (or "
                           "sharded model-*.safetensors with model.safetensors.index.json), "
                           "as transformers' save_pretrained writes it, or a Shoestring run")


def read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of checkpoint folder ``path``, checked to be a JSON object."""
    path = Path(path)
    if not path.is_dir():
        raise _not_a_checkpoint(path, "no such folder")
    file = path / CONFIG
    if not file.is_file():
        present = sorted(p.name for p in path.iterdir())[:8]
        raise _not_a_checkpoint(path, f"no {CONFIG} (it holds: {present or 'nothing'})")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShoestringError(f"'{file}' is not valid JSON: {exc}",
                              hint="the file is damaged; restore it") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise _not_a_checkpoint(path, f"{CONFIG} has no model_type")
    return config


class ShardSource:
    """The tensors of a checkpoint's safetensors files, opened once and read on demand."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.path = Path(path)
        self._where: dict[str, Path] = {}
        self._open: dict[Path, Any] = {}
        for file in self._files():
            try:
                handle = safe_open(str(file), framework="pt")
            except Exception as exc:  # safetensors raises its own error types
                raise ShoestringError(f"cannot read weights '{file}': {exc}",
                                      hint="the file is damaged or cut short; restore it") \
                    from None
            self._open[file] = handle
            for name in handle.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                self._where[name] = file

    def _files(self) -> list[Path]:
        index, single = self.path / INDEX, self.path / WEIGHTS
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                files = sorted({str(v) for v in weight_map.values()})
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ShoestringError(f"'{index}' is not a safetensors index ({exc!r})",
                                      hint="it must hold {\"weight_map\": {tensor: file}}; "
                                      "restore it") from None
            missing = [f for f in files if not (self.path / f).is_file()]
            if missing:
                raise ShoestringError(f"'{index}' lists shards that are not in the folder: "
                                      f"{missing}", hint="copy the missing shards, or "
                                      "download the checkpoint again")
            return [self.path / f for f in files]
        if single.is_file():
            return [single]
        pickled = [p for p in PICKLED if (self.path / p).exists()]
        if pickled:
            raise ShoestringError(f"'{self.path}' holds pickled weights ({pickled[0]}), which "
                                  "Shoestring does not load: unpickling can run arbitrary code",
                                  hint="convert them once to safetensors, e.g. with "
                                  "transformers: AutoModel.from_pretrained(DIR)"
                                  ".save_pretrained(DIR, safe_serialization=True)")
        raise _not_a_checkpoint(self.path, f"no {WEIGHTS} and no {INDEX}")

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open[self._where[name]].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self._open[self._where[name]].get_tensor(name)


@dataclass
class ImportedModel:
    """A Hugging Face checkpoint as a Shoestring module (eval mode) and its description."""

    model: torch.nn.Module
    imported: Imported
    config: dict[str, Any]
    path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> dict[str, Any]:
        return self.imported.architecture

    @property
    def tokenizer_file(self) -> Path | None:
        file = self.path / TOKENIZER
        return file if file.is_file() else None


def inspect_checkpoint(path: Path) -> Imported:
    """The Shoestring architecture of checkpoint ``path``, from ``config.json`` alone."""
    config = read_config(path)
    return family_of_model_type(config.get("model_type")).architecture(config)


def load_hf_state(path: Path, imported: Imported, expected: dict[str, tuple[int, ...]]
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Shoestring-named tensors of checkpoint ``path`` for a module with ``expected``
    shapes, and the checkpoint's tensors left unused."""
    family = family_of_model_type(imported.model_type)
    source = ShardSource(path)
    names = [n for n in source.names() if not any(p.search(n) for p in family.ignored)]
    prefix = find_prefix(family.prefixes, family.anchor, names, imported.model_type)
    rules = family.rules(imported.architecture["params"])
    state, unused = to_shoestring(rules, prefix, source, expected)
    return state, [n for n in unused if not any(p.search(n) for p in family.ignored)]


def import_checkpoint(path: Path) -> ImportedModel:
    """Read checkpoint folder ``path`` into a float32 Shoestring module in eval mode.

    Raises :class:`ShoestringError` for a folder that is not a checkpoint, an
    unsupported ``model_type`` or feature, and weights that do not fit
    ``config.json`` (every missing tensor and shape mismatch listed).
    """
    from shoestring.models.registry import build_model

    path = Path(path)
    config = read_config(path)
    imported = family_of_model_type(config.get("model_type")).architecture(config)
    model = build_model(imported.architecture)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state, unused = load_hf_state(path, imported, expected)
    model.load_state_dict(state)
    model.eval()
    notes = list(imported.notes)
    if unused:
        notes.append(f"{len(unused)} tensors of the checkpoint are not used by this head: "
                     f"{', '.join(unused[:6])}{' …' if len(unused) > 6 else ''}")
    return ImportedModel(model, imported, config, path, notes)


# --- export ---------------------------------------------------------------------------------

def _shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors grouped in order into shards of at most ``max_bytes`` (a larger tensor alone)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += n
    return shards


def export_checkpoint(state: dict[str, torch.Tensor], architecture: dict[str, Any], out: Path,
                      *, class_names: list[str] | None = None, tokenizer_json: str | None = None,
                      tokenizer_config: dict | None = None, origin: Path | None = None,
                      dtype: str = "float32",
                      max_shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False
                      ) -> list[Path]:
    """Write a Shoestring model as a Hugging Face checkpoint folder ``out``; return its files.

    ``origin`` is the checkpoint the model was imported from, if any: its token
    ids and tokenizer side files are carried over; otherwise ``tokenizer_config``
    is written as ``tokenizer_config.json`` beside ``tokenizer_json``. The folder appears whole or
    not at all (it is written beside ``out`` and renamed into place).
    """
    if dtype not in DTYPES:
        raise ShoestringError(f"unknown dtype {dtype!r}", hint=f"use one of: {', '.join(DTYPES)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ShoestringError(f"'{out}' already exists and is not empty",
                              hint="choose another --out, or pass --overwrite to replace it")
    family = family_for_architecture(architecture)
    config = family.hf_config(architecture)
    origin_config = read_config(origin) if origin is not None and is_hf_checkpoint(origin) \
        else {}
    for key in TOKEN_ID_KEYS:
        if key in origin_config and config.get("model_type") != "bert":
            config[key] = origin_config[key]
    if class_names and config.get("num_labels"):
        config["id2label"] = {str(i): n for i, n in enumerate(class_names)}
        config["label2id"] = {n: i for i, n in enumerate(class_names)}
    config["torch_dtype"] = dtype
    base_prefix = "" if config["architectures"][0] == "BertModel" else family.prefixes[0]
    tensors = {k: v.to(DTYPES[dtype]) for k, v in
               to_hf(family.rules(architecture["params"]), base_prefix, state).items()}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_folder(tmp, config, tensors, max_shard_bytes, tokenizer_json, origin)
        if tokenizer_json is not None and tokenizer_config is not None and \
                not (tmp / "tokenizer_config.json").exists():
            atomic_write_bytes(tmp / "tokenizer_config.json",
                               json.dumps(tokenizer_config, indent=2).encode())
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())


def _write_folder(folder: Path, config: dict, tensors: dict[str, torch.Tensor],
                  max_shard_bytes: int, tokenizer_json: str | None, origin: Path | None) -> None:
    from safetensors.torch import save_file

    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        atomic_write_bytes(folder / INDEX, json.dumps(index, indent=2).encode())
    atomic_write_bytes(folder / CONFIG, json.dumps(config, indent=2).encode())
    if tokenizer_json is not None:
        atomic_write_bytes(folder / TOKENIZER, tokenizer_json.encode("utf-8"))
    if origin is not None:
        for name in SIDE_FILES:
            if (Path(origin) / name).is_file():
                shutil.copyfile(Path(origin) / name, folder / name)
