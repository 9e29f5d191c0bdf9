"""Achieved throughput: from measurements when there are any, else the catalog default.

A measurement is one (FLOPs per step, seconds per step) point of one model
on one device and dtype — from ``shoestring plan --calibrate`` or from a
finished ``shoestring train`` run. Step time is modelled as

    seconds = overhead + FLOPs / rate

(a fixed per-step cost — Python, kernel launches, batch gathering — plus
work at an achieved rate), fitted by least squares when the points span more
than one step size, else taken as a pure rate. Without a measurement the rate
is the catalog's ``peak × efficiency``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoestring.plan.catalog import Device
from shoestring.plan.cost import Throughput


@dataclass(frozen=True)
class Measurement:
    device: str            # catalog device name
    model: str             # model key (preset or run model name); "matmul" for the raw probe
    dtype: str             # fp32 | bf16
    flops_per_step: float  # executed FLOPs of the step (planner's count)
    seconds_per_step: float
    source: str            # "calibration 2026-…" or "run <name>"


def fit_step_time(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(overhead seconds, FLOP/s) from (FLOPs, seconds) points.

    >>> overhead, rate = fit_step_time([(1e9, 0.011), (2e9, 0.021)])
    >>> round(overhead, 6), f"{rate:.4g}"
    (0.001, '1e+11')
    """
    if not points:
        raise ValueError("no points")
    xs = [p[0] for p in points]
    if len(points) == 1 or max(xs) <= min(xs) * 1.05:
        flops = sum(xs)
        return 0.0, flops / sum(p[1] for p in points)
    n = len(points)
    mx = sum(xs) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    intercept = my - slope * mx
    if slope <= 0 or intercept < 0:
        # Noise made the line meaningless: fall back to a pure rate.
        return 0.0, sum(xs) / sum(p[1] for p in points)
    return round(intercept, 12), 1.0 / slope


class RateBook:
    """``rate(device, dtype)`` for the planner's search, honouring measurements.

    ``measurements`` should already be narrowed to the planned model (plus the
    raw ``matmul`` probes); model-specific points win over the probe, which
    wins over the catalog default.
    """

    def __init__(self, measurements: list[Measurement] = ()) -> None:
        self.measurements = list(measurements)

    def __call__(self, device: Device, dtype: str) -> Throughput:
        mine = [m for m in self.measurements if m.device == device.name and m.dtype == dtype]
        model_points = [m for m in mine if m.model != "matmul"]
        if model_points:
            overhead, rate = fit_step_time([(m.flops_per_step, m.seconds_per_step)
                                            for m in model_points])
            sources = sorted({m.source for m in model_points})
            return Throughput(rate, overhead, "measured: " + ", ".join(sources[:3]))
        probes = [m for m in mine if m.model == "matmul"]
        if probes:
            _, rate = fit_step_time([(m.flops_per_step, m.seconds_per_step) for m in probes])
            return Throughput(rate * device.efficiency, 0.0,
                              f"matmul probe × default efficiency {device.efficiency:g}")
        return Throughput(device.peak(dtype) * device.efficiency, 0.0,
                          f"catalog peak × default efficiency {device.efficiency:g}")
