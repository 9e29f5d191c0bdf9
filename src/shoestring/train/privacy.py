"""Differentially private training: DP-SGD (Abadi et al. 2016) through Opacus, as hooks.

``train --dp epsilon=3`` (``[privacy]`` in the config) trains so that the
released weights are (ε, δ)-differentially private with respect to each
training example. Per optimizer step (Abadi et al. 2016, "Deep Learning with
Differential Privacy", Algorithm 1):

- **Poisson sampling**: each training example joins the step's batch
  independently with probability ``q = batch_size / N`` (so batches vary in
  size around ``batch_size``). :class:`PoissonBatches` draws the mask from a
  generator seeded by the run seed and the step, on the in-memory tensors
  (Shoestring's fast batching path), so a resumed run draws the same batches
  without any sampler state: the sampler's "RNG state" is the step number,
  which the checkpoint holds. This is the sampling Opacus' ``DPDataLoader``
  does and the one the accountant's subsampled-Gaussian analysis assumes
  (Mironov, Talwar & Zhang 2019).
- **Per-example clipping and noise**: Opacus' ``GradSampleModule`` computes
  each example's gradient, its ``DPOptimizer`` clips each to ``max_grad_norm``
  (C), sums them, adds Gaussian noise of std ``σ·C`` and divides by the
  *expected* batch size. The noise comes from a generator seeded per step
  (see :meth:`PrivateTraining.after_backward`), so a resume is bit-identical.
- **Accounting**: σ is found before training with Opacus'
  ``get_noise_multiplier`` so that the planned number of steps spends at most
  the target ε at δ; an accountant (RDP by default: Mironov 2017; or PRV:
  Gopi, Lee & Wutschitz 2021) counts each step, ε spent so far is logged at
  every evaluation (``metrics.jsonl``) and the final figures go to
  ``summary.json`` under ``privacy``. Opacus' accountants store consecutive
  steps with the same (σ, q) as one ``(σ, q, count)`` entry, so their history
  stays one entry long for a whole run (no memory growth on long runs); the
  history is saved in every checkpoint.

The run never spends more than the target: σ is fixed for the planned steps,
and a resumed run that asks for more steps (``--epochs``/``--max-steps``
raised) stops at the planned number and says so. Stopping earlier (a
target, a time or cost budget, a signal) spends less, and the ε reported is
what was really spent.

What is refused, and why (each with a hint): fewer than ``MIN_EXAMPLES``
training examples; δ ≥ 1/N; a batch that is not a small sample of the data;
text corpora (examples overlap as token windows: per-example privacy is not
defined for them here); several processes (the Poisson batches are drawn per
step, not split per rank); gradient accumulation (micro-batches), mixed
precision and ``torch.compile`` (untested with Opacus' hooks; fp32 is used and
nothing is compiled), ``--grad-clip`` (DP-SGD clips per example: use
``max-grad-norm``), ``--optimizer-in-backward``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from shoestring.errors import ConfigError, ShoestringError
from shoestring.models.card import TransformRecord
from shoestring.train.batches import Batch, TensorBatches
from shoestring.train.config import PrivacyConfig, TrainConfig
from shoestring.train.hooks import TrainHooks, TrainingParts
from shoestring.types import Task

if TYPE_CHECKING:
    from shoestring.train.checkpoint import TrainingState
    from shoestring.train.engine import LoopOutcome
    from shoestring.train.problem import Problem

# Below this many training examples DP-SGD is refused. It is a policy, not a
# theorem: the averaged clipped gradient has norm at most C, while the noise
# added to it has norm about σ·C·√d / B (d parameters, expected batch B ≤ N).
# A single-digit ε needs σ of order 1 even for a few epochs, so the gradient
# only rises above the noise when B ≫ √d; the seed MLP has d ≈ 10⁴-10⁵
# (√d ≈ 100-300), so with N below about a thousand every batch is noise
# and the "private" model is a random one. Ponomareva et al. 2023 ("How to
# DP-fy ML", §5) make the same point: DP-SGD needs large datasets.
MIN_EXAMPLES = 1000
# δ defaults to 1/N^1.1: δ must be well below 1/N, or a mechanism that
# publishes one whole example at random satisfies (0, δ)-DP (Dwork & Roth
# 2014, §2.3); N^-1.1 is "cryptographically small relative to 1/N" in the
# sense Ponomareva et al. 2023 (§5.3) recommend, and it stays a constant
# factor from 1/N for the data sizes DP is used on (1/(3N) at N = 60,000).
DELTA_EXPONENT = 1.1
# Offsets the per-step seeds of the sampler and of the noise from those of
# the plain batch order (batches.epoch_permutation) and from each other.
SAMPLER_STREAM, NOISE_STREAM = 0x5A3F1, 0x9E37B
# RDP orders α the conversion to (ε, δ) searches: Opacus' defaults (1.1…63) plus
# larger ones, which give the tighter bound for few steps or a large ε (Opacus
# warns "optimal order is the largest alpha" without them; Mironov 2017, Prop. 3).
EXTRA_RDP_ORDERS = tuple(range(64, 257, 8))


def _epsilon_options(accountant: str) -> dict[str, Any]:
    """Keyword arguments of the accountant's ``get_epsilon`` (the RDP orders for rdp)."""
    if accountant != "rdp":
        return {}
    from opacus.accountants import RDPAccountant

    return {"alphas": list(RDPAccountant.DEFAULT_ALPHAS) + list(EXTRA_RDP_ORDERS)}


