"""shoestring audit, measured: a planted bias found and narrowed; explanation cost, stability
and completeness for the seed MLP, the CNN and a text encoder, beside plain Captum.

Parts (``--parts fairness,explain``):

- ``fairness``: a generated table with a planted bias (:mod:`shoestring.audit.planted`:
  two groups, group B's informative feature corrupted in 30% of its rows, so the
  error rates are known exactly: A 5%, B 18.5%, gap 13.5 points). The seed MLP is
  trained on it with the group column set aside; ``audit`` measures each group's
  error rate and the gap with 95% bootstrap intervals (do they cover the planted
  values?), then narrows the gap with per-group thresholds (Fairlearn's
  ThresholdOptimizer, equalized odds) and with group-balanced retraining. Baseline:
  Fairlearn's own bootstrap (``MetricFrame(n_boot=…)``) for the same per-group
  intervals, timed beside the audit's vectorized one.
- ``explain``: the seed MLP (784→128→64→10) and the CNN on Fashion-MNIST, and a
  small text encoder on generated topic documents, each audited with explanations.
  Per method: seconds per example, stability (mean Spearman rank correlation
  across reruns with other seeds) and, for integrated gradients, the completeness
  error |Σ attributions − (f(x) − f(baseline))| / |f(x) − f(baseline)|. Baseline:
  Captum's IntegratedGradients with its defaults (n_steps=50, no internal batch
  size) on the same examples; for the table model (the planted-bias MLP), SHAP's
  PermutationExplainer (background of 100 training rows) beside the audit's
  Shapley sampling (Captum): cost per example and the rank agreement of the two.

Usage: python bench/audit_bench.py [--parts fairness,explain] [--quick] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shoestring.audit import audit, resolve_audit_config
from shoestring.audit.planted import (
    PlantedBias,
    planted_error_rates,
    planted_gap,
    write_planted_csv,
)
from shoestring.train.api import train
from shoestring.train.config import resolve_config

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def header(title: str) -> None:
    print(f"\n== {title} (load average {Path('/proc/loadavg').read_text().split()[0]}) ==",
          flush=True)


def _train(out: Path, source: str, model: dict, data: dict | None = None, **train_cfg) -> Path:
    if not (out / "model.safetensors").exists():
        shutil.rmtree(out, ignore_errors=True)
        train(resolve_config({"model": model, "data": {"source": source, **(data or {})},
                              "train": {"seed": 0, **train_cfg}, "out": str(out)}),
              ledger=None, handle_signals=False)
    return out


def _ci(v: dict) -> str:
    return f"{v['value']:.4f} [{v['ci'][0]:.4f}, {v['ci'][1]:.4f}]"


# --- fairness ----------------------------------------------------------------------------------

def fairness(work: Path, quick: bool) -> None:
    planted = PlantedBias(rows=8_000 if quick else 40_000)
    n_boot = 300 if quick else 1000
    header(f"planted bias: {planted.rows:,} rows, seed MLP, {n_boot} bootstrap resamples")
    csv = write_planted_csv(work / "planted.csv", planted)
    run = _train(work / "planted-run", f"csv:{csv}", {"name": "seed-mlp"},
                 {"label": "label", "group": ["group"]}, epochs=8 if quick else 10)
    t = time.perf_counter()
    r = audit(resolve_audit_config({"run": run, "out": work / "planted-audit", "explain": 0,
                                    "mitigate": "thresholds", "n_boot": n_boot}))
    audit_s = time.perf_counter() - t
    col = r.report["fairness"]["columns"]["group"]
    truth = planted_error_rates(planted)
    print(f"{'':<16}{'planted':>9}  {'measured [95% CI]':<28}covered")
    for g in col["groups"]:
        m = g["metrics"]["error_rate"]
        ok = m["ci"][0] <= truth[g["group"]] <= m["ci"][1]
        print(f"error rate {g['group']:<6}{truth[g['group']]:>9.4f}  {_ci(m):<28}"
              f"{'yes' if ok else 'NO'}   (n={g['n']})")
    gap = col["gaps"]["error_rate"]
    ok = gap["ci"][0] <= planted_gap(planted) <= gap["ci"][1]
    print(f"{'gap B − A':<16}{planted_gap(planted):>9.4f}  {_ci(gap):<28}{'yes' if ok else 'NO'}")
    eo = col["gaps"]["equalized_odds_difference"]
    print(f"{'equalized odds':<16}{'':>9}  {_ci(eo)}")
    print(f"audit (fairness + thresholds + card): {audit_s:.2f} s")

    header("mitigation: the same gap before and after")
    rows = [("thresholds", r.report["mitigation"])]
    t = time.perf_counter()
    rw = audit(resolve_audit_config({"run": run, "out": work / "planted-audit-rw", "explain": 0,
                                     "mitigate": "reweight", "n_boot": n_boot}))
    rows.append(("reweight", rw.report["mitigation"]))
    reweight_s = time.perf_counter() - t
    print(f"{'method':<12}{'gap before':<28}{'gap after':<28}acc A before→after  "
          "acc B before→after")
    for name, mit in rows:
        table = {row["gap"]: row for row in mit["table"]}
        e = table["error_rate"]
        acc = "  ".join(f"{table[f'accuracy of {g}']['before']['value']:.4f}→"
                        f"{table[f'accuracy of {g}']['after']['value']:.4f}    "
                        for g in ("A", "B"))
        print(f"{name:<12}{_ci(e['before']):<28}{_ci(e['after']):<28}{acc}")
    print("thresholds: fitted on one half of the test split, scored on the other half; "
          f"reweight: retrained with group-balanced batches ({reweight_s:.1f} s, whole audit)")

    header("per-group intervals: the audit's bootstrap against Fairlearn's (same predictions)")
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    from shoestring.audit.evidence import load_evidence
    from shoestring.audit.fairness import group_fairness
    from shoestring.audit.predict import outputs

    ev = load_evidence(resolve_audit_config({"run": run}))
    y = ev.test.y.numpy()
    pred = outputs(ev.run.model, ev.test.x).argmax(1).numpy()
    groups = np.asarray(ev.test.groups["group"], dtype=object)
    t = time.perf_counter()
    ours = group_fairness(y, pred, groups, task="classification", classes=[0, 1], n_boot=n_boot)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    frame = MetricFrame(metrics={"error_rate": lambda a, b: 1.0 - accuracy_score(a, b)},
                        y_true=y, y_pred=pred, sensitive_features=groups, n_boot=n_boot,
                        ci_quantiles=[0.025, 0.975], random_state=0)
    theirs_s = time.perf_counter() - t
    lo, hi = frame.by_group_ci
    for g in ours["groups"]:
        m = g["metrics"]["error_rate"]
        print(f"group {g['group']}: audit {_ci(m)}   Fairlearn "
              f"[{float(lo.loc[g['group'], 'error_rate']):.4f}, "
              f"{float(hi.loc[g['group'], 'error_rate']):.4f}]")
    print(f"time: audit {ours_s:.3f} s, Fairlearn {theirs_s:.3f} s "
          f"({theirs_s / max(ours_s, 1e-9):.0f}× the audit's); Fairlearn resamples the whole "
          "split, the audit within each group (group sizes fixed)")


# --- explanations -------------------------------------------------------------------------------

TOPICS = {"sport": ["goal", "match", "team", "score", "coach", "league"],
          "food": ["bake", "flour", "sugar", "oven", "salt", "butter"],
          "tech": ["code", "server", "chip", "cloud", "kernel", "cache"],
          "travel": ["train", "hotel", "beach", "map", "flight", "ticket"]}
FILLER = ["the", "a", "and", "with", "for", "on", "very", "some", "today", "again"]


def write_topics(path: Path, n: int) -> Path:
    """Short documents: topic words among filler words; the label is the topic."""
    rng = random.Random(0)
    names = sorted(TOPICS)
    with open(path, "w") as f:
        for i in range(n):
            t = names[i % len(names)]
            words = [rng.choice(TOPICS[t] if rng.random() < 0.4 else FILLER)
                     for _ in range(rng.randint(6, 14))]
            f.write(json.dumps({"text": " ".join(words), "label": t}) + "\n")
    return path


def plain_captum(run: Path, examples: int) -> dict:
    """Captum's IntegratedGradients with its defaults on the audit's first examples."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    from shoestring.audit.evidence import load_evidence
    from shoestring.audit.predict import as_function

    ev = load_evidence(resolve_audit_config({"run": run}))
    n = min(examples, len(ev.test))
    pick = torch.randperm(len(ev.test), generator=torch.Generator().manual_seed(0))[:n]
    x = ev.test.x[pick]
    model = ev.run.model
    if ev.kind == "text":
        layout = ev.run.card.tokenizer.layout
        mask = x != layout.pad_id
        real = mask.clone()
        real[:, 0] = False
        base = torch.where(real, torch.full_like(x, layout.pad_id), x)

        def fwd(i, m):
            return model(i, None, m)[0]
        with torch.no_grad():
            target = fwd(x, mask).argmax(1)
        t = time.perf_counter()
        attr, _ = LayerIntegratedGradients(fwd, model.word_embeddings).attribute(
            x, baselines=base, target=target, additional_forward_args=(mask,),
            return_convergence_delta=True)
        with torch.no_grad():
            gap = (fwd(x, mask) - fwd(base, mask)).gather(1, target[:, None])[:, 0]
    else:
        f = as_function(model)
        base = torch.zeros_like(x)
        with torch.no_grad():
            target = f(x).argmax(1)
        t = time.perf_counter()
        attr, _ = IntegratedGradients(f).attribute(x, baselines=base, target=target,
                                                       return_convergence_delta=True)
        with torch.no_grad():
            gap = (f(x) - f(base)).gather(1, target[:, None])[:, 0]
    seconds = time.perf_counter() - t
    residual = (attr.detach().flatten(1).sum(1) - gap).abs()  # as the audit computes it
    ok = gap.abs() > 1e-3
    rel = (residual[ok] / gap.abs()[ok]).median() if ok.any() else float("nan")
    return {"seconds_per_example": seconds / n, "median_relative_error": float(rel),
            "examples": n}


