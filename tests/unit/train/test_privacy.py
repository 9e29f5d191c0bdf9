"""DP-SGD's pure parts: the --dp spec, the noise for a target ε, Poisson batches, the model fix,
the accountant's bounded history, and what is refused (train/privacy.py, models/dp_fix.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from shoestring.errors import ConfigError
from shoestring.models.dp_fix import dp_fix, what_needs_fixing
from shoestring.models.transforms import apply_transforms
from shoestring.train.config import parse_dp, resolve_config
from shoestring.train.privacy import (
    PoissonBatches,
    default_delta,
    epsilon_spent,
    noise_for,
    unsupported,
)
from shoestring.types import TensorDataset

pytest.importorskip("opacus")


def test_dp_spec_becomes_the_privacy_section():
    cfg = resolve_config({}, {"privacy": parse_dp("epsilon=3,delta=1e-6,max-grad-norm=0.5")})
    p = cfg.privacy
    assert (p.epsilon, p.delta, p.max_grad_norm, p.accountant) == (3.0, 1e-6, 0.5, "rdp")
    assert resolve_config().privacy is None                  # no DP unless asked
    assert resolve_config({}, {"privacy": parse_dp("8")}).privacy.epsilon == 8.0
    # The section round-trips through the saved config.toml.
    import tomllib
    assert tomllib.loads(cfg.to_toml())["privacy"]["epsilon"] == 3.0


def test_bad_dp_input_lists_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        resolve_config({}, {"privacy": parse_dp("epsilon=0,delta=1,max-grad-norm=-1,colour=red")})
    text = str(err.value)
    for needle in ("privacy.epsilon", "privacy.delta", "privacy.max_grad_norm",
                   "privacy.colour: unknown key"):
        assert needle in text, text
    assert "4 problems" in text and err.value.hint
    with pytest.raises(ConfigError, match="privacy.epsilon"):   # epsilon is required
        resolve_config({}, {"privacy": parse_dp("max-grad-norm=1")})
    with pytest.raises(ConfigError, match="privacy.max_grad_norm"):  # a key without a value
        resolve_config({}, {"privacy": parse_dp("epsilon=1,max-grad-norm")})


# PRV's bisection takes seconds per target: one case of it, all three for RDP.
@pytest.mark.parametrize(("epsilon", "accountant"),
                         [(1.0, "rdp"), (3.0, "rdp"), (8.0, "rdp"), (1.0, "prv")])
def test_the_noise_found_spends_the_target_epsilon_and_no_more(epsilon, accountant):
    q, steps, delta = 256 / 60_000, 10 * 235, 1e-5
    sigma = noise_for(epsilon, delta, q, steps, accountant)
    spent = epsilon_spent([(sigma, q, steps)], delta, accountant)
    assert epsilon - 0.05 < spent <= epsilon, (sigma, spent)
    # Less noise would overspend: the answer is the smallest σ within the bisection's step.
    assert epsilon_spent([(sigma * 0.97, q, steps)], delta, accountant) > epsilon
    # More privacy needs more noise.
    assert noise_for(epsilon / 2, delta, q, steps, accountant) > sigma


def test_the_accountant_stores_a_whole_run_as_one_history_entry():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(5000):
        acc.step(noise_multiplier=1.1, sample_rate=0.01)
    assert acc.history == [(1.1, 0.01, 5000)]   # no growth with the number of steps
    assert epsilon_spent(acc.history, 1e-5, "rdp") == pytest.approx(
        epsilon_spent([(1.1, 0.01, 2500), (1.1, 0.01, 2500)], 1e-5, "rdp"))


def test_an_impossible_budget_is_a_clear_error():
    from shoestring.errors import ShoestringError

    with pytest.raises(ShoestringError, match="no noise level reaches") as err:
        noise_for(1e-6, 1e-5, 1.0, 1, "rdp")  # would need σ > 10⁶ (Opacus' MAX_SIGMA)
    assert "raise epsilon" in err.value.hint


def test_default_delta_is_below_one_over_n():
    for n in (1_000, 60_000, 10**7):
        assert default_delta(n) < 1 / n


def test_poisson_batches_are_a_pure_function_of_the_step_with_the_planned_rate():
    n = 4000
    data = TensorDataset(torch.arange(n, dtype=torch.float32)[:, None], torch.zeros(n))
    src = PoissonBatches(data, batch_size=200, seed=7)
    assert src.rate == 0.05 and src.steps_per_epoch == 20
    sizes, counts = [], torch.zeros(n)
    for step in range(400):
        x, _ = src.batch(step // 20, step % 20, step)
        sizes.append(len(x))
        counts[x[:, 0].long()] += 1
    assert torch.equal(src.batch(0, 5, 5)[0], PoissonBatches(data, 200, 7).batch(0, 5, 5)[0])
    assert not torch.equal(src.batch(0, 5, 5)[0], PoissonBatches(data, 200, 8).batch(0, 5, 5)[0])
    assert len(set(sizes)) > 10                       # batch sizes vary, as Poisson's do
    mean = sum(sizes) / len(sizes)
    assert abs(mean - 200) < 4 * (200 ** 0.5) / len(sizes) ** 0.5 + 1
    # Each example is in about rate × steps batches (binomial: 20 ± 4.4).
    assert abs(counts.mean().item() - 20) < 0.5 and counts.max() < 45


def test_batchnorm_and_inplace_activations_are_fixed_and_rebuilt_on_load():
    from opacus.validators import ModuleValidator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(inplace=True),
                          nn.Linear(16, 3))
    model[1].weight.data.fill_(2.0)
    assert ModuleValidator.validate(model, strict=False)      # Opacus refuses it as is
    assert what_needs_fixing(model) == ["1.BatchNorm1d → GroupNorm",
                                        "2.ReLU: in-place → out-of-place"]
    fixed = dp_fix(model, {})
    assert ModuleValidator.validate(fixed, strict=False) == []
    assert isinstance(fixed[1], nn.GroupNorm) and fixed[1].num_groups == 16  # gcd(32, 16)
    assert torch.equal(fixed[1].weight, torch.full((16,), 2.0))   # learned scale kept
    assert fixed[2].inplace is False and fixed.dp_fixed == what_needs_fixing(model)
    # As a card transform, a fresh module is rebuilt into the same shape.
    from shoestring.models.card import TransformRecord

    rebuilt = apply_transforms(nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16),
                                             nn.ReLU(inplace=True), nn.Linear(16, 3)),
                               [TransformRecord(kind="dp-fix", config={})])
    rebuilt.load_state_dict(fixed.state_dict(), strict=True)


def test_what_dp_sgd_does_not_support_is_listed_together():
    cfg = resolve_config({}, {"train": {"grad_clip": 1.0, "micro_batch_size": 8,
                                        "precision": "bf16", "compile": True, "nproc": 2,
                                        "optimizer_in_backward": True},
                              "privacy": {"epsilon": 3}})
    problems = unsupported(cfg)
    for field in ("grad_clip", "micro_batch_size", "precision", "compile", "nproc",
                  "optimizer_in_backward"):
        assert any(p.startswith(f"train.{field}") for p in problems), (field, problems)
    assert unsupported(resolve_config({}, {"privacy": {"epsilon": 3}})) == []


def test_ghost_clipping_steps_as_materialized_per_example_gradients_do():
    """The fast path (per-example norms only) and Opacus' per-example gradients take the same
    step: the clipped mean, here without noise, and not the plain mean gradient."""
    from shoestring.train.privacy import PerExampleLoss, PrivacyPlan, dp_sgd_parts

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(32, 5) * 3, torch.randint(0, 3, (32,))
    plan = PrivacyPlan(epsilon_target=1, delta=1e-5, max_grad_norm=0.1, accountant="rdp",
                       examples=1000, sample_rate=0.032, expected_batch_size=32,
                       planned_steps=1, noise_multiplier=0.0)
    stepped = []
    for per_example in (PerExampleLoss(torch.nn.functional.cross_entropy), None):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        wrapped, dp_opt, loss_of = dp_sgd_parts(model, opt, plan, per_example)
        loss_of = loss_of or (lambda m, a, b: torch.nn.functional.cross_entropy(m(a), b))
        loss_of(wrapped, x, y).backward()
        dp_opt.step()
        stepped.append([p.detach().clone() for p in model.parameters()])
    plain = copy.deepcopy(base)
    torch.nn.functional.cross_entropy(plain(x), y).backward()
    for ghost, materialized, p in zip(*stepped, plain.parameters()):
        assert torch.allclose(ghost, materialized, atol=1e-6)
        assert not torch.allclose(ghost, p.detach() - p.grad, atol=1e-4)


@pytest.mark.parametrize("ghost", [True, False])
def test_an_empty_poisson_batch_is_a_noise_only_step(ghost):
    """With probability (1 - q)^N a Poisson batch is empty; DP-SGD still steps (noise only)
    and the accountant counts it, rather than crashing or skipping."""
    from opacus.accountants import RDPAccountant

    from shoestring.train.privacy import PerExampleLoss, PrivacyPlan, dp_sgd_parts

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    plan = PrivacyPlan(epsilon_target=1, delta=1e-5, max_grad_norm=1.0, accountant="rdp",
                       examples=1000, sample_rate=0.032, expected_batch_size=32,
                       planned_steps=1, noise_multiplier=1.0)
    per_example = PerExampleLoss(torch.nn.functional.cross_entropy) if ghost else None
    wrapped, opt, loss_of = dp_sgd_parts(model, torch.optim.SGD(model.parameters(), lr=1.0),
                                         plan, per_example)
    acc = RDPAccountant()
    opt.attach_step_hook(acc.get_optimizer_hook_fn(sample_rate=plan.sample_rate))
    loss_of = loss_of or (lambda m, a, b: torch.nn.functional.cross_entropy(m(a), b))
    loss_of(wrapped, torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).backward()
    opt.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() and not torch.equal(p, b) for p, b in zip(after, before))
    assert acc.history == [(1.0, 0.032, 1)]
