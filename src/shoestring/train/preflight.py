"""``check_fits(config)`` from a notebook: load the run's data, then ask the planner.

The planner (:func:`shoestring.plan.preflight.check_fits`) sits below training
and needs the model's architecture, which depends on the data (input width,
classes, vocabulary); this loads the training problem to learn it, as
``shoestring train --plan-first`` does before its first step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoestring.plan.preflight import PlanVerdict
    from shoestring.train.config import TrainConfig


def check_fits(config: TrainConfig, *, device: str | None = None,
               available_bytes: int | None = None,
               workspace: Path | None = None) -> PlanVerdict:
    """Will ``config`` fit on this machine? The verdict, its reason and the fix."""
    import torch

    from shoestring.plan.preflight import check_fits as plan_check_fits
    from shoestring.train.problem import load_problem

    problem, config, _ = load_problem(config, config.data.source_options(config.train.seed),
                                      torch.device("cpu"), workspace or Path.cwd())
    return plan_check_fits(config, arch=problem.arch, n_train=problem.n_train, device=device,
                           available_bytes=available_bytes)
