"""Planning a Shoestring run: its model *and* its workload, from a run folder or a run TOML.

``shoestring plan run.toml`` (a ``shoestring train`` config), ``shoestring plan
runs/x`` (a finished run folder) and ``shoestring plan runs/x/config.toml``
all mean "plan this run": the model's shapes come from its model card when the
run has one, else from the config and the shape of its data; the workload
(sequence length, batch, micro-batch, steps, precision, checkpointing,
optimizer) comes from the config's ``[train]`` section, so that a plan of a
12-sequence run prices 12 sequences per step, not a pre-training default.

Flags given on the command line still win over the run's values
(:func:`apply_run_defaults`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoestring.errors import ShoestringError
from shoestring.plan.specs import ModelSpec

# A GPT whose vocabulary no data source fixes (a [model] fragment such as the
# Llama-style example in docs/transformers.md) is planned at the byte
# tokenizer's vocabulary, the smallest one Shoestring trains with.
BYTE_VOCAB = 256


@dataclass(frozen=True)
class RunInputs:
    """What a run fixes for a plan: the model and the workload fields it sets."""

    spec: ModelSpec
    defaults: dict[str, Any] = field(default_factory=dict)   # PlanConfig fields
    notes: tuple[str, ...] = ()


def run_config_path(ref: str) -> tuple[Path | None, Path | None]:
    """(run folder with a model card, config.toml) of a run reference, either possibly absent.

    A ``.toml`` file or a folder holding a model card and/or ``config.toml``
    is a run; anything else (preset names, ``config.json``) is not.
    """
    from shoestring.models.run_folder import RunFolder

    path = Path(ref)
    if path.is_file() and path.suffix == ".toml":
        folder = RunFolder(path.parent)
        return (folder.path if folder.has_model() else None), path
    if path.is_dir():
        folder = RunFolder(path)
        if folder.has_model() or folder.config.is_file():
            return (folder.path if folder.has_model() else None), \
                (folder.config if folder.config.is_file() else None)
    return None, None


def is_run_reference(ref: str) -> bool:
    return any(p is not None for p in run_config_path(ref))


def load_run_inputs(ref: str) -> RunInputs:
    """The spec and workload of run ``ref`` (a run folder or a run ``.toml``)."""
    from shoestring.models.run_folder import RunFolder, read_card
    from shoestring.plan.presets import spec_from_architecture

    run_dir, toml = run_config_path(ref)
    config = _read_run_config(toml) if toml else None
    notes: list[str] = []
    units: float | None = None
    if run_dir is not None:
        spec = spec_from_architecture(read_card(run_dir).architecture.model_dump(),
                                      str(run_dir))
    elif config is not None:
        spec, units, shape_notes = _spec_from_config(config, str(toml))
        notes += shape_notes
    else:  # pragma: no cover - run_config_path guarantees one of them
        raise ShoestringError(f"{ref} is not a run", hint="pass a run folder or a run .toml")
    defaults = workload_defaults(config, spec, units) if config is not None else {}
    if run_dir is not None and config is not None and "tokens" not in defaults \
            and "samples" not in defaults:
        steps = (RunFolder(run_dir).read_json(RunFolder(run_dir).summary) or {}).get("steps")
        if isinstance(steps, int) and steps > 0:
            defaults |= _units_from_steps(spec, steps, defaults)
    return RunInputs(spec, defaults, tuple(notes))


def _read_run_config(path: Path) -> Any:
    from shoestring.train.config import read_toml, resolve_config

    return resolve_config(read_toml(path))


def _token_model(name: str) -> str | None:
    """'gpt' or 'encoder' when ``name`` is a transformer of the model registry."""
    from shoestring.models.presets import ENCODER_PRESETS, GPT_PRESETS

    if name in GPT_PRESETS:
        return "gpt"
    if name in ENCODER_PRESETS:
        return "encoder"
    return None


def _spec_from_config(config: Any, where: str) -> tuple[ModelSpec, float | None, list[str]]:
    """The spec of a run that has not been trained yet, from its data's shape.

    Returns the spec, the training units of one epoch (tokens of a text corpus,
    examples otherwise; None when unknown) and notes.
    """
    from shoestring.data.sources import split_spec
    from shoestring.models.registry import DataShape, architecture_for
    from shoestring.plan.presets import spec_from_architecture

    kind = _token_model(config.model.name)
    source = config.data.source
    notes: list[str] = []
    units: float | None = None
    if kind == "gpt":
        block = config.model.block_size or 0
        if split_spec(source)[0] == "text":
            vocab, units = _text_vocab_and_tokens(config)
        else:
            vocab = config.model.vocab_size or BYTE_VOCAB
            if not config.model.vocab_size:
                notes.append(f"{where} names no text corpus ([data] source = 'text:PATH'): "
                             f"planned at the byte tokenizer's vocabulary of {BYTE_VOCAB}")
        shape = DataShape(input_shape=(block,), num_outputs=vocab, vocab_size=vocab)
    else:
        shape, units = _dataset_shape(config)
    arch = architecture_for(config.model, shape)
    return spec_from_architecture(arch, where), units, notes


def _text_vocab_and_tokens(config: Any) -> tuple[int, float]:
    """Vocabulary and (approximate) token count of a ``text:`` corpus, without tokenizing it.

    Byte: 256 ids, one token per byte. Char: the distinct characters, one token
    each. BPE: the configured vocabulary (an upper bound: a small corpus may
    end with fewer merges) and about 4 bytes per token (GPT-2's BPE on English
    text averages ~4 characters per token, OpenAI tokenizer documentation).
    """
    from shoestring.data.sources import split_spec
    from shoestring.data.text_corpus import corpus_files, iter_corpus
    from shoestring.models.tokenizers import DEFAULT_BPE_VOCAB

    files = corpus_files(Path(split_spec(config.data.source)[1]).expanduser())
    kind = config.data.tokenizer or "char"
    nbytes = sum(f.path.stat().st_size for f in files)
    train_share = 1 - config.data.val_fraction
    if kind == "byte":
        return BYTE_VOCAB, nbytes * train_share
    if kind == "bpe":
        return config.data.bpe_vocab_size or DEFAULT_BPE_VOCAB, nbytes / 4 * train_share
    chars: set[str] = set()
    count = 0
    for chunk in iter_corpus(files):
        chars.update(chunk)
        count += len(chunk)
    return max(len(chars), 1), count * train_share


def _dataset_shape(config: Any) -> tuple[Any, float]:
    """The data shape (and training examples) of a table, image or JSONL source."""
    from shoestring.data.sources import load_dataset
    from shoestring.models.registry import DataShape

    d = config.data
    dataset = load_dataset(d.source, d.source_options())
    shape = DataShape(dataset.input_shape, dataset.num_outputs,
                      vocab_size=getattr(dataset, "vocab_size", None) or None,
                      pad_id=getattr(dataset, "pad_id", None))
    return shape, float(len(dataset.train))


def workload_defaults(config: Any, spec: ModelSpec, units_per_epoch: float | None
                      ) -> dict[str, Any]:
    """PlanConfig values that ``config``'s ``[train]`` section fixes.

    ``units_per_epoch``: tokens of one pass over a text corpus, or examples.
    """
    t = config.train
    out: dict[str, Any] = {"batch_size": t.batch_size}
    if spec.family != "mlp":
        out["seq_len"] = spec.max_seq
    if t.micro_batch_size:
        out["micro_batch_size"] = min(t.micro_batch_size, t.batch_size)
    if t.activation_checkpointing:
        out["activation_checkpointing"] = True
    if t.precision == "fp32":
        out["precision"] = "fp32"
    elif t.precision in ("bf16", "fp16"):
        out["precision"] = "bf16"
    out["optimizer"] = "sgd" if t.optimizer == "sgd" else "adamw"
    steps = None
    if units_per_epoch is not None:
        per_step = t.batch_size * (1 if spec.family == "mlp" else
                                   (spec.max_seq if spec.family == "decoder" else 1))
        steps = t.epochs * max(1, math.ceil(units_per_epoch / per_step))
    if t.max_steps:
        steps = min(steps, t.max_steps) if steps else t.max_steps
    if steps:
        out |= _units_from_steps(spec, steps, out)
    return out


def _units_from_steps(spec: ModelSpec, steps: int, defaults: dict[str, Any]) -> dict[str, Any]:
    """``tokens`` (decoders) or ``samples`` (MLPs, encoders) of ``steps`` optimizer steps."""
    batch = defaults.get("batch_size", 1)
    if spec.family == "decoder":
        return {"tokens": float(steps * batch * defaults.get("seq_len", spec.max_seq))}
    return {"samples": steps * batch, "epochs": 1.0}


def apply_run_defaults(values: dict[str, Any], given: set[str], defaults: dict[str, Any]
                       ) -> dict[str, Any]:
    """``values`` with the run's ``defaults`` for every field the user did not give.

    A run that fixes ``samples`` clears a default ``tokens`` and vice versa.
    """
    out = dict(values)
    chosen = {k: v for k, v in defaults.items() if k not in given}
    if {"tokens", "samples"} & given:
        for key in ("tokens", "samples", "epochs"):
            chosen.pop(key, None)
    out.update(chosen)
    return out
