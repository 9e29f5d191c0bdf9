"""``shoestring.audit(config)``: the Python API behind ``shoestring audit RUN``.

In order: with ``strict``, check the card already in the audit folder against
the artifacts it was made from (and stop, changing nothing, if it states
something they do not support); load the run and the data it is judged on;
score the audited split; explain (:mod:`.explain.run`); compare groups
(:mod:`.fairness`); mitigate if asked (:mod:`.mitigate`); time serving; write
the audit files (:mod:`.files`); then generate the model card from those
files (:mod:`.modelcard`). The clock and the ledger are passed in; nothing
here prints or exits.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch

from shoestring.audit.config import AuditConfig
from shoestring.audit.evidence import Evidence, load_evidence
from shoestring.audit.files import (
    AUDIT,
    CONFIG,
    EXPLANATIONS,
    FAIRNESS,
    MITIGATION,
    REWEIGHTED,
    AuditFolder,
)
from shoestring.audit.predict import outputs, probabilities
from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes, is_encrypted_path
from shoestring.types import Task

Progress = Callable[[str, int, int], None]
# Priced with the plan catalog's cheapest CPU cloud instance when the run has no price.
CATALOG_CPU = "c7i-8vcpu"
SERVING_REPEATS = 30


@dataclass(frozen=True)
class AuditResult:
    out: Path
    report: dict[str, Any]
    card: dict[str, Any]


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())


def audit(config: AuditConfig, *, ledger=None, progress: Progress | None = None,
          clock: Callable[[], float] = time.perf_counter) -> AuditResult:
    """Audit the run ``config.run``; see the module docstring.

    ``ledger`` (a :class:`~shoestring.ledger.runs.RunLedger`) lets the card state
    what the ledger recorded for the run's training.

    >>> from shoestring.audit import audit, resolve_audit_config
    >>> audit(resolve_audit_config({"run": "runs/x", "group": ["sex"]}))  # doctest: +SKIP
    """
    from shoestring.audit.modelcard import verify_card, write_card

    progress = progress or (lambda *a: None)
    folder = AuditFolder(config.resolved_out())
    if config.strict:
        problems = verify_card(config.run, folder.path)
        if problems:
            raise ShoestringError(
                "the model card states what its artifacts do not support:\n  "
                + "\n  ".join(problems[:20]),
                hint="regenerate it with 'shoestring audit RUN' (without --strict); only the "
                "'Intended use' section is for people to edit")
    started = clock()
    progress("loading", 0, 1)
    ev = load_evidence(config)
    progress("loading", 1, 1)
    _check_requests(ev, config)  # before anything is written: bad input loses nothing
    folder.create()
    if is_encrypted_path(config.run) and not is_encrypted_path(folder / CONFIG):
        # An audit of an encrypted run stays encrypted, wherever --out puts it.
        from shoestring.crypto.folder import encrypt_output

        encrypt_output(folder.path)
    atomic_write_bytes(folder / CONFIG, tomli_w.dumps(config.model_dump(
        mode="json", exclude_none=True)).encode())
    torch.manual_seed(config.seed)
    logits = outputs(ev.run.model, ev.test.x)
    report: dict[str, Any] = {"run": str(config.run), "data": _data_facts(ev),
                              "metrics": _metrics(ev, logits), "notes": list(ev.notes)}
    if config.explain:
        from shoestring.audit.explain.run import explain

        report["explanations"] = explain(ev, config, folder, progress=progress, clock=clock)
        _write_json(folder / EXPLANATIONS, report["explanations"])
    if ev.test.groups:
        report["fairness"] = _fairness(ev, config, logits, progress)
        _write_json(folder / FAIRNESS, report["fairness"])
    if config.mitigate != "none":
        report["mitigation"] = _mitigate(ev, config, logits, folder, progress)
        _write_json(folder / MITIGATION, report["mitigation"])
    report["serving"] = _serving(ev, clock)
    report["training_cost"] = _training_cost(ev)
    report["ledger"] = _ledger_row(ledger, ev)
    report["caveats"] = _caveats(report, config)
    report["seconds"] = round(clock() - started, 3)
    _write_json(folder / AUDIT, report)
    card = write_card(config.run, folder.path)
    return AuditResult(folder.path, report, card)


def _check_requests(ev: Evidence, cfg: AuditConfig) -> None:
    """What the configuration asks that this run cannot give, as one clear error."""
    if cfg.explain:
        from shoestring.audit.explain.run import check_explainable

        card = ev.run.card
        check_explainable(card.family, ev.kind, tuple(t.kind for t in card.transforms))
    if cfg.mitigate == "none":
        return
    if not ev.test.groups:
        raise ShoestringError(f"--mitigate {cfg.mitigate} needs group columns",
                              hint="pass --group COLUMN (or train with --group)")
    if ev.task is not Task.classification:
        raise ShoestringError(f"--mitigate {cfg.mitigate} applies to classifiers",
                              hint="audit a regressor without --mitigate")
    if cfg.mitigate == "thresholds" and ev.run.card.outputs.size != 2:
        raise ShoestringError("--mitigate thresholds needs a binary classifier "
                              f"(this one has {ev.run.card.outputs.size} classes)",
                              hint="use --mitigate reweight for a multi-class model")


def _data_facts(ev: Evidence) -> dict[str, Any]:
    from shoestring.data.sources import split_spec

    scheme, arg = split_spec(ev.spec)
    return {"source": ev.spec, "split": ev.split_name, "examples": len(ev.test),
            "kind": ev.kind, "groups": sorted(ev.test.groups),
            "prepared_dir": str(Path(arg.partition("#")[0]).resolve())
            if scheme == "prepared" else None}


def _metrics(ev: Evidence, logits: torch.Tensor) -> dict[str, float]:
    if ev.task is Task.classification:
        pred = logits.argmax(dim=1)
        return {f"{ev.split_name}_accuracy": round(float((pred == ev.test.y).float().mean()), 6)}
    return {f"{ev.split_name}_mse": round(float(((logits - ev.test.y) ** 2).mean()), 6)}


def _labels_and_predictions(ev: Evidence, logits: torch.Tensor):
    if ev.task is Task.classification:
        return ev.test.y.numpy(), logits.argmax(dim=1).numpy()
    pre = ev.run.card.preprocessing.to_preprocessing()
    # Compared in target units: the card's target standardization undone on both sides.
    return (pre.targets_from_outputs(ev.test.y).numpy().ravel(),
            pre.targets_from_outputs(logits).numpy().ravel())


def _fairness(ev: Evidence, cfg: AuditConfig, logits: torch.Tensor, progress) -> dict:
    from shoestring.audit.fairness import fairness_report

    progress("fairness", 0, 1)
    y, pred = _labels_and_predictions(ev, logits)
    classes = list(range(ev.run.card.outputs.size))
    result = fairness_report(y, pred, ev.test.groups, task=ev.task.value, classes=classes,
                             class_names=ev.run.card.class_names, n_boot=cfg.n_boot,
                             seed=cfg.seed, min_group=cfg.min_group)
    progress("fairness", 1, 1)
    return result


def _gap_rows(column: str, before: dict, after: dict) -> list[dict[str, Any]]:
    """The before/after table: each gap, then every group's accuracy (what the gap cost)."""
    rows = []
    for gap in ("error_rate", "accuracy", "demographic_parity_difference",
                "equalized_odds_difference"):
        if gap in before["gaps"] and gap in after["gaps"]:
            rows.append({"column": column, "gap": gap, "before": before["gaps"][gap],
                         "after": after["gaps"][gap]})
    after_groups = {g["group"]: g for g in after["groups"]}
    for g in before["groups"]:
        if g["group"] in after_groups and "accuracy" in g["metrics"]:
            rows.append({"column": column, "gap": f"accuracy of {g['group']}",
                         "before": g["metrics"]["accuracy"],
                         "after": after_groups[g["group"]]["metrics"]["accuracy"]})
    return rows


