"""Explanations chosen by the data's kind and the time budget.

=========  ==========================================  ===============================
data       methods                                      why
=========  ==========================================  ===============================
table      integrated gradients, Shapley sampling       exact-sum gradients + a
                                                        model-agnostic check
image      integrated gradients, occlusion (PNG)        pixel detail + patch effects
text       token integrated gradients (embeddings)      one score per token
=========  ==========================================  ===============================

Each method first runs on one example (a pilot) to measure its cost, then on
as many of the requested examples as its share of ``time_budget`` allows.
Integrated gradients doubles its steps (32 → 512) while the pilot's
completeness error is above 5% and the budget allows. The *stability* of a
method is the mean Spearman rank correlation between its attributions of the
same examples in ``reruns`` runs whose seed changes what the method leaves to
chance: the baseline (integrated gradients, occlusion: the all-zero baseline
plus seeded noise of 0.1 feature standard deviations; tokens: seeded random
tokens instead of padding) or the feature orderings (Shapley sampling).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from shoestring.audit.config import AuditConfig
from shoestring.audit.evidence import Evidence
from shoestring.audit.explain import methods as m
from shoestring.audit.explain.memory import (
    FREE_SHARE,
    GIB,
    free_bytes,
    internal_batch_size,
    row_bytes,
)
from shoestring.audit.files import ATTRIBUTIONS, HEATMAPS, AuditFolder
from shoestring.audit.predict import as_function, outputs
from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes
from shoestring.types import Task

SUPPORTED = {"mlp": ("table", "image"), "cnn": ("image",), "encoder": ("text",)}
NOT_USED = [
    {"method": "SHAP DeepExplainer", "why": "re-implements backpropagation per layer type and "
     "breaks on layers it does not know (GELU, fused attention); integrated gradients gives "
     "the same additive attributions from autograd"},
    {"method": "LIME", "why": "its random local surrogate changes from run to run; Shapley "
     "sampling and integrated gradients are measured for stability instead"},
]
MAX_STEPS, START_STEPS, GOOD_COMPLETENESS = 512, 32, 0.05
STABILITY_EXAMPLES = 8
HEATMAP_FILES = 8
Progress = Callable[[str, int, int], None]


def check_explainable(family: str, kind: str, transforms: tuple[str, ...] = ()) -> None:
    """A model family and data kind the explainers handle, else a clear error.

    Every method here differentiates or perturbs the PyTorch module; a run
    compressed to an ONNX graph (``transforms`` holds ``onnx``) has no autograd.
    """
    if family not in SUPPORTED or kind not in SUPPORTED[family]:
        raise ShoestringError(
            f"no explainer here handles a {family!r} model on {kind} data",
            hint="explanations cover mlp (tables, images), cnn (images) and encoder (text "
            "classifiers); run with --explain 0 to audit fairness and write the card only")
    if "onnx" in transforms:
        raise ShoestringError(
            "this run is an ONNX graph (compressed): integrated gradients need PyTorch's "
            "autograd, which an ONNX graph does not have",
            hint="explain the run it was compressed from (its lineage parent), or pass "
            "--explain 0 to audit fairness and write the card only")


def _spearman(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> float:
    from scipy.stats import spearmanr

    rows = []
    for i in range(len(a)):
        u, v = a[i].flatten(), b[i].flatten()
        if keep is not None:
            u, v = u[keep[i].flatten()], v[keep[i].flatten()]
        if len(u) > 1 and u.std() > 0 and v.std() > 0:
            rows.append(float(spearmanr(u.numpy(), v.numpy()).statistic))
    return float(np.mean(rows)) if rows else float("nan")


def _stability(runs: list[torch.Tensor], keep=None) -> dict[str, Any]:
    scores = [_spearman(runs[0], r, keep) for r in runs[1:]]
    return {"spearman_mean": round(float(np.nanmean(scores)), 4),
            "spearman_min": round(float(np.nanmin(scores)), 4), "reruns": len(runs),
            "examples": len(runs[0])}


class _Timer:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        t = self.clock()
        out = fn()
        return out, self.clock() - t


def _fits(per_example: float, share: float, want: int) -> int:
    return int(max(1, min(want, share // max(per_example, 1e-6))))


def explain(ev: Evidence, cfg: AuditConfig, folder: AuditFolder, *,
            progress: Progress = lambda *a: None,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Attributions, their cost, stability and completeness; the surrogate tree."""
    import captum

    card = ev.run.card
    check_explainable(card.family, ev.kind, tuple(t.kind for t in card.transforms))
    model = ev.run.model.eval()
    n = min(cfg.explain, len(ev.test))
    pick = torch.randperm(len(ev.test), generator=torch.Generator().manual_seed(cfg.seed))[:n]
    x = ev.test.x[pick]
    out = outputs(model, x)
    classify = card.task is Task.classification
    target = out.argmax(dim=1) if classify else torch.zeros(n, dtype=torch.long)
    share = cfg.time_budget / (2 if ev.kind != "text" else 1)
    kind_run = {"table": _explain_table, "image": _explain_image, "text": _explain_text}[ev.kind]
    result = kind_run(ev, cfg, model, x, target, share, _Timer(clock), progress)
    rows = _attribution_rows(ev, pick, target, out, result.pop("_per_example"))
    atomic_write_bytes(folder / ATTRIBUTIONS,
                       "".join(json.dumps(r) + "\n" for r in rows).encode(), durable=False)
    if ev.kind == "image":
        result["heatmaps"] = _heatmaps(ev, folder, pick, target, result.pop("_maps"))
    progress("surrogate tree", 0, 1)
    result["surrogate"] = _surrogate(ev, cfg, model, folder)
    progress("surrogate tree", 1, 1)
    return {"kind": ev.kind, "family": card.family, "library": f"captum {captum.__version__}",
            "requested": cfg.explain, "target": "the predicted class's logit" if classify
            else "the (standardized) regression output", **result, "not_used": NOT_USED}


