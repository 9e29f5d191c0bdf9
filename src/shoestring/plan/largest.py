"""The largest micro-batch, or the longest context, that fits on one device.

``shoestring plan llama-3-8b --finetune qlora --largest context --hardware
rtx-4090`` answers "how long a sequence can I fine-tune on this card?". The
answer uses the same search as the plan — every memory saver that the user
did not pin (activation checkpointing, offloading, chunked loss, optimizer
step in backward) may be switched on — and bisects on the size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shoestring.plan.catalog import Device
from shoestring.plan.search import Fit, RateFn, search_training
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec
from shoestring.plan.workload import Workload

# Upper bounds of the bisection: more than any device of the catalog holds.
MAX_MICRO_BATCH = 1 << 16
MAX_CONTEXT = 1 << 22


@dataclass(frozen=True)
class Largest:
    """The largest size that fits on one ``device`` (0: not even the smallest)."""

    device: str
    what: str          # "micro-batch" | "context"
    value: int
    fit: Fit | None    # the fit at ``value``

    def to_dict(self) -> dict[str, Any]:
        f = self.fit
        return {"device": self.device, "what": self.what, "value": self.value,
                "memory_bytes": f.memory.total if f and f.memory else None,
                "strategy": f.strategy() if f else None,
                "tokens_per_second": (f.setup.micro_batch * f.setup.seq_len * f.setup.grad_accum
                                      / f.step_s) if f and f.fits and f.step_s else None}


def largest_that_fits(spec: ModelSpec, work: Workload, device: Device, rate: RateFn,
                      cfg: Any, what: str) -> Largest:
    """Bisect the micro-batch (at the workload's sequence length) or the sequence length
    (at ``cfg.micro_batch_size``, else 1) for the largest that fits on one ``device``."""
    micro = cfg.micro_batch_size or 1

    def attempt(n: int) -> Fit:
        if what == "micro-batch":
            w = replace(work, global_batch=n)
            c = cfg.model_copy(update={"micro_batch_size": n})
        else:
            w = replace(work, seq_len=n, global_batch=micro)
            c = cfg.model_copy(update={"micro_batch_size": micro})
        fit = search_training(spec, w, device, 1, rate, c)
        return fit if fit.fits and not fit.substituted else replace(fit, fits=False)

    lo, best = 0, None
    hi = MAX_MICRO_BATCH if what == "micro-batch" else MAX_CONTEXT
    probe = 1
    while probe <= hi:              # grow until it no longer fits
        fit = attempt(probe)
        if not fit.fits:
            hi = probe - 1
            break
        lo, best = probe, fit
        probe *= 2
    else:
        hi = lo
    while lo < hi:                  # then bisect between the last fit and the first miss
        mid = (lo + hi + 1) // 2
        fit = attempt(mid)
        if fit.fits:
            lo, best = mid, fit
        else:
            hi = mid - 1
    return Largest(device.name, what, lo, best)


def longest_context(spec: ModelSpec, setup: StepSetup, device: Device) -> int:
    """The longest sequence at which exactly ``setup`` fits on one ``device`` (no search).

    What a published "longest context that fits" measurement ran: one recipe,
    the sequence grown until it no longer fits.
    """
    from shoestring.plan.memory import GIB, estimate_memory

    def fits(n: int) -> bool:
        mem = estimate_memory(spec, setup.with_(seq_len=n), context_gib=device.context_gib)
        return mem.total <= device.memory_gib * GIB

    lo, hi = 0, 1
    while hi <= MAX_CONTEXT and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_CONTEXT)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