def default_delta(n: int) -> float:
    """δ for ``n`` training examples when none is given: ``1/n^1.1`` (below 1/n).

    >>> f"{default_delta(60000):.2e}"
    '5.55e-06'
    """
    return 1.0 / n ** DELTA_EXPONENT


def step_seed(seed: int, step: int, stream: int) -> int:
    """A seed for one step's draw, a pure function of the run seed, the step and the stream."""
    return (seed * 1_000_003 + stream) * 1_000_033 + step


class PoissonBatches:
    """Batches where each example is in independently with probability ``rate``.

    The batch of a step is a pure function of (seed, step): nothing to save
    for a resume. An epoch is ``ceil(N / batch_size)`` steps, as Opacus'
    ``DPDataLoader`` counts it (``len`` of the original loader).

    >>> from shoestring.types import TensorDataset
    >>> src = PoissonBatches(TensorDataset(torch.arange(1000.)[:, None], torch.zeros(1000)),
    ...                      batch_size=100, seed=0)
    >>> src.steps_per_epoch, src.rate
    (10, 0.1)
    >>> torch.equal(src.batch(0, 3, 3)[0], src.batch(0, 3, 3)[0])   # pure
    True
    """

    def __init__(self, data, batch_size: int, seed: int) -> None:
        self.x, self.y = data.x, data.y
        self.n, self.batch_size, self.seed = len(data), batch_size, seed
        self.rate = batch_size / self.n
        self.steps_per_epoch = math.ceil(self.n / batch_size)
        self.examples_per_epoch = self.n

    def batch(self, epoch: int, step_in_epoch: int, global_step: int) -> Batch:
        gen = torch.Generator().manual_seed(step_seed(self.seed, global_step, SAMPLER_STREAM))
        idx = (torch.rand(self.n, generator=gen) < self.rate).nonzero().squeeze(1)
        idx = idx.to(self.x.device)
        return self.x.index_select(0, idx), self.y.index_select(0, idx)


@dataclass(frozen=True)
class PrivacyPlan:
    """What the run's privacy rests on: fixed before the first step, saved in checkpoints."""

    epsilon_target: float
    delta: float
    max_grad_norm: float
    accountant: str
    examples: int
    sample_rate: float
    expected_batch_size: int
    planned_steps: int
    noise_multiplier: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def noise_for(epsilon: float, delta: float, sample_rate: float, steps: int,
              accountant: str) -> float:
    """σ such that ``steps`` Poisson-subsampled Gaussian steps spend at most ε at δ.

    Opacus' ``get_noise_multiplier``: a bisection whose answer is the upper
    end of the bracket, so the accountant's ε for it is ≤ the target (within
    0.01 below it).
    """
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():  # the bisection's small σ are best at the largest α
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            return float(get_noise_multiplier(
                target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                steps=steps, accountant=accountant, **_epsilon_options(accountant)))
    except ValueError as exc:  # "The privacy budget is too low."
        raise ShoestringError(
            f"no noise level reaches ε={epsilon:g} at δ={delta:.3g} over {steps} steps "
            f"at sample rate {sample_rate:.4g} ({exc})",
            hint="raise epsilon, or train fewer steps (--epochs, --max-steps)") from None


