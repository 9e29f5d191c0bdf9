"""Measuring candidates on this machine: latency, throughput, generation speed.

Latency is the model call as the server makes it (``module(x)`` under
``torch.inference_mode`` with the serving thread count, on inputs already
preprocessed), timed in-process with ``time.perf_counter``: HTTP would add
more than a small model's forward costs and hide the difference.

Candidates are timed in *interleaved rounds* (each round times every
candidate for a short slice) and the samples are pooled, so a slow minute
on a shared machine slows every candidate alike instead of whichever was
being timed; p50 and p95 are nearest-rank percentiles of the pooled samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

WARMUP_CALLS = 5
ROUNDS = 4


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    calls: int
    batch: int

    @property
    def throughput(self) -> float:
        """Examples per second at this batch size, from the median call."""
        return self.batch / (self.p50_ms / 1e3) if self.p50_ms > 0 else math.inf

    def to_json(self) -> dict:
        return {"p50_ms": round(self.p50_ms, 5), "p95_ms": round(self.p95_ms, 5),
                "throughput_per_s": round(self.throughput, 2), "calls": self.calls}


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sample.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50)
    2.0
    >>> percentile([4.0, 1.0, 3.0, 2.0], 95)
    4.0
    """
    s = sorted(samples)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def time_interleaved(calls: Mapping[str, Callable[[], object]], seconds: float, batch: int,
                     clock: Callable[[], float] = time.perf_counter,
                     on_round: Callable[[int], None] | None = None) -> dict[str, Latency]:
    """p50/p95 of each call, from ``ROUNDS`` interleaved rounds of ``seconds / ROUNDS`` each."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        for _ in range(WARMUP_CALLS):
            fn()
    slice_s = seconds / ROUNDS
    for r in range(ROUNDS):
        for name, fn in calls.items():
            out = samples[name]
            end = clock() + slice_s
            while True:
                t0 = clock()
                fn()
                t1 = clock()
                out.append(t1 - t0)
                if t1 >= end and len(out) >= 3 * (r + 1):
                    break
        if on_round is not None:
            on_round(r)
    return {name: Latency(percentile(s, 50) * 1e3, percentile(s, 95) * 1e3, len(s), batch)
            for name, s in samples.items()}


def forward_call(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One model call as the server makes it."""
    def call():
        with torch.inference_mode():
            return module(x)
    return call


def generation_tokens_per_second(module: nn.Module, prompt: torch.Tensor, new_tokens: int,
                                 clock: Callable[[], float] = time.perf_counter,
                                 repeats: int = 3) -> float:
    """Greedy tokens per second at batch 1 (the best of ``repeats`` runs: the machine's
    noise only ever slows a run down)."""
    from shoestring.models.generate import generate

    best = math.inf
    generate(module, prompt, 2, temperature=0.0)  # warm-up
    for _ in range(repeats):
        t0 = clock()
        generate(module, prompt, new_tokens, temperature=0.0)
        best = min(best, clock() - t0)
    return new_tokens / best


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
