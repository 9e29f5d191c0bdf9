"""Analytic estimates against the exact trace, side by side.

``shoestring plan --trace`` and the accuracy tests use :func:`compare`: the
analytic FLOPs and peak memory of one step next to what the fake-tensor trace
of the real module measured, and their ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoestring.plan.compute import step_flops
from shoestring.plan.memory import estimate_memory
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec
from shoestring.plan.trace import TraceResult, trace_step

# The accuracy the planner promises (issue 4): FLOPs within 2%, peak memory within 10%.
FLOPS_TOLERANCE = 0.02
MEMORY_TOLERANCE = 0.10


@dataclass(frozen=True)
class Comparison:
    """One step: analytic against trace."""

    analytic_flops: int
    trace_flops: int
    analytic_peak: int
    trace_peak: int
    analytic_phase: str
    trace: TraceResult

    @property
    def flops_error(self) -> float:
        return self.analytic_flops / self.trace_flops - 1 if self.trace_flops else 0.0

    @property
    def memory_error(self) -> float:
        return self.analytic_peak / self.trace_peak - 1 if self.trace_peak else 0.0

    @property
    def within_tolerance(self) -> bool:
        return abs(self.flops_error) <= FLOPS_TOLERANCE and \
            abs(self.memory_error) <= MEMORY_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {"analytic_flops": self.analytic_flops, "trace_flops": self.trace_flops,
                "flops_error": round(self.flops_error, 5),
                "analytic_peak_bytes": self.analytic_peak, "trace_peak_bytes": self.trace_peak,
                "memory_error": round(self.memory_error, 5),
                "analytic_phase": self.analytic_phase, "trace": self.trace.to_dict()}


def compare(spec: ModelSpec, setup: StepSetup) -> Comparison:
    """Trace one step of ``setup`` (CPU kernels, as the trace runs them) and set it beside the estimate."""
    setup = setup.with_(kernels="cpu")
    traced = trace_step(spec, setup)
    mem = estimate_memory(spec, setup)
    flops = step_flops(spec, setup)
    if setup.mode == "serve":
        # The trace runs one prefill pass without a KV cache; compare like with like.
        from shoestring.plan.serving import prefill_peak

        analytic_peak = prefill_peak(spec, setup)
    else:
        analytic_peak = mem.peak_tensors
    return Comparison(analytic_flops=flops.total, trace_flops=traced.flops,
                      analytic_peak=int(analytic_peak), trace_peak=traced.peak_bytes,
                      analytic_phase=mem.phase, trace=traced)
