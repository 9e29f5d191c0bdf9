"""Knowledge distillation through the training engine's loss hook.

The loss (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531, section 2) mixes the student's cross-entropy on
the labels with the KL divergence between teacher and student softmaxes at
temperature ``T``, scaled by ``T²`` so the soft term's gradients keep their
size as ``T`` changes::

    loss = alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(s, y)

Regression students match the teacher's outputs by mean squared error
instead. Language models distil every position's next-token distribution.

The student is the teacher's architecture shrunk to about a quarter of its
parameters (``student="auto"``), a model name with its own widths, or — with
``--teacher`` — the run being compressed, warm-started from its weights.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from shoestring.compress.config import Distill
from shoestring.errors import ShoestringError
from shoestring.models.registry import build_model
from shoestring.types import Task

if TYPE_CHECKING:
    from shoestring.compress.methods import Candidate
    from shoestring.compress.session import Session

# A student of at most this share of the teacher's parameters ("auto").
STUDENT_SHARE = 0.25


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, *,
                      task: Task, temperature: float, alpha: float) -> torch.Tensor:
    """The mixed loss above, for logits ``[N, C]`` (or ``[B, T, V]``) and labels ``y``.

    >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([0])
    >>> float(distillation_loss(s, s, y, task=Task.classification, temperature=2.0, alpha=1.0))
    0.0
    """
    if task is Task.regression:
        return alpha * F.mse_loss(student, teacher) + \
            (1 - alpha) * F.mse_loss(student, y.float().reshape(student.shape))
    s = student.reshape(-1, student.size(-1)).float()
    t = teacher.reshape(-1, teacher.size(-1)).float()
    labels = y.reshape(-1)
    soft = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                    log_target=True, reduction="batchmean") * temperature ** 2
    hard = F.cross_entropy(s, labels, ignore_index=-1)
    return alpha * soft + (1 - alpha) * hard


def distill_hooks(teacher: nn.Module, method: Distill, task: Task):
    """Training hooks whose loss is :func:`distillation_loss` against a frozen ``teacher``."""
    from shoestring.train.hooks import TrainHooks

    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, default) -> torch.Tensor:
        with torch.no_grad():
            t = _logits(teacher(x))
        return distillation_loss(_logits(model(x)), t, y, task=task,
                                 temperature=method.temperature, alpha=method.alpha)

    return TrainHooks(loss=loss)


def _params(arch: dict[str, Any]) -> int:
    return sum(p.numel() for p in build_model(arch).parameters())


def auto_student(arch: dict[str, Any], model_name: str | None) -> dict[str, Any]:
    """``[model]`` overrides of the largest shrunk architecture with at most
    :data:`STUDENT_SHARE` of ``arch``'s parameters."""
    family, params = arch["family"], dict(arch["params"])
    budget = STUDENT_SHARE * _params(arch)
    if family in ("mlp", "cnn"):
        key = "hidden" if family == "mlp" else "channels"
        for tenths in range(50, 0, -1):  # widths scaled by 0.50, 0.49, … 0.01
            widths = [max(1, round(w * tenths / 100)) for w in params[key]]
            if _params({**arch, "params": {**params, key: widths}}) <= budget:
                return {"name": "mlp" if family == "mlp" else model_name, key: widths}
    elif family == "gpt":
        head = params["n_embd"] // params["n_head"]
        for n_layer, n_embd in sorted(
                ((lay, emb) for lay in {params["n_layer"], max(1, params["n_layer"] // 2)}
                 for emb in (params["n_embd"] // 2, params["n_embd"] // 4) if emb >= head),
                key=lambda le: -le[0] * le[1] ** 2):
            trial = {**params, "n_layer": n_layer, "n_embd": n_embd,
                     "n_head": max(1, n_embd // head), "n_kv_head": None,
                     "intermediate_size": None}
            if _params({**arch, "params": trial}) <= budget:
                return {"n_layer": n_layer, "n_embd": n_embd, "n_head": trial["n_head"],
                        "n_kv_head": None}
    raise ShoestringError(f"no automatic student for a {family} model",
                          hint="name a student: --methods distill with a student model, or "
                          "--teacher BIG_RUN to distil into RUN")


def student_overrides(method: Distill, s: Session) -> dict[str, Any] | None:
    """The student's ``[model]`` fields (``None``: the run itself is the student)."""
    if s.config.teacher is not None:
        return None
    arch = s.workload.card.architecture.model_dump()
    if method.student == "auto":
        return auto_student(arch, s.workload.train_config.model.name)
    over: dict[str, Any] = {"name": method.student}
    if method.hidden is not None:
        over["hidden"] = list(method.hidden)
    return over


def teacher_steps(s: Session) -> int:
    summary = s.workload.parent.folder.read_json(s.workload.parent.folder.summary) or {}
    return int(summary.get("steps") or 1000)


def distill_candidate(method: Distill, c: Candidate, s: Session) -> Candidate:
    from shoestring.compress.finetune import training_config
    from shoestring.models.run_folder import load_run
    from shoestring.train.api import train

    w = s.workload
    teacher = load_run(s.config.teacher).model if s.config.teacher is not None else c.module
    overrides = student_overrides(method, s)
    steps = method.steps or teacher_steps(s)
    lr = w.train_config.train.lr
    config = training_config(s, steps=steps, lr=lr, label="distill", model=overrides)
    config = config.model_copy(update={"train": config.train.model_copy(
        update={"schedule": w.train_config.train.schedule,
                "warmup_steps": w.train_config.train.warmup_steps})})
    s.progress(f"distill: training the student {steps} steps")
    init = None
    if overrides is None:  # RUN is the student: start from its weights
        from shoestring.models.run_folder import save_run

        init = save_run(s.new_workdir("distill-start"), c.module, c.card, tokenizer=s.tokenizer).path
    result = train(config, init_from=init, hooks=distill_hooks(teacher, method, w.card.task),
                   ledger=None, handle_signals=False, workspace=w.workspace, kind="distill")
    run = load_run(result.out_dir)
    card = run.card.model_copy(update={"transforms": list(run.card.transforms)})
    student_params = sum(p.numel() for p in run.model.parameters())
    teacher_params = sum(p.numel() for p in teacher.parameters())
    notes = [*c.notes, f"student {student_params:,} parameters "
             f"({student_params / max(teacher_params, 1):.0%} of the teacher's)"]
    return replace(c, module=run.model, card=card, methods=[*c.methods, "distill"], notes=notes,
                   trained={"steps": steps, "temperature": method.temperature,
                            "alpha": method.alpha, "student": overrides or "run",
                            "seconds": result.summary.get("train_seconds")})
