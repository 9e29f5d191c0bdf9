"""Sampling text from a trained GPT: the token loop, and the run-folder wrapper.

:func:`generate` is nanoGPT's ``GPT.generate`` with a key/value cache: the
prompt runs once (prefill), then each step runs only the newest token
against the cached keys and values (:mod:`shoestring.models.kv_cache`). Once a
sequence fills the context (``block_size``), each step runs the last
``block_size`` tokens in full, as nanoGPT's sliding window does, so the
tokens are the same with or without the cache. Tokens are chosen by
:func:`shoestring.models.sampling.next_tokens` (temperature 0 is greedy;
top-k; top-p). :func:`generate_text` adds the tokenizer, stop sequences and a
seed: the same seed gives the same text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shoestring.errors import ShoestringError
from shoestring.models.kv_cache import KVCache
from shoestring.models.sampling import SamplingParams, next_tokens

# OpenAI's completions API allows up to 4 stop sequences; so do we, everywhere.
MAX_STOP_SEQUENCES = 4


def _check(max_new_tokens: int, params: SamplingParams, stop: Sequence[str] = ()) -> None:
    problems = []
    if max_new_tokens < 0:
        problems.append(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    problems += params.problems()
    if len(stop) > MAX_STOP_SEQUENCES or any(not s for s in stop):
        problems.append(f"stop takes 1 to {MAX_STOP_SEQUENCES} non-empty sequences, got "
                        f"{list(stop)!r}")
    if problems:
        raise ShoestringError("; ".join(problems), hint="e.g. --max-new-tokens 200 "
                              "--temperature 0.8 --top-k 200 --top-p 0.95")


@torch.no_grad()
def iter_tokens(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                params: SamplingParams, generator: torch.Generator | None = None,
                vocab_limit: int | None = None, use_cache: bool = True
                ) -> Iterator[torch.Tensor]:
    """Yield the next token of every row of ``idx`` ``[B, T]`` (a ``[B]`` tensor), step by step.

    Runs the model in eval mode (dropout off) and puts it back in its previous
    mode afterwards. ``use_cache=False`` reruns the context every step (the
    reference the cache is tested against).
    """
    from shoestring.models.gpt import GPT

    block = model.config.block_size
    rows = idx.shape[0]
    gens = [generator] * rows
    was_training = model.training
    model.eval()
    try:
        context = idx[:, -block:]
        cache = None
        if use_cache and isinstance(model, GPT) and max_new_tokens > 0:
            p = model.wte.weight
            cache = KVCache(model.config, rows, device=p.device, dtype=p.dtype)
            logits, _ = model(context, last_only=True, cache=cache.step(range(rows),
                                                                        context.shape[1]))
        for i in range(max_new_tokens):
            if cache is None:
                logits, _ = model(context, last_only=True)
            nxt = next_tokens(logits[:, -1, :], [params] * rows, gens, vocab_limit)
            yield nxt
            if i == max_new_tokens - 1:
                break
            context = torch.cat((context, nxt[:, None].to(context.dtype)), dim=1)[:, -block:]
            if cache is not None and cache.lengths[0] < block:
                logits, _ = model(nxt[:, None].to(idx.dtype), cache=cache.step(range(rows), 1))
            else:
                cache = None  # the window slides: positions shift, so the cache is stale
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             vocab_limit: int | None = None, top_p: float | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """Extend token ids ``idx`` ``[B, T]`` by ``max_new_tokens`` sampled tokens.

    The same ``generator`` state gives the same tokens. ``vocab_limit`` bans
    ids at or above it (a model vocabulary padded beyond the tokenizer's).
    """
    params = SamplingParams(temperature, top_k, top_p)
    _check(max_new_tokens, params)
    new = list(iter_tokens(model, idx, max_new_tokens, params, generator, vocab_limit,
                           use_cache))
    if not new:
        return idx
    return torch.cat((idx, torch.stack(new, dim=1).to(idx.dtype)), dim=1)


@dataclass(frozen=True)
class Generation:
    """A prompt and what the model wrote after it."""

    prompt: str
    completion: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: str = "length"  # or "stop": a stop sequence ended it


def generate_text(run_dir: Path, prompt: str, max_new_tokens: int = 200,
                  temperature: float = 0.8, top_k: int | None = 200, seed: int = 0,
                  top_p: float | None = None, stop: Sequence[str] = ()) -> Generation:
    """Load a GPT run folder (weights and tokenizer) and continue ``prompt``.

    Generation ends after ``max_new_tokens`` tokens or at the first of the
    ``stop`` sequences, which is left out of the completion.
    """
    from shoestring.models.run_folder import load_run, read_card
    from shoestring.models.text_stream import TextStream

    run_dir = Path(run_dir)
    params = SamplingParams(temperature, top_k, top_p)
    _check(max_new_tokens, params, stop)
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
    text = TextStream(tokenizer.decode, stop)
    for nxt in iter_tokens(model, torch.tensor([ids], dtype=torch.long), max_new_tokens, params,
                           generator, vocab_limit=tokenizer.vocab_size):
        text.push(int(nxt[0]))
        if text.stopped:
            break
    text.finish()
    return Generation(prompt=prompt, completion=text.text, prompt_tokens=len(ids),
                      new_tokens=len(text.ids), finish_reason="stop" if text.stopped else "length")
