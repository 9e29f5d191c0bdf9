"""``shoestring generate RUN``: continue a prompt with a trained GPT run (CLI only).

A thin layer over :func:`shoestring.models.generate.generate_text`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoestring.cli.command import Command
from shoestring.cli.context import cli_context


@click.command("generate", cls=Command)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--prompt", default="\n", show_default="a newline",
              help="Text to continue.")
@click.option("--max-new-tokens", type=int, default=200, show_default=True,
              help="Tokens to sample after the prompt.")
@click.option("--temperature", type=float, default=0.8, show_default=True,
              help="Softmax temperature; 0 picks the most likely token every time.")
@click.option("--top-k", type=int, default=200, show_default=True,
              help="Sample among the K most likely tokens only (0: all).")
@click.option("--top-p", type=float, default=None, show_default="1: all",
              help="Sample among the most likely tokens whose probabilities sum to P.")
@click.option("--stop", multiple=True, help="End the text at this sequence (left out); up to "
              "4, e.g. --stop $'\\n\\n'.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampler: the same seed gives the same text.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the text.")
@click.pass_context
def generate_command(ctx: click.Context, run_dir: Path, prompt: str, max_new_tokens: int,
                     temperature: float, top_k: int, top_p: float | None,
                     stop: tuple[str, ...], seed: int, as_json: bool) -> None:
    """Continue PROMPT with the GPT language model of run folder RUN_DIR.

    RUN_DIR may also be a Hugging Face checkpoint folder (GPT-2, Llama or Mistral:
    config.json, model.safetensors and tokenizer.json). --temperature 0 decodes
    greedily, the same tokens as transformers' generate(do_sample=False).
    """
    from shoestring.models.generate import generate_text

    c = cli_context(ctx)
    result = generate_text(run_dir, prompt, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k or None, seed=seed,
                           top_p=top_p, stop=stop)
    if as_json:
        c.out.print_json(json.dumps({"prompt": result.prompt, "completion": result.completion,
                                     "prompt_tokens": result.prompt_tokens,
                                     "new_tokens": result.new_tokens,
                                     "finish_reason": result.finish_reason}))
        return
    c.out.print(result.prompt + result.completion, markup=False, highlight=False,
                soft_wrap=True)


def register(group: click.Group) -> None:
    """Add ``generate`` to the ``shoestring`` command group."""
    group.add_command(generate_command, "generate")
