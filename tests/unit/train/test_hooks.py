"""TrainHooks compose in order, and the stepper calls them at their events."""

from __future__ import annotations

import torch

from shoestring.train.hooks import TrainHooks
from shoestring.train.precision import Precision
from shoestring.train.stepper import Stepper


def test_then_runs_both_sets_in_order():
    log = []
    a = TrainHooks(after_step=lambda m, s: log.append(("a", s)),
                   batch=lambda x, y, s: (x + 1, y),
                   loss=lambda m, x, y, d: d(m, x, y) * 2, notes=("a",))
    b = TrainHooks(after_step=lambda m, s: log.append(("b", s)),
                   batch=lambda x, y, s: (x * 10, y),
                   loss=lambda m, x, y, d: d(m, x, y) + 1, notes=("b",))
    both = a.then(b)
    both.after_step(None, 3)
    assert log == [("a", 3), ("b", 3)]
    assert both.batch(torch.tensor(1.0), None, 0)[0].item() == 20.0   # (1 + 1) * 10
    loss = both.loss_of(lambda m, x, y: torch.tensor(5.0))
    assert loss(None, None, None).item() == 11.0                      # 5 * 2 + 1
    assert both.notes == ("a", "b")
    assert TrainHooks().then(a).batch is a.batch


def test_the_stepper_calls_after_backward_with_the_full_gradient_then_after_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    seen = []

    def after_backward(m, step):
        seen.append(("backward", step, m.weight.grad.clone()))

    def after_step(m, step):
        seen.append(("step", step, m.weight.grad))

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def mse(m, a, b):
        return torch.nn.functional.mse_loss(m(a), b)

    hooks = TrainHooks(after_backward=after_backward, after_step=after_step)
    Stepper(model, opt, mse, Precision("fp32", "cpu"), 2, None, hooks=hooks)(x, y, step=7)
    (kind1, step1, grad), (kind2, step2, after) = seen
    assert (kind1, step1, kind2, step2, after) == ("backward", 7, "step", 7, None)
    # the gradient after_backward saw is the full-batch gradient (4 micro-batches of 2)
    torch.manual_seed(0)
    fresh = torch.nn.Linear(3, 1)
    mse(fresh, x, y).backward()
    torch.testing.assert_close(grad, fresh.weight.grad)
