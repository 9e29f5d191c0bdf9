"""Training a candidate through the training engine (pruning's fine-tune, distillation).

The candidate is saved as a run folder, and :func:`shoestring.train.train`
runs the parent's own recipe (data, batch size, optimizer) warm-started from
it (``init_from``) for a fixed number of steps, with optional hooks (the
distillation loss). These intermediate runs live in the compress session's
temporary folder and are not recorded in the ledger: the compress run is.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shoestring.models.run_folder import load_run, save_run

if TYPE_CHECKING:
    from shoestring.compress.methods import Candidate
    from shoestring.compress.session import Session

# Enough epochs that max_steps, not the epoch count, ends the run.
_MANY_EPOCHS = 1_000_000


def training_config(s: Session, *, steps: int, lr: float, label: str,
                    model: dict[str, Any] | None = None):
    """The parent's resolved config, set to train ``steps`` steps into the session folder."""
    base = s.workload.train_config
    train = base.train.model_copy(update={
        "max_steps": steps, "epochs": _MANY_EPOCHS, "lr": lr, "target": None, "recipe": None,
        "schedule": "constant", "warmup_steps": 0, "eval_every": 0, "checkpoint_every": 0,
        "max_time": None, "max_cost": None, "plan_first": False, "nproc": 1,
        "device": "cpu", "compile": False})
    update: dict[str, Any] = {"train": train, "out": s.new_workdir(label), "name": label,
                              "resume": False}
    if model is not None:
        update["model"] = base.model.model_copy(update=model)
    return base.model_copy(update=update)


def finetune(c: Candidate, s: Session, *, steps: int, lr: float, label: str) -> Candidate:
    """``c`` trained ``steps`` more steps on the parent's training data."""
    from shoestring.train.api import train

    start = save_run(s.new_workdir(f"{label}-start"), c.module, c.card, tokenizer=s.tokenizer)
    t0 = time.perf_counter()
    result = train(training_config(s, steps=steps, lr=lr, label=label), init_from=start.path,
                   ledger=None, handle_signals=False, workspace=s.workload.workspace,
                   kind="compress")
    run = load_run(result.out_dir)
    trained = {"steps": steps, "lr": lr, "seconds": round(time.perf_counter() - t0, 2)}
    return replace(c, module=run.model, card=c.card, trained=trained)