def epsilon_spent(history: list, delta: float, accountant: str) -> float:
    """ε spent by an accountant ``history`` of ``(σ, q, steps)`` entries (0 before any step).

    >>> round(epsilon_spent([(1.0, 0.01, 1000)], 1e-5, "rdp"), 2)
    2.1
    """
    from opacus.accountants import create_accountant

    if not history:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = [tuple(h) for h in history]
    return float(acc.get_epsilon(delta=delta, **_epsilon_options(accountant)))


def unsupported(config: TrainConfig, problem: Problem | None = None,
                world: int = 1) -> list[str]:
    """What this run asks for that DP-SGD here does not do (empty: all fine)."""
    t, out = config.train, []
    if t.grad_clip is not None:
        out.append("train.grad_clip: DP-SGD clips each example's gradient itself; drop "
                   "--grad-clip and use --dp max-grad-norm=C")
    if t.micro_batch_size is not None or t.max_memory is not None:
        out.append("train.micro_batch_size/max_memory: gradient accumulation is not supported "
                   "with --dp (Opacus accumulates per-example gradients per micro-batch, and "
                   "the batch size is random under Poisson sampling); drop them")
    if t.precision not in ("auto", "fp32"):
        out.append(f"train.precision={t.precision}: --dp trains in fp32 (per-example gradient "
                   "norms in bf16/fp16 are untested with Opacus); use --precision fp32")
    if t.compile:
        out.append("train.compile: torch.compile does not see Opacus' per-example gradient "
                   "hooks; drop --compile")
    if t.nproc > 1 or t.nnodes != "1" or world > 1:
        out.append("train.nproc: --dp runs in one process (Poisson batches are drawn per step "
                   "for the whole data, not split per rank); use --nproc 1")
    if t.optimizer_in_backward:
        out.append("train.optimizer_in_backward: the DP optimizer must see all per-example "
                   "gradients before it steps; drop --optimizer-in-backward")
    if t.objective == "mlm" or t.finetune == "qlora":
        out.append(f"train.{'objective' if t.objective == 'mlm' else 'finetune'}: not "
                   "supported with --dp")
    if problem is not None and problem.tokens_per_example:
        out.append(f"data.source={config.data.source}: a text corpus is trained on overlapping "
                   "token windows, for which per-example privacy is not defined here; use "
                   "labelled examples (jsonl:, csv:, images)")
    return out