def _mitigate(ev: Evidence, cfg: AuditConfig, logits: torch.Tensor, folder: AuditFolder,
              progress) -> dict[str, Any]:
    column = next(iter(ev.test.groups))
    classes = list(range(ev.run.card.outputs.size))
    common = {"task": "classification", "classes": classes, "n_boot": cfg.n_boot,
              "seed": cfg.seed, "min_group": cfg.min_group}
    y = ev.test.y.numpy()
    progress(f"mitigate: {cfg.mitigate}", 0, 1)
    if cfg.mitigate == "thresholds":
        out = _thresholds(ev, cfg, logits, column, y, common)
    else:
        out = _reweight(ev, cfg, folder, column, y, logits, common)
    progress(f"mitigate: {cfg.mitigate}", 1, 1)
    before, after = out.pop("_before"), out.pop("_after")
    out.update(column=column, before=before, after=after,
               table=_gap_rows(column, before, after))
    return out


def _thresholds(ev, cfg, logits, column, y, common) -> dict[str, Any]:
    from shoestring.audit.fairness import group_fairness
    from shoestring.audit.mitigate import per_group_thresholds, split_for_fitting

    groups = np.asarray(ev.test.groups[column], dtype=object)
    if ev.fit is not None and ev.fit.groups:
        fit_scores = probabilities(outputs(ev.run.model, ev.fit.x))[:, 1].numpy()
        test_scores = probabilities(logits)[:, 1].numpy()
        score = np.concatenate([fit_scores, test_scores])
        yy = np.concatenate([ev.fit.y.numpy(), y])
        gg = np.concatenate([np.asarray(ev.fit.groups[column], dtype=object), groups])
        fit_rows = np.arange(len(fit_scores))
        eval_rows = np.arange(len(fit_scores), len(score))
        where = f"fitted on the validation split ({len(fit_rows)} examples)"
    else:
        score, yy, gg = probabilities(logits)[:, 1].numpy(), y, groups
        fit_rows, eval_rows = split_for_fitting(len(y), cfg.seed)
        where = (f"fitted on a seeded half of the {ev.split_name} split ({len(fit_rows)} "
                 f"examples); before and after are scored on the other half")
    pred, fitted = per_group_thresholds(score, yy, gg, fit_rows, eval_rows,
                                        constraint=cfg.constraint, seed=cfg.seed)
    base = (score[eval_rows] > 0.5).astype(int)
    return {"method": "thresholds", "constraint": cfg.constraint, "fitted": fitted,
            "how": f"Per-group thresholds (Fairlearn ThresholdOptimizer, {cfg.constraint}, "
            f"maximising accuracy), {where}. Serving must know each request's group.",
            "_before": group_fairness(yy[eval_rows], base, gg[eval_rows], **common),
            "_after": group_fairness(yy[eval_rows], pred, gg[eval_rows], **common)}


