"""``shoestring export RUN --format hf``: a run folder as a Hugging Face checkpoint.

The run's model (its transforms applied, LoRA adapters merged) is written with
``config.json``, safetensors weights (sharded above ``max_shard_bytes``, as
``save_pretrained`` does) and its tokenizer as ``tokenizer.json``, so that
``transformers``' ``AutoModel*.from_pretrained`` and ``AutoTokenizer`` load it.
When the run descends from an imported checkpoint (its card's ``lineage``),
that checkpoint's token ids and tokenizer side files are carried over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shoestring.errors import ShoestringError
from shoestring.models.hf import is_hf_checkpoint

FORMATS = ("hf",)
MAX_LINEAGE = 16  # parents followed looking for the imported checkpoint


@dataclass(frozen=True)
class ExportResult:
    out: Path
    files: list[Path]
    model_type: str
    notes: list[str] = field(default_factory=list)


def origin_checkpoint(run_dir: Path) -> Path | None:
    """The Hugging Face checkpoint a run descends from, if its lineage leads to one."""
    from shoestring.models.run_folder import read_card

    path: Path | None = Path(run_dir)
    for _ in range(MAX_LINEAGE):
        if path is None or not path.exists():
            return None
        if is_hf_checkpoint(path):
            return path
        try:
            parent = read_card(path).lineage.parent_dir
        except ShoestringError:
            return None
        path = Path(parent) if parent and Path(parent) != path else None
    return None


def export_run(run_dir: Path, out: Path, *, format: str = "hf", dtype: str = "float32",
               max_shard_bytes: int | None = None, overwrite: bool = False) -> ExportResult:
    """Write the model of ``run_dir`` to ``out`` in ``format`` (``hf``)."""
    import json

    from shoestring.models.hf.folder import DEFAULT_SHARD_BYTES, export_checkpoint
    from shoestring.models.hf.tokenizer import CLS, PAD, hf_tokenizer_json
    from shoestring.models.lora import lora_layers, merge_lora
    from shoestring.models.run_folder import load_run

    if format not in FORMATS:
        raise ShoestringError(f"unknown export format {format!r}",
                              hint=f"use one of: {', '.join(FORMATS)}")
    run = load_run(Path(run_dir))
    notes = []
    model = run.model
    if lora_layers(model):
        model = merge_lora(model)
        notes.append("LoRA adapters merged into the weights")
    tokenizer_json, tokenizer_config = None, None
    if run.card.tokenizer is not None and run.folder.tokenizer.exists():
        layout = run.card.tokenizer.layout
        tokenizer_json = hf_tokenizer_json(run.tokenizer(), layout)
        # The generic fast tokenizer reads tokenizer.json as it is; a model-specific class
        # (GPT2TokenizerFast…) would rebuild its own pre-tokenizer and change the ids.
        tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast",
                            "model_max_length": run.card.input_shape[0]}
        if layout.kind == "cls-pad":
            tokenizer_config.update(pad_token=PAD, cls_token=CLS)
    else:
        notes.append("the run has no tokenizer; the checkpoint has none either")
    files = export_checkpoint(model.state_dict(), run.card.architecture.model_dump(), out,
                              class_names=run.card.class_names, tokenizer_json=tokenizer_json,
                              tokenizer_config=tokenizer_config,
                              origin=origin_checkpoint(run_dir), dtype=dtype,
                              max_shard_bytes=max_shard_bytes or DEFAULT_SHARD_BYTES,
                              overwrite=overwrite)
    model_type = json.loads((Path(out) / "config.json").read_text())["model_type"]
    return ExportResult(Path(out), files, model_type, notes)