def _ig_batch(cfg: AuditConfig, model, fwd, example, steps: int, rows: int, *extra):
    per_row = row_bytes(model, fwd, example, *extra)
    device = example.device
    budget = int(cfg.memory_budget * GIB) if cfg.memory_budget else \
        int(free_bytes(device) * FREE_SHARE)
    return internal_batch_size(per_row, budget, rows * steps), per_row, budget


def _tuned_ig(run_one: Callable[[int], m.Attribution], share: float, timer: _Timer
              ) -> tuple[int, float, m.Attribution]:
    """Steps for integrated gradients: doubled while the pilot's completeness is poor."""
    steps = START_STEPS
    pilot, seconds = timer(lambda: run_one(START_STEPS))
    while steps < MAX_STEPS:
        c = m.completeness(pilot) or {}
        rel = c.get("median_relative_error")
        if rel is None or rel <= GOOD_COMPLETENESS or seconds * 2 > share / 4:
            break
        steps *= 2
        pilot, seconds = timer(lambda s=steps: run_one(s))
    return steps, seconds, pilot


def _ig_entry(name: str, attr: m.Attribution, seconds: float, n: int, steps: int,
              per_row: int, budget: int, why: str) -> dict[str, Any]:
    return {"method": name, "why": why, "examples": n,
            "seconds_per_example": round(seconds / max(n, 1), 6), "steps": steps,
            "internal_batch_size": attr.batch, "bytes_per_row": per_row,
            "memory_budget_bytes": budget, "completeness": m.completeness(attr)}


