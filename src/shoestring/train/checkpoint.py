"""Checkpoints that survive ``kill -9``: atomic, checksummed, with fallback.

A checkpoint is one safetensors file holding the model weights, the
optimizer state, the RNG state and the position in the data order (JSON in the
safetensors metadata). It is written to a temp file, fsynced and renamed; then
``manifest.json`` (also written atomically) records its SHA-256. Loading walks
the manifest from the newest entry and skips, with a warning, any file whose
checksum or format is wrong, so a truncated or corrupted latest checkpoint
falls back to the previous good one. No pickle is involved anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from shoestring.io import atomic_write_bytes, read_bytes, read_text

MANIFEST = "manifest.json"
KEEP = 3  # good checkpoints kept on disk; older ones are deleted


@dataclass
class TrainingState:
    """What resuming needs besides the module and optimizer objects."""

    epoch: int = 0            # current epoch (0-based)
    step_in_epoch: int = 0    # optimizer steps already taken in that epoch
    global_step: int = 0
    elapsed_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# Nested state (bitsandbytes keeps its 8-bit moments in a dict under one key) is
# flattened with this separator: "optim.<pid>.<key>/<inner key>".
NESTED = "/"


def _flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}

    def put(pid, key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().cpu()
        elif isinstance(value, dict):
            for inner, v in value.items():
                put(pid, f"{key}{NESTED}{inner}", v)
        else:
            scalars.setdefault(str(pid), {})[key] = value

    for pid, entries in opt_state["state"].items():
        for key, value in entries.items():
            put(pid, key, value)
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _set_nested(entry: dict[str, Any], key: str, value: Any) -> None:
    *outer, last = key.split(NESTED)
    for k in outer:
        entry = entry.setdefault(k, {})
    entry[last] = value


def _param_key(pid: str) -> int | str:
    return int(pid) if pid.isdigit() else pid


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            # Parameter ids are ints, or dotted names in FSDP's full state dicts.
            path, _, inner = name[len("optim."):].partition(NESTED)
            pid, key = path.rsplit(".", 1)
            _set_nested(state.setdefault(_param_key(pid), {}),
                        key + (NESTED + inner if inner else ""), value)
    for pid, entries in meta["scalars"].items():
        for key, value in entries.items():
            _set_nested(state.setdefault(_param_key(pid), {}), key, value)
    return {"state": state, "param_groups": meta["param_groups"]}


def encode_checkpoint(model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                      state: TrainingState, rng_state: torch.Tensor) -> bytes:
    """Serialise everything needed to resume into safetensors bytes.

    ``optimizer_state`` is an ``optimizer.state_dict()`` (or FSDP's full one).
    """
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model_state.items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = rng_state.contiguous()
    metadata = {
        "format": "shoestring.checkpoint/1",
        "optimizer": json.dumps(opt_meta),
        "training_state": json.dumps(state.__dict__),
    }
    return st_save(tensors, metadata=metadata)


@dataclass
class Checkpoint:
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng_state: torch.Tensor
    state: TrainingState
    path: Path


def decode_checkpoint(data: bytes, path: Path) -> Checkpoint:
    tensors = st_load(data)
    # safetensors keeps the metadata in the JSON header; read it back.
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + header_len])["__metadata__"]
    if meta.get("format") != "shoestring.checkpoint/1":
        raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    return Checkpoint(
        model_state=model_state,
        optimizer_state=_unflatten_optimizer(tensors, json.loads(meta["optimizer"])),
        rng_state=tensors["rng.torch"],
        state=TrainingState(**json.loads(meta["training_state"])),
        path=path,
    )


def _read_manifest(directory: Path) -> list[dict[str, Any]]:
    try:
        return json.loads(read_text(directory / MANIFEST))["checkpoints"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def save_checkpoint(directory: Path, payload: bytes, step: int, keep: int = KEEP) -> Path:
    """Write ``payload`` as the newest checkpoint, durably, and prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step:010d}.safetensors"
    path = directory / name
    atomic_write_bytes(path, payload)
    entries = [e for e in _read_manifest(directory) if e.get("file") != name]
    entries.append({"file": name, "step": step, "sha256": hashlib.sha256(payload).hexdigest(),
                    "bytes": len(payload)})
    entries.sort(key=lambda e: e["step"])
    kept, dropped = entries[-keep:], entries[:-keep]
    atomic_write_bytes(directory / MANIFEST, json.dumps({"checkpoints": kept}, indent=1).encode())
    for e in dropped:
        (directory / e["file"]).unlink(missing_ok=True)
    return path


def has_checkpoints(directory: Path) -> bool:
    """Whether a run has written a checkpoint into ``directory``."""
    return (directory / MANIFEST).exists()


def load_latest_checkpoint(directory: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that verifies, and a warning for each one skipped."""
    warnings: list[str] = []
    entries = _read_manifest(directory)
    if not entries:
        # No usable manifest (e.g. lost before its first write): fall back to
        # the files themselves, newest first, without checksums.
        entries = [{"file": p.name, "sha256": None}
                   for p in sorted(directory.glob("ckpt-*.safetensors"))]
    for entry in reversed(entries):
        path = directory / entry["file"]
        try:
            data = read_bytes(path)
        except OSError as exc:
            warnings.append(f"checkpoint '{path}' unreadable ({exc}); using an older one")
            continue
        digest = entry.get("sha256")
        if digest and hashlib.sha256(data).hexdigest() != digest:
            warnings.append(f"checkpoint '{path}' is corrupted (checksum mismatch); "
                            "falling back to the previous good checkpoint")
            continue
        try:
            return decode_checkpoint(data, path), warnings
        except Exception as exc:  # any decoding failure means a bad file
            warnings.append(f"checkpoint '{path}' cannot be decoded ({exc}); using an older one")
    return None, warnings
