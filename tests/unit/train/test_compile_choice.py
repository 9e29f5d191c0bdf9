"""AutoCompile compiles only when the measured steps show it pays (fake clock)."""

from __future__ import annotations

import torch

from shoestring.train import compile_choice as cc
from shoestring.train.compile_choice import AutoCompile


class FakeStepper:
    def __init__(self, seconds_per_step: float) -> None:
        self.now, self.cost, self.model = 0.0, seconds_per_step, "eager model"
        self.optimizer = "opt"

    def __call__(self, x, y):
        self.now += self.cost
        return torch.tensor(0.0)


def run(steps_left: int, step_s: float, time_left=None):
    s, logs = FakeStepper(step_s), []
    a = AutoCompile(s, steps_left, time_left=time_left, log=logs.append, clock=lambda: s.now,
                    compile_fn=lambda m: f"compiled {m}")
    for _ in range(min(steps_left, 40)):
        a(None, None)
    return s, a, logs


def test_a_short_run_stays_eager_and_says_why():
    s, a, logs = run(600, 0.05)  # 30 s of training
    assert s.model == "eager model" and not logs and a.optimizer == "opt"
    report = a.report()["compile"]
    assert report["auto"] and not report["used"] and "pays after" in report["reason"]


def test_a_long_run_compiles_once():
    s, a, logs = run(200_000, 0.05)  # hours of training
    assert s.model == "compiled eager model" and a.report()["compile"]["used"]
    assert len(logs) == 1 and "compiling" in logs[0]


def test_a_time_budget_caps_the_estimate():
    s, _, _ = run(200_000, 0.05, time_left=cc.break_even_seconds() / 2)
    assert s.model == "eager model"