class PerExampleLoss(nn.Module):
    """A loss with a ``reduction`` Opacus' ghost clipping can switch to ``"none"``: then one
    value per example (the mean over its outputs), else their mean (the loss of the batch)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.reduction = fn, "mean"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.fn(output, target, reduction="none")
        per_example = loss.flatten(1).mean(1) if loss.dim() > 1 else loss
        return per_example if self.reduction == "none" else per_example.mean()


def dp_sgd_parts(model: nn.Module, optimizer, plan: PrivacyPlan,
                 per_example_loss: PerExampleLoss | None):
    """(module, optimizer, loss_of or None) that clip each example's gradient and add noise.

    With a per-example loss: ghost clipping (Li et al. 2022, "Large Language
    Models Can Be Strong Differentially Private Learners"; Bu et al. 2023),
    Opacus' ``GradSampleModuleFastGradientClipping``: each example's gradient
    *norm* comes from the layer's activations and output gradients (for a
    linear layer ‖a‖·‖g‖) without the per-example gradients ever being
    stored, then a second backward pass sums the clipped gradients. The seed
    MLP at batch 1024 would otherwise write 1024 copies of its gradient
    (450 MB) every step. Without one (transformers, whose loss is computed
    inside the model): Opacus' ``GradSampleModule``, per-example gradients
    materialized. Both clip to ``max_grad_norm`` and add ``N(0, σ²C²)`` before
    dividing by the expected batch size, so the privacy analysis is the same.
    """
    # Opacus' hooks on a first layer whose input needs no gradient make torch warn on
    # every step; the per-example gradients are right (they come from the activations).
    warnings.filterwarnings("ignore", message="Full backward hook is firing when "
                            "gradients are computed with respect to module outputs")
    if per_example_loss is None:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        dp_optimizer = DPOptimizer(optimizer, noise_multiplier=plan.noise_multiplier,
                                   max_grad_norm=plan.max_grad_norm,
                                   expected_batch_size=plan.expected_batch_size,
                                   loss_reduction="mean")
        return wrapped, dp_optimizer, None
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    wrapped = GradSampleModuleFastGradientClipping(
        model, batch_first=True, loss_reduction="mean", max_grad_norm=plan.max_grad_norm,
        use_ghost_clipping=True)
    dp_optimizer = DPOptimizerFastGradientClipping(
        optimizer, noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
        expected_batch_size=plan.expected_batch_size, loss_reduction="mean")
    criterion = DPLossFastGradientClipping(wrapped, dp_optimizer, per_example_loss, "mean")
    return wrapped, dp_optimizer, lambda m, x, y: criterion(m(x), y)


class PrivateTraining:
    """The DP-SGD hooks of one run, and the state they share (plan, accountant, optimizer)."""

    def __init__(self, config: TrainConfig, problem: Problem, world: int = 1) -> None:
        problems = unsupported(config, problem, world)
        if problems:
            raise ConfigError(problems, hint="see docs/privacy.md for what --dp supports")
        assert config.privacy is not None
        self.settings: PrivacyConfig = config.privacy
        self.train_cfg = config.train
        # Ghost clipping needs the loss of each example; the transformer families compute
        # their loss inside the model, so they take Opacus' per-example gradients instead.
        self.per_example_loss = None if problem.arch["family"] in ("gpt", "encoder") else \
            PerExampleLoss(F.cross_entropy if problem.task is Task.classification
                           else F.mse_loss)
        self.plan: PrivacyPlan | None = None
        self.restored: dict[str, Any] | None = None
        self.accountant = None
        self.optimizer = None
        self.limited = False   # a resumed run asked for more steps than were planned

    # -- the hooks ---------------------------------------------------------------------------
    def hooks(self) -> TrainHooks:
        return TrainHooks(
            transforms=(TransformRecord(kind="dp-fix", config={}),),
            setup=self.setup, after_backward=self.after_backward, on_eval=self.on_eval,
            on_checkpoint=self.on_checkpoint)

    def setup(self, parts: TrainingParts) -> TrainingParts:
        """Poisson batches, the noise level, Opacus' per-example gradients and DP optimizer."""
        from opacus.accountants import create_accountant
        from opacus.validators import ModuleValidator

        if not isinstance(parts.source, TensorBatches):
            raise ShoestringError("--dp needs examples held in memory (tables, images, "
                                  "labelled text)", hint="see docs/privacy.md")
        t = self.train_cfg
        source = PoissonBatches(_examples_of(parts.source), t.batch_size, t.seed)
        self.plan = self._plan(source)
        errors = ModuleValidator.validate(parts.forward_model, strict=False)
        if errors:
            raise ShoestringError(f"the model cannot be trained with DP-SGD: {errors[0]}",
                                  hint="use a model without batch-dependent layers")
        model, optimizer, loss_of = dp_sgd_parts(parts.forward_model, parts.optimizer,
                                                 self.plan, self.per_example_loss)
        self.accountant = create_accountant(mechanism=self.plan.accountant)
        if self.restored:
            self.accountant.history = [tuple(h) for h in self.restored["history"]]
        optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(
            sample_rate=self.plan.sample_rate))
        self.optimizer = optimizer
        return replace(parts, forward_model=model, optimizer=optimizer, source=source,
                       loss_of=loss_of or parts.loss_of)

    def after_backward(self, model: torch.nn.Module, step: int) -> None:
        """The noise of step ``step``, from its own seed: a resumed run adds the same noise.

        Like Opacus' default (``secure_mode=False``) the noise is pseudo-random;
        who knows the seed and every per-example gradient could subtract it, so
        keep a private run's seed as private as its data.
        """
        device = next(p.device for p in model.parameters())
        self.optimizer.generator = torch.Generator(device=device).manual_seed(
            step_seed(self.train_cfg.seed, step, NOISE_STREAM))

    def on_eval(self, record: dict[str, Any]) -> None:
        record["epsilon"] = round(self.epsilon(), 6)

    def on_checkpoint(self, state: TrainingState) -> None:
        state.extra["privacy"] = {"plan": self.plan.as_dict(),
                                  "history": [list(h) for h in self.accountant.history]}

    # -- around the loop ---------------------------------------------------------------------
    def restore(self, state: TrainingState) -> None:
        """A resumed run continues the checkpoint's plan and accountant history."""
        saved = state.extra.get("privacy")
        if state.global_step == 0:
            return
        if not saved:
            raise ShoestringError("the checkpoint holds no privacy accountant: it was written "
                                  "by a run without --dp",
                                  hint="resume without --dp, or start a new run")
        counted = sum(int(h[2]) for h in saved["history"])
        if counted != state.global_step:
            raise ShoestringError(f"the checkpoint's accountant counts {counted} steps but the "
                                  f"run is at step {state.global_step}",
                                  hint="the checkpoint is inconsistent; start a new run")
        self.restored = saved

    def step_limit(self, max_steps: int | None, total: int) -> int | None:
        """``max_steps`` lowered to the planned steps when this session would pass them."""
        planned = self.plan.planned_steps
        if total > planned:
            self.limited = True
            return planned if max_steps is None else min(max_steps, planned)
        return max_steps

    def explain_stop(self, outcome: LoopOutcome) -> None:
        if self.limited and outcome.state.global_step >= self.plan.planned_steps \
                and outcome.status == "finished" and not outcome.target_reached:
            outcome.reason = (f"privacy budget: ε={self.plan.epsilon_target:g} planned for "
                              f"{self.plan.planned_steps} steps; more would exceed it")

    def epsilon(self) -> float:
        return epsilon_spent(self.accountant.history, self.plan.delta, self.plan.accountant)

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s ``privacy``: the one layout the model card and report read."""
        p = self.plan
        return {"epsilon": round(self.epsilon(), 6), "epsilon_target": p.epsilon_target,
                "delta": p.delta, "noise_multiplier": p.noise_multiplier,
                "sample_rate": p.sample_rate, "max_grad_norm": p.max_grad_norm,
                "accountant": p.accountant, "sampling": "poisson",
                "expected_batch_size": p.expected_batch_size, "examples": p.examples,
                "planned_steps": p.planned_steps,
                "steps": sum(int(h[2]) for h in self.accountant.history),
                "mechanism": "DP-SGD (Abadi et al. 2016) via Opacus"}

    def notes(self, model: torch.nn.Module) -> list[str]:
        """What the run's log says: the plan, and what was changed in the model for DP."""
        p = self.plan
        fixed = getattr(model, "dp_fixed", [])
        plan = (f"DP-SGD: ε={p.epsilon_target:g}, δ={p.delta:.3g} over {p.planned_steps} steps "
                f"of Poisson batches (rate {p.sample_rate:.4g}, expected "
                f"{p.expected_batch_size} of {p.examples}): noise multiplier "
                f"σ={p.noise_multiplier:.4g}, per-example gradients clipped to "
                f"{p.max_grad_norm:g} ({p.accountant} accountant)")
        if fixed:
            return [f"model fixed for DP-SGD (Opacus ModuleValidator.fix): {'; '.join(fixed)}",
                    plan]
        return [plan]

    def _plan(self, source: PoissonBatches) -> PrivacyPlan:
        if self.restored:  # the noise was fixed when the run started
            return PrivacyPlan(**self.restored["plan"])
        s, t, n = self.settings, self.train_cfg, source.n
        delta = s.delta if s.delta is not None else default_delta(n)
        problems = []
        if n < MIN_EXAMPLES:
            problems.append(f"the training split has {n} examples; DP-SGD needs at least "
                            f"{MIN_EXAMPLES} to learn anything above its noise (the noise on "
                            "the averaged gradient shrinks only as 1/batch size)")
        if delta >= 1.0 / n:
            problems.append(f"privacy.delta={delta:g} is not below 1/N = {1.0 / n:.3g}: a δ that "
                            "large allows publishing an example outright")
        if source.rate > 0.5:
            problems.append(f"train.batch_size={t.batch_size} is {source.rate:.0%} of the "
                            f"{n} examples: privacy amplification by sampling needs batches "
                            "that are a small share of the data")
        if problems:
            raise ConfigError(problems, hint="use more data, a smaller --batch-size, or leave "
                              "delta to its default (1/N^1.1)")
        steps = t.epochs * source.steps_per_epoch
        steps = min(steps, t.max_steps) if t.max_steps else steps
        sigma = noise_for(s.epsilon, delta, source.rate, steps, s.accountant)
        return PrivacyPlan(epsilon_target=s.epsilon, delta=delta, max_grad_norm=s.max_grad_norm,
                           accountant=s.accountant, examples=n, sample_rate=source.rate,
                           expected_batch_size=t.batch_size, planned_steps=steps,
                           noise_multiplier=sigma)


def _examples_of(source: TensorBatches):
    """The in-memory examples behind a plain batch source."""
    return source.examples()