def _noisy(baseline: torch.Tensor, scale: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return baseline + 0.1 * scale * torch.randn(baseline.shape, generator=gen)


def _gradient_methods(ev, cfg, model, x, target, share, timer, progress, name, why):
    """Integrated gradients on a float input (tables and images), with its stability."""
    fwd = as_function(model)
    scale = ev.train.x.float().std(dim=0, keepdim=True).clamp_min(1e-6)
    base = torch.zeros_like(x)
    batch, per_row, budget = _ig_batch(cfg, model, fwd, x[:1], MAX_STEPS, len(x))

    def on(rows, steps, baseline):
        return m.integrated_gradients(fwd, x[rows], target[rows], baseline[rows], steps, batch)

    progress(name, 0, 3)
    steps, pilot_s, _ = _tuned_ig(lambda s: on(slice(0, 1), s, base), share, timer)
    k = _fits(pilot_s, share * 0.6, len(x))
    attr, seconds = timer(lambda: on(slice(0, k), steps, base))
    progress(name, 1, 3)
    j = min(k, STABILITY_EXAMPLES)
    runs = [attr.values[:j]] + [on(slice(0, j), steps, _noisy(base, scale, cfg.seed + r)).values
                                for r in range(1, cfg.reruns)]
    progress(name, 3, 3)
    entry = _ig_entry(name, attr, seconds, k, steps, per_row, budget, why)
    entry["stability"] = {**_stability(runs), "varied": "baseline: zeros + seeded noise "
                          "(0.1 feature standard deviations)"}
    return entry, attr.values


def _explain_table(ev, cfg, model, x, target, share, timer, progress):
    fwd = as_function(model)
    ig, ig_values = _gradient_methods(
        ev, cfg, model, x, target, share, timer, progress, "integrated_gradients",
        "gradients along the path from the average example (zeros after standardization); "
        "its attributions add up to the output change")
    names = list(ev.run.card.feature_names or [f"x{i}" for i in range(x.shape[1])])
    base = torch.zeros_like(x)
    samples = 25
    progress("shapley_sampling", 0, 2)
    _, pilot = timer(lambda: m.shapley_sampling(fwd, x[:1], target[:1], base[:1], samples,
                                                cfg.seed))
    k = _fits(pilot, share * 0.6, len(x))
    sv, seconds = timer(lambda: m.shapley_sampling(fwd, x[:k], target[:k], base[:k], samples,
                                                   cfg.seed))
    j = min(k, STABILITY_EXAMPLES)
    runs = [sv.values[:j]] + [m.shapley_sampling(fwd, x[:j], target[:j], base[:j], samples,
                                                 cfg.seed + r).values
                              for r in range(1, cfg.reruns)]
    progress("shapley_sampling", 2, 2)
    shap = {"method": "shapley_sampling", "why": "permutation-sampled Shapley values (SHAP's "
            "permutation explainer estimates the same), model-agnostic", "examples": k,
            "samples": samples, "seconds_per_example": round(seconds / k, 6),
            "stability": {**_stability(runs), "varied": "feature orderings (seed)"}}
    importance = {meth: _ranked(vals, names) for meth, vals in
                  (("integrated_gradients", ig_values), ("shapley_sampling", sv.values))}
    per_example = {"integrated_gradients": ig_values, "shapley_sampling": sv.values}
    return {"methods": [ig, shap], "global_importance": importance,
            "_per_example": (per_example, names)}


def _ranked(values: torch.Tensor, names: list[str], top: int = 20) -> list[dict[str, Any]]:
    mean_abs = values.abs().mean(dim=0).flatten()
    order = torch.argsort(mean_abs, descending=True)[:top]
    return [{"feature": names[i], "mean_abs_attribution": round(float(mean_abs[i]), 6)}
            for i in order.tolist()]


def _explain_image(ev, cfg, model, x, target, share, timer, progress):
    fwd = as_function(model)
    if x.dim() != 4:  # an MLP reads images flattened but they keep their [C, H, W] shape
        raise ShoestringError(f"image inputs of shape {list(x.shape[1:])} are not [C, H, W]",
                              hint="explain image runs trained on idx:, images: or "
                              "fashion-mnist data")
    ig, ig_values = _gradient_methods(
        ev, cfg, model, x, target, share, timer, progress, "integrated_gradients",
        "pixel-level gradients along the path from a black image; adds up to the output change")
    side = x.shape[-1]
    window, stride = max(2, side // 7), max(1, side // 14)
    base = torch.zeros_like(x)
    scale = ev.train.x.float().std(dim=0, keepdim=True).clamp_min(1e-6)
    progress("occlusion", 0, 2)
    _, pilot = timer(lambda: m.occlusion(fwd, x[:1], target[:1], base[:1], window, stride))
    k = _fits(pilot, share * 0.6, len(x))
    occ, seconds = timer(lambda: m.occlusion(fwd, x[:k], target[:k], base[:k], window, stride))
    j = min(k, STABILITY_EXAMPLES)
    runs = [occ.values[:j]] + [m.occlusion(fwd, x[:j], target[:j],
                                           _noisy(base, scale, cfg.seed + r)[:j], window,
                                           stride).values for r in range(1, cfg.reruns)]
    progress("occlusion", 2, 2)
    occ_entry = {"method": "occlusion", "why": "the output drop when a patch is blacked out; "
                 "needs no gradients", "examples": k, "window": window, "stride": stride,
                 "seconds_per_example": round(seconds / k, 6),
                 "stability": {**_stability(runs), "varied": "baseline: zeros + seeded noise "
                               "(0.1 feature standard deviations)"}}
    maps = {"integrated_gradients": ig_values, "occlusion": occ.values}
    return {"methods": [ig, occ_entry], "_maps": maps, "_per_example": (None, None)}


def _explain_text(ev, cfg, model, ids, target, share, timer, progress):
    layout = ev.run.card.tokenizer.layout if ev.run.card.tokenizer else None
    pad = layout.pad_id if layout and layout.pad_id is not None else 0
    mask = ids != pad
    real = mask.clone()
    real[:, 0] = False  # the [CLS] token is kept in the baseline
    base = torch.where(real, torch.full_like(ids, pad), ids)

    def fwd(i, msk):
        return model(i, None, msk)[0]

    batch, per_row, budget = _ig_batch(cfg, model, fwd, ids[:1], MAX_STEPS, len(ids), mask[:1])

    def on(rows, steps, baseline):
        return m.token_integrated_gradients(model, ids[rows], target[rows], baseline[rows],
                                            mask[rows], steps, batch)

    progress("token_integrated_gradients", 0, 3)
    steps, pilot_s, _ = _tuned_ig(lambda s: on(slice(0, 1), s, base), share, timer)
    k = _fits(pilot_s, share * 0.6, len(ids))
    attr, seconds = timer(lambda: on(slice(0, k), steps, base))
    progress("token_integrated_gradients", 1, 3)
    j = min(k, STABILITY_EXAMPLES)
    vocab = ev.run.model.word_embeddings.num_embeddings
    offset = layout.offset if layout else 0
    runs = [attr.values[:j]]
    for r in range(1, cfg.reruns):
        gen = torch.Generator().manual_seed(cfg.seed + r)
        noise = torch.randint(offset, vocab, ids.shape, generator=gen)
        runs.append(on(slice(0, j), steps, torch.where(real, noise, ids)).values)
    progress("token_integrated_gradients", 3, 3)
    entry = _ig_entry("token_integrated_gradients", attr, seconds, k, steps, per_row, budget,
                      "integrated gradients on the word embeddings, summed per token; the "
                      "baseline replaces every real token by padding")
    entry["stability"] = {**_stability(runs, real[:j]),
                          "varied": "baseline: seeded random tokens instead of padding"}
    return {"methods": [entry], "_per_example": ({"token_integrated_gradients": attr.values},
                                                 None)}


def _token_names(ev: Evidence, ids: list[int]) -> list[str]:
    layout = ev.run.card.tokenizer.layout if ev.run.card.tokenizer else None
    tok = ev.run.tokenizer()
    names = []
    for t in ids:
        if layout and t == layout.pad_id:
            names.append("[PAD]")
        elif layout and t == layout.cls_id:
            names.append("[CLS]")
        else:
            names.append(tok.decode([t - (layout.offset if layout else 0)]))
    return names


def _attribution_rows(ev, pick, target, out, per_example) -> list[dict[str, Any]]:
    values, names = per_example
    card = ev.run.card
    classes = card.class_names
    rows = []
    for r, i in enumerate(pick.tolist()):
        t = int(target[r])
        row: dict[str, Any] = {"index": int(i), "explained": classes[t] if classes else t,
                               "output": round(float(out[r, t]), 6)}
        if card.task is Task.classification:
            row["label"] = classes[int(ev.test.y[i])] if classes else int(ev.test.y[i])
        for meth, vals in (values or {}).items():
            if r >= len(vals):
                continue
            if ev.kind == "text":
                ids = ev.test.x[i]
                keep = ids != (card.tokenizer.layout.pad_id or 0)
                row["tokens"] = _token_names(ev, ids[keep].tolist())
                row[meth] = [round(float(v), 6) for v in vals[r][keep]]
            else:
                row[meth] = {n: round(float(v), 6) for n, v in zip(names, vals[r].flatten())}
        rows.append(row)
    return rows


def _heatmaps(ev, folder, pick, target, maps) -> list[str]:
    from shoestring.audit.explain.plots import heatmap_png

    (folder / HEATMAPS).mkdir(exist_ok=True)
    classes = ev.run.card.class_names
    files = []
    count = min(HEATMAP_FILES, *(len(v) for v in maps.values()))
    for r in range(count):
        name = f"{HEATMAPS}/{r:03d}.png"
        t = int(target[r])
        heatmap_png(folder / name, ev.test.raw[pick[r]].numpy(),
                    {k: v[r].numpy() for k, v in maps.items()},
                    f"example {int(pick[r])}: explaining {classes[t] if classes else t}")
        files.append(name)
    return files


def _surrogate(ev: Evidence, cfg: AuditConfig, model, folder: AuditFolder) -> dict[str, Any]:
    from shoestring.audit.explain.surrogate import fit_surrogate, frequent_tokens, token_counts

    card = ev.run.card
    classify = card.task is Task.classification
    fit_out, eval_out = outputs(model, ev.train.x), outputs(model, ev.test.x)
    if classify:
        p_fit, p_eval = fit_out.argmax(1).numpy(), eval_out.argmax(1).numpy()
    else:
        p_fit, p_eval = fit_out.numpy(), eval_out.numpy()
    if ev.kind == "text":
        layout = card.tokenizer.layout
        vocab = frequent_tokens(ev.train.x.numpy(), {layout.pad_id, layout.cls_id})
        f_fit = token_counts(ev.train.x.numpy(), vocab)
        f_eval = token_counts(ev.test.x.numpy(), vocab)
        names = [f"count({t!r})" for t in _token_names(ev, vocab)]
    else:
        f_fit = ev.train.raw.reshape(len(ev.train), -1).numpy()
        f_eval = ev.test.raw.reshape(len(ev.test), -1).numpy()
        if ev.kind == "image":
            c, h, w = card.input_shape
            names = [f"pixel[{k},{i},{j}]" for k in range(c) for i in range(h) for j in range(w)]
        else:
            names = list(card.feature_names or [f"x{i}" for i in range(f_fit.shape[1])])
    return fit_surrogate(f_fit, p_fit, f_eval, p_eval, names, classification=classify,
                         class_names=card.class_names, seed=cfg.seed, out_dir=folder.path)