def shap_beside_captum(run: Path, examples: int) -> None:
    """SHAP's permutation explainer against the audit's Shapley sampling on one table model."""
    try:
        t = time.perf_counter()
        import shap
    except ImportError:
        print("(shap is not installed: pip install -e '.[dev]' for this comparison)")
        return
    import warnings

    from scipy.stats import spearmanr

    from shoestring.audit.evidence import load_evidence
    from shoestring.audit.explain.methods import shapley_sampling
    from shoestring.audit.predict import as_function

    import_s = time.perf_counter() - t
    ev = load_evidence(resolve_audit_config({"run": run}))
    f = as_function(ev.run.model)
    x = ev.test.x[:examples]
    with torch.no_grad():
        target = f(x).argmax(1)

    def g(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return f(torch.as_tensor(a, dtype=torch.float32)).numpy()

    explainer = shap.PermutationExplainer(g, shap.maskers.Independent(
        ev.train.x[:100].numpy(), max_samples=100), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        explainer(x[:1].numpy(), silent=True)  # numba compiles on first use
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        sv = explainer(x.numpy(), silent=True)
        shap_s = (time.perf_counter() - t) / len(x)
    values = sv.values[np.arange(len(x)), :, target.numpy()]
    t = time.perf_counter()
    ours = shapley_sampling(f, x, target, torch.zeros_like(x), 25, 0).values.numpy()
    ours_s = (time.perf_counter() - t) / len(x)
    agree = np.mean([spearmanr(values[i], ours[i]).statistic for i in range(len(x))])
    print(f"{'table MLP (planted)':<24}{'SHAP PermutationExplainer':<28}{len(x):>9}"
          f"{shap_s:>11.4f}   (import {import_s:.1f} s, first call {first_s:.1f} s: numba)")
    print(f"{'':<24}{'audit Shapley sampling':<28}{len(x):>9}{ours_s:>11.4f}   "
          f"rank agreement with SHAP {agree:.3f}; SHAP {shap_s / max(ours_s, 1e-9):.0f}× "
          "the cost per example")


def explain(work: Path, quick: bool) -> None:
    n_explain = 8 if quick else 64
    steps = 300 if quick else None
    runs = []
    planted = work / "planted-run"
    if not (planted / "model.safetensors").exists():
        csv = write_planted_csv(work / "planted.csv", PlantedBias(rows=8_000))
        _train(planted, f"csv:{csv}", {"name": "seed-mlp"},
               {"label": "label", "group": ["group"]}, epochs=8)
    runs.append(("table MLP (planted)", planted))
    if FMNIST.exists():
        src = "fashion-mnist"
        limit = {"max_steps": steps} if steps else {"epochs": 10}
        runs.append(("seed MLP, Fashion-MNIST", _train(
            work / "fm-mlp", src, {"name": "seed-mlp"}, batch_size=128, **limit)))
        runs.append(("CNN, Fashion-MNIST", _train(
            work / "fm-cnn", src, {"name": "cnn"}, batch_size=128,
            **({"max_steps": steps} if steps else {"epochs": 3}))))
    else:
        print(f"({FMNIST} missing: the MLP and the CNN are skipped)")
    docs = write_topics(work / "topics.jsonl", 800 if quick else 4000)
    runs.append(("text encoder, topics", _train(
        work / "topics-enc", f"jsonl:{docs}",
        {"name": "encoder", "n_layer": 2, "n_embd": 32, "n_head": 2},
        max_steps=200 if quick else 1500, batch_size=32)))
    header(f"explanations: {n_explain} test examples each, 3 reruns, 1 torch thread")
    torch.set_num_threads(1)
    print(f"{'model':<24}{'method':<28}{'examples':>9}{'s/example':>11}{'stability':>10}"
          f"{'complete. err':>14}{'steps':>6}")
    for name, run in runs:
        t = time.perf_counter()
        r = audit(resolve_audit_config({"run": run, "out": work / f"{run.name}-audit",
                                        "explain": n_explain, "time_budget": 600}))
        total = time.perf_counter() - t
        ex = r.report["explanations"]
        for m in ex["methods"]:
            comp = (m.get("completeness") or {}).get("median_relative_error")
            print(f"{name:<24}{m['method']:<28}{m['examples']:>9}"
                  f"{m['seconds_per_example']:>11.4f}{m['stability']['spearman_mean']:>10.3f}"
                  f"{'–' if comp is None else f'{comp:.2%}':>14}{m.get('steps', ''):>6}")
        base = plain_captum(run, n_explain)
        ours = ex["methods"][0]
        print(f"{name:<24}{'Captum IG defaults (50 st.)':<28}{base['examples']:>9}"
              f"{base['seconds_per_example']:>11.4f}{'':>10}"
              f"{base['median_relative_error']:>14.2%}{50:>6}")
        print(f"{'':<24}surrogate tree fidelity {ex['surrogate']['fidelity']:.1%}; "
              f"whole audit {total:.1f} s; IG s/example vs Captum defaults "
              f"{ours['seconds_per_example'] / max(base['seconds_per_example'], 1e-9):.2f}×")
    shap_beside_captum(planted, n_explain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="fairness,explain")
    ap.add_argument("--quick", action="store_true", help="smaller data, fewer steps (a check "
                    "that the bench runs, not final figures)")
    ap.add_argument("--work", type=Path, help="keep trained runs here (reused on rerun)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = a.parts.split(",")
    if "fairness" in parts:
        fairness(work, a.quick)
    if "explain" in parts:
        explain(work, a.quick)
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
