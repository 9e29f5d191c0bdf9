"""AutoThreads picks the thread count from timed training steps (fake clock)."""

from __future__ import annotations

import torch

from shoestring.train import threads as th
from shoestring.train.threads import AutoThreads


class FakeMachine:
    """A step costs ``cost[n]`` seconds of fake time on ``n`` threads."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.now, self.cost, self.threads, self.steps = 0.0, cost, 2, 0
        self.optimizer = "the optimizer"
        self.on = {1: 0, 2: 0}

    def __call__(self, x, y):
        self.now += self.cost[self.threads]
        self.steps += 1
        self.on[self.threads] += 1
        return torch.tensor(0.0)

    def set_threads(self, n: int) -> None:
        self.threads = n


def auto(machine: FakeMachine, logs: list[str]) -> AutoThreads:
    return AutoThreads(machine, 2, log=logs.append, clock=lambda: machine.now,
                       set_threads=machine.set_threads)


def run(stepper, steps: int) -> None:
    for _ in range(steps):
        stepper(None, None)


def test_contended_cores_choose_one_thread():
    m, logs = FakeMachine({1: 0.003, 2: 0.030}), []
    a = auto(m, logs)
    run(a, 200)
    assert m.threads == 1 and a.optimizer == "the optimizer"
    assert a.report()["threads_probe_ms"] == {"1": 3.0, "2": 30.0}
    assert len(logs) == 1 and "threads: 1" in logs[0]
    # The warm-up runs on one thread, and one slow step decides: the probe is cheap.
    assert m.on[2] == 1


def test_quiet_cores_keep_all_threads_only_when_clearly_faster():
    m = FakeMachine({1: 0.010, 2: 0.006})
    run(auto(m, []), 200)
    assert m.threads == 2
    m = FakeMachine({1: 0.010, 2: 0.0095})  # within 10%: one thread is kept
    run(auto(m, []), 200)
    assert m.threads == 1


def test_the_choice_is_measured_again_when_the_load_changes():
    m, logs = FakeMachine({1: 0.010, 2: 0.005}), []
    a = auto(m, logs)
    run(a, 200)
    assert m.threads == 2
    m.cost = {1: 0.010, 2: 0.200}  # another process arrives
    steps = int(th.REPROBE_S / 0.2) + 50
    run(a, steps)
    assert m.threads == 1 and len(logs) == 2
