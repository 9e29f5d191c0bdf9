"""The attribution methods, each a thin call into Captum (Kokhlikyan et al. 2020).

- integrated gradients (Sundararajan, Taly & Yan 2017): the path integral of
  the gradient from a baseline to the input. Its *completeness* axiom says
  the attributions sum to ``f(x) − f(baseline)``; the residual measures how
  well the integral was approximated, and is reported. It is computed here
  from the attributions and two forward passes of our own, not taken from
  Captum's ``return_convergence_delta`` (which is kept as a cross-check), so a
  wrong delta in the library cannot hide a wrong attribution.
- token integrated gradients: the same on a text encoder's word embeddings
  (Captum's ``LayerIntegratedGradients``), summed over the embedding width to
  one score per token. The attention mask is the input's on both ends of the
  path, so the baseline (every real token replaced by padding) is a point the
  integral can actually reach and completeness holds.
- occlusion (Zeiler & Fergus 2014): the output drop when a sliding patch is
  replaced by the baseline; model-agnostic, needs no gradients.
- Shapley value sampling (Castro et al. 2009; SHAP's permutation explainer,
  Lundberg & Lee 2017, estimates the same values): feature contributions
  averaged over random feature orderings; model-agnostic.

SHAP's DeepExplainer is not used: it re-implements backpropagation per layer
type and fails on layers it does not know (GELU, scaled-dot-product
attention). LIME is not used: its random local surrogate changes from run to
run (Alvarez-Melis & Jaakkola 2018). Each method here returns attributions of
the input's shape (one per token for text).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shoestring.audit.explain.memory import run_with_backoff


@dataclass
class Attribution:
    values: torch.Tensor                 # [n, *input_shape], or [n, tokens]
    delta: torch.Tensor | None = None    # Captum's convergence delta per example (IG only)
    gap: torch.Tensor | None = None      # f(x) − f(baseline) per example (IG only)
    batch: int | None = None             # the internal batch size that ran

    def residual(self) -> torch.Tensor | None:
        """Σ attributions − (f(x) − f(baseline)) per example (IG's completeness error)."""
        if self.gap is None:
            return None
        return self.values.detach().float().flatten(1).sum(dim=1) - self.gap


def _target_gap(fwd, x, baseline, target, *extra) -> torch.Tensor:
    with torch.no_grad():
        fx = fwd(x, *extra).float().gather(1, target[:, None])[:, 0]
        fb = fwd(baseline, *extra).float().gather(1, target[:, None])[:, 0]
    return fx - fb


def integrated_gradients(fwd, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor,
                         steps: int, batch: int) -> Attribution:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(fwd)

    def run(b: int):
        return ig.attribute(x, baselines=baseline, target=target, n_steps=steps,
                            internal_batch_size=b, return_convergence_delta=True)

    (attr, delta), used = run_with_backoff(run, batch)
    return Attribution(attr.detach(), delta.detach().float(),
                       _target_gap(fwd, x, baseline, target), used)


def token_integrated_gradients(model: nn.Module, ids: torch.Tensor, target: torch.Tensor,
                               baseline: torch.Tensor, mask: torch.Tensor, steps: int,
                               batch: int) -> Attribution:
    from captum.attr import LayerIntegratedGradients

    def fwd(i, m):
        return model(i, None, m)[0]

    lig = LayerIntegratedGradients(fwd, model.word_embeddings)

    def run(b: int):
        return lig.attribute(ids, baselines=baseline, target=target, n_steps=steps,
                             additional_forward_args=(mask,), internal_batch_size=b,
                             return_convergence_delta=True)

    (attr, delta), used = run_with_backoff(run, batch)
    return Attribution(attr.detach().sum(dim=-1), delta.detach().float(),
                       _target_gap(fwd, ids, baseline, target, mask), used)


def occlusion(fwd, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor,
              window: int, stride: int) -> Attribution:
    """Patches of ``window``² pixels (all channels) every ``stride`` pixels."""
    from captum.attr import Occlusion

    channels = x.shape[1]
    attr = Occlusion(fwd).attribute(x, sliding_window_shapes=(channels, window, window),
                                    strides=(channels, stride, stride), baselines=baseline,
                                    target=target, perturbations_per_eval=16)
    return Attribution(attr.detach())


def shapley_sampling(fwd, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor,
                     samples: int, seed: int) -> Attribution:
    """Permutation-sampled Shapley values; ``seed`` fixes the permutations."""
    from captum.attr import ShapleyValueSampling

    state = torch.get_rng_state()
    torch.manual_seed(seed)  # Captum draws its permutations from torch's global generator
    try:
        attr = ShapleyValueSampling(fwd).attribute(x, baselines=baseline, target=target,
                                                   n_samples=samples, perturbations_per_eval=32)
    finally:
        torch.set_rng_state(state)
    return Attribution(attr.detach())


def completeness(a: Attribution) -> dict[str, float] | None:
    """How far the attributions' sum is from ``f(x) − f(baseline)`` (IG's completeness).

    The relative error divides by ``|f(x) − f(baseline)|`` and is taken over the
    examples where that difference is not negligible (above 1e-3).
    """
    residual = a.residual()
    if residual is None:
        return None
    err = residual.abs()
    gap = a.gap.abs()
    ok = gap > 1e-3
    rel = (err[ok] / gap[ok]) if ok.any() else torch.zeros(0)
    return {"median_abs_error": round(float(err.median()), 6),
            "max_abs_error": round(float(err.max()), 6),
            "median_relative_error": round(float(rel.median()), 6) if len(rel) else None,
            "max_relative_error": round(float(rel.max()), 6) if len(rel) else None,
            "median_output_difference": round(float(gap.median()), 6),
            "captum_delta_median_abs": round(float(a.delta.abs().median()), 6)
            if a.delta is not None else None}