def _reweight(ev, cfg, folder, column, y, logits, common) -> dict[str, Any]:
    import shutil

    from shoestring.audit.fairness import group_fairness
    from shoestring.audit.mitigate import balancing_hooks
    from shoestring.data.holdout import carve_validation
    from shoestring.data.sources import load_dataset
    from shoestring.models.run_folder import load_run
    from shoestring.train.api import train
    from shoestring.train.config import read_toml, resolve_config

    run_cfg = resolve_config(read_toml(ev.run.folder.config))
    d = run_cfg.data
    groups = list(d.group or []) or [column]
    # The training split exactly as the retraining will load it (same options), so the
    # balancing weights line up with its rows.
    options = d.model_copy(update={"group": groups}).source_options(run_cfg.train.seed)
    dataset = load_dataset(d.source, options)
    if dataset.val is None and (run_cfg.train.target or run_cfg.train.recipe):
        dataset = carve_validation(dataset, d.val_fraction, run_cfg.train.seed)
    out_dir = folder / REWEIGHTED
    shutil.rmtree(out_dir, ignore_errors=True)
    new_cfg = run_cfg.model_copy(update={
        "out": out_dir, "name": f"{ev.run.folder.path.name}-reweighted", "resume": False,
        "data": d.model_copy(update={"group": groups})})
    hooks = balancing_hooks(dataset.train.groups[column], dataset.train.y)
    result = train(new_cfg, hooks=hooks, kind="audit", ledger=None, handle_signals=False)
    new_logits = outputs(load_run(out_dir).model, ev.test.x)
    gg = np.asarray(ev.test.groups[column], dtype=object)
    return {"method": "reweight", "retrained_run": str(out_dir),
            "retrain_seconds": result.summary.get("train_seconds"),
            "retrain_cost_usd": result.summary.get("cost_usd"),
            "how": "Retrained with group-balanced sampling: every (group, label) cell of the "
            f"training split drawn with equal weight (column {column!r}); both models scored on "
            f"the same {ev.split_name} split.",
            "_before": group_fairness(y, logits.argmax(1).numpy(), gg, **common),
            "_after": group_fairness(y, new_logits.argmax(1).numpy(), gg, **common)}


