"""Sampling text from a trained GPT: the token loop, and the run-folder wrapper.

:func:`generate` is nanoGPT's ``GPT.generate``: crop the context to
``block_size``, scale the last position's logits by ``1/temperature``, keep
the ``top_k`` largest, sample. Temperature 0 means greedy decoding. No
key/value cache: every step runs the whole (cropped) context, which is simple
and fast enough for the small models this is used with on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shoestring.errors import ShoestringError

def _check(max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    problems = []
    if max_new_tokens < 0:
        problems.append(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    if not temperature >= 0.0:
        problems.append(f"temperature must be 0 (greedy) or more, got {temperature}")
    if top_k is not None and top_k < 1:
        problems.append(f"top_k must be at least 1, got {top_k}")
    if problems:
        raise ShoestringError("; ".join(problems), hint="e.g. --max-new-tokens 200 "
                              "--temperature 0.8 --top-k 200")


@torch.no_grad()
def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             vocab_limit: int | None = None) -> torch.Tensor:
    """Extend token ids ``idx`` ``[B, T]`` by ``max_new_tokens`` sampled tokens.

    The same ``generator`` state gives the same tokens. ``vocab_limit`` bans
    ids at or above it (a model vocabulary padded beyond the tokenizer's). The
    model runs in eval mode (dropout off) and is put back in its previous mode
    afterwards.
    """
    _check(max_new_tokens, temperature, top_k)
    block = model.config.block_size
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -block:], last_only=True)
            logits = logits[:, -1, :].float()
            if vocab_limit is not None:
                logits[:, vocab_limit:] = float("-inf")
            if temperature == 0.0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.size(-1):
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat((idx, nxt.to(idx.dtype)), dim=1)
    finally:
        model.train(was_training)
    return idx


@dataclass(frozen=True)
class Generation:
    """A prompt and what the model wrote after it."""

    prompt: str
    completion: str
    prompt_tokens: int
    new_tokens: int


def generate_text(run_dir: Path, prompt: str, max_new_tokens: int = 200,
                  temperature: float = 0.8, top_k: int | None = 200, seed: int = 0
                  ) -> Generation:
    """Load a GPT run folder (weights and tokenizer) and continue ``prompt``."""
    from shoestring.models.run_folder import load_run, read_card

    run_dir = Path(run_dir)
    _check(max_new_tokens, temperature, top_k)
    family = read_card(run_dir).family
    if family != "gpt":
        raise ShoestringError(f"run '{run_dir}' holds a {family!r} model; generation needs a "
                              "'gpt' language model", hint="pass the folder of a gpt run")
    if not prompt:
        raise ShoestringError("the prompt is empty", hint="pass some text, e.g. --prompt 'ROMEO:'")
    run = load_run(run_dir)
    tokenizer, model = run.tokenizer(), run.model
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ShoestringError(f"the prompt {prompt!r} encodes to no tokens",
                              hint="use a longer prompt")
    generator = torch.Generator().manual_seed(seed)
    out = generate(model, torch.tensor([ids], dtype=torch.long), max_new_tokens, temperature,
                   top_k, generator, vocab_limit=tokenizer.vocab_size)
    new = out[0, len(ids):].tolist()
    return Generation(prompt=prompt, completion=tokenizer.decode(new),
                      prompt_tokens=len(ids), new_tokens=len(new))
