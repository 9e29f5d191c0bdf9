"""``shoestring export RUN --format hf --out DIR`` (CLI only).

A thin layer over :func:`shoestring.models.hf.export.export_run`.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from shoestring.cli.command import Command
from shoestring.cli.context import cli_context

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30}


def parse_size(text: str) -> int:
    """``5GB`` → 5,000,000,000 bytes (transformers' ``max_shard_size`` spelling)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise click.BadParameter(f"{text!r} is not a size; write e.g. 5GB, 500MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@click.command("export", cls=Command)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["hf"]), default="hf", show_default=True,
              help="hf: a Hugging Face checkpoint folder (config.json, safetensors, "
              "tokenizer.json) that transformers loads.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="The folder to write (must not exist, or be empty).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]),
              default="float32", show_default=True, help="Precision of the saved weights.")
@click.option("--max-shard-size", default="5GB", show_default=True,
              help="Split the weights into shards of at most this size.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already holds files.")
@click.pass_context
def export_command(ctx: click.Context, run_dir: Path, fmt: str, out: Path, dtype: str,
                   max_shard_size: str, overwrite: bool) -> None:
    """Export the model of run folder RUN_DIR (gpt or encoder) to another format.

    A gpt run with learned positions, LayerNorm and GELU becomes GPT-2; one with
    RoPE, RMSNorm and SwiGLU becomes Llama (Mistral with a sliding window); an
    encoder becomes BERT (BertModel, BertForSequenceClassification or
    BertForMaskedLM). LoRA adapters are merged into the weights.

    \b
    Example:
      shoestring export runs/lm --format hf --out exported/lm
      python -c "import transformers as t; t.AutoModelForCausalLM.from_pretrained('exported/lm')"
    """
    from shoestring.models.hf.export import export_run

    c = cli_context(ctx)
    result = export_run(run_dir, out, format=fmt, dtype=dtype,
                        max_shard_bytes=parse_size(max_shard_size), overwrite=overwrite)
    for note in result.notes:
        c.err.print(f"note: {note}", highlight=False)
    size = sum(f.stat().st_size for f in result.files)
    c.out.print(f"Exported {run_dir} as {result.model_type} to {result.out} "
                f"({len(result.files)} files, {size / 1e6:.1f} MB)", highlight=False)


def register(group: click.Group) -> None:
    """Add ``export`` to the ``shoestring`` command group."""
    group.add_command(export_command, "export")