def _serving(ev: Evidence, clock: Callable[[], float]) -> dict[str, Any]:
    """Per-request latency at batch 1 here, priced per 1,000 requests."""
    model, x = ev.run.model, ev.test.x[:1]
    with torch.inference_mode():
        model(x)  # warm-up: first-call allocations
        times = []
        for _ in range(SERVING_REPEATS):
            t = clock()
            model(x)
            times.append(clock() - t)
    seconds = statistics.median(times)
    price, source = _price(ev)
    if "catalog" in source:
        source += "; latency measured on this machine, not that instance"
    return {"ms_per_request": round(seconds * 1000, 6), "batch": 1,
            "device": str(next(model.parameters()).device), "repeats": SERVING_REPEATS,
            "price_per_hour": price, "price_source": source,
            "usd_per_1000": round(seconds * 1000 / 3600 * price, 9)}


def _price(ev: Evidence) -> tuple[float, str]:
    """The run's price per hour, else the plan catalog's cheapest CPU instance (named)."""
    price = float(ev.summary.get("price_per_hour") or 0.0)
    if price > 0:
        return price, "the run's price per hour (summary.json)"
    from shoestring.plan.catalog import default_catalog

    row = min(default_catalog().prices_for(CATALOG_CPU), key=lambda p: p.on_demand)
    return row.on_demand, (f"plan catalog: {row.cloud} {row.instance} on demand, {row.date} "
                           f"({row.source})")


def _training_cost(ev: Evidence) -> dict[str, Any]:
    """What training cost: summary.json's own figure, or its seconds at the catalog's price.

    A run trained without a price records $0; the card then prices its measured
    seconds with the same catalog row as serving, and says so.
    """
    seconds = ev.summary.get("train_seconds")
    recorded = float(ev.summary.get("price_per_hour") or 0.0)
    if recorded > 0 or not isinstance(seconds, (int, float)):
        return {"usd": ev.summary.get("cost_usd"), "seconds": seconds,
                "price_per_hour": recorded or None, "source": "summary.json"}
    price, source = _price(ev)
    return {"usd": round(seconds / 3600 * price, 9), "seconds": seconds,
            "price_per_hour": price,
            "source": f"train_seconds from summary.json (no price recorded) × {source}"}


def _ledger_row(ledger, ev: Evidence) -> dict[str, Any] | None:
    run_id = ev.run.folder.run_id()
    if ledger is None or run_id is None:
        return None
    row = ledger.get(run_id)
    if row is None:
        return None
    return {"usd": row.cost_usd, "wall_seconds": row.wall_seconds, "status": row.status,
            "source": f"ledger run {run_id}"}


def _caveats(report: dict[str, Any], cfg: AuditConfig) -> list[str]:
    out = list(report.get("notes") or [])
    for name, col in ((report.get("fairness") or {}).get("columns") or {}).items():
        out += [f"{name}: {w}" for w in col["warnings"]]
    ex = report.get("explanations") or {}
    fid = (ex.get("surrogate") or {}).get("fidelity")
    if fid is not None and fid < 0.8:
        out.append(f"the surrogate tree agrees with the model on {fid:.0%} of examples: a poor "
                   "summary of the model")
    for meth in ex.get("methods", []):
        comp = meth.get("completeness") or {}
        rel = comp.get("median_relative_error")
        if rel is not None and rel > 0.05:
            out.append(f"{meth['method']}: attributions miss completeness by {rel:.1%} "
                       "(median); treat them as approximate")
        if meth["examples"] < cfg.explain:
            out.append(f"{meth['method']}: {meth['examples']} of {cfg.explain} requested "
                       "examples fit the time budget")
    if report.get("mitigation", {}).get("method") == "thresholds":
        out.append("per-group thresholds need each request's group at serving time")
    if not report.get("fairness"):
        out.append("no group columns audited: fairness unknown")
    if not ex:
        out.append("no explanations computed (--explain 0)")
    return out
