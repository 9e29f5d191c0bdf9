"""The model card, generated from the artifacts only (Mitchell et al. 2019, "Model Cards
for Model Reporting").

:func:`build_card` is a pure function of files on disk: the run folder
(``model.json``, ``summary.json``, ``config.toml``, ``run.json``, the weights'
digest), the audit folder's ``audit.json`` (which holds the audit's
measurements, the serving timing and the ledger's cost as they were read),
the preparation report of a ``prepared:`` source and the cards of the runs
this one was made from. Every value in the card names its source. Because the
same files always give the same card, a card that differs from the one its
files give states something they do not support: :func:`verify_card` (what
``audit --strict`` runs) finds such lines. Only the *Intended use* section is
for people to write; it survives regeneration.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from shoestring.audit.files import AUDIT, CARD_JSON, CARD_MD
from shoestring.io import read_chunks, read_text
from shoestring.models.run_folder import RunFolder, read_card

FORMAT = "shoestring.model-card/1"
INTENDED_USE = "Intended use"
TODO = ("TODO (a person must write this): who should use the model, for what decisions, and "
        "which uses are out of scope.")
MAX_LINEAGE = 20
HEADLINE = ("test_accuracy", "test_loss", "test_mse", "val_accuracy", "val_loss", "val_mse")


def sha256(path: Path) -> str | None:
    """The digest of the file's content: decrypted first when it lies in an encrypted
    folder, so a weights digest names the model, not the ciphertext (which changes with
    every re-encryption: each write draws a fresh salt) and matches the plaintext export."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    for block in read_chunks(path):
        h.update(block)
    return h.hexdigest()


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(read_text(path))
    except (OSError, ValueError):
        return {}


def _lineage(run_dir: Path) -> list[dict[str, Any]]:
    """This run and its ancestors (``lineage.parent_dir``), newest first."""
    chain, seen, here = [], set(), Path(run_dir)
    while here is not None and len(chain) < MAX_LINEAGE:
        key = str(here.resolve())
        if key in seen:
            break
        seen.add(key)
        try:
            card = read_card(here)
        except Exception:  # noqa: BLE001 (any damage to a parent folder ends the chain)
            chain.append({"run": str(here), "missing": True})
            break
        chain.append({"run": str(here), "run_id": RunFolder(here).run_id(),
                      "stage": card.lineage.stage, "family": card.family,
                      "transforms": [t.kind for t in card.transforms]})
        here = Path(card.lineage.parent_dir) if card.lineage.parent_dir else None
    return chain


# What the card states of a DP run: ε spent, δ, and what they rest on.
PRIVACY_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "max_grad_norm",
                "accountant")


def _privacy(summary: dict[str, Any], prep: dict[str, Any]) -> dict[str, Any]:
    # summary.json's "privacy", as training writes it (shoestring.train.privacy.summary).
    dp = summary.get("privacy")
    out: dict[str, Any] = {"differential_privacy": "none", "source": "summary.json"}
    if isinstance(dp, dict) and dp.get("epsilon") is not None:
        out["differential_privacy"] = {k: dp[k] for k in PRIVACY_KEYS if k in dp}
    pii = (prep.get("pii_summary") or {})
    if pii:
        out["pii"] = {"mode": pii.get("mode"), "records_with_pii": pii.get("records_with_pii"),
                      "source": "preparation report.json"}
    return out


def build_card(run_dir: Path, audit_dir: Path) -> dict[str, Any]:
    """The card's content from the files (see the module docstring)."""
    run_dir, audit_dir = Path(run_dir), Path(audit_dir)
    folder = RunFolder(run_dir)
    card = read_card(run_dir)
    summary = _json(folder.summary)
    audit = _json(audit_dir / AUDIT)
    prep_dir = audit.get("data", {}).get("prepared_dir")
    prep = _json(Path(prep_dir) / "report.json") if prep_dir else {}
    metrics = {k: summary[k] for k in HEADLINE if isinstance(summary.get(k), (int, float))}
    fairness = audit.get("fairness") or {}
    return {
        "format": FORMAT,
        "model": {"name": summary.get("name") or run_dir.name, "run_id": folder.run_id(),
                  "family": card.family, "model": card.architecture.name,
                  "architecture": card.architecture.params, "task": card.task.value,
                  "parameters": summary.get("parameters"), "inputs": card.inputs.shape,
                  "outputs": card.outputs.size, "classes": card.class_names,
                  "weights_sha256": sha256(folder.weights),
                  "shoestring_version": card.shoestring_version,
                  "source": "model.json, summary.json, model.safetensors"},
        "data": {"source": card.data.source, "label": card.data.label,
                 "feature_names": card.feature_names, "audited": audit.get("data"),
                 "preparation": {k: prep.get(k) for k in ("input", "kept", "dropped", "groups")
                                 if k in prep} or None,
                 "preparation_source": f"{prep_dir}/report.json" if prep else None},
        "metrics": {"training_run": metrics, "training_run_source": "summary.json",
                    "audit": audit.get("metrics"), "audit_source": f"audit/{AUDIT}"},
        "fairness": _fairness_summary(fairness),
        "mitigation": audit.get("mitigation"),
        "explanations": _explanation_summary(audit.get("explanations")),
        "privacy": _privacy(summary, prep),
        "lineage": _lineage(run_dir),
        "cost": {"training": audit.get("training_cost") or {
                     "usd": summary.get("cost_usd"), "seconds": summary.get("train_seconds"),
                     "price_per_hour": summary.get("price_per_hour"), "source": "summary.json"},
                 "training_ledger": audit.get("ledger"),
                 "serving": audit.get("serving")},
        "caveats": audit.get("caveats") or [],
        "evidence": {name: sha256(path) for name, path in (
            ("model.json", folder.card), ("summary.json", folder.summary),
            ("config.toml", folder.config), (f"audit/{AUDIT}", audit_dir / AUDIT))},
    }


def _fairness_summary(fairness: dict[str, Any]) -> dict[str, Any] | None:
    if not fairness:
        return None
    cols = {}
    for name, col in (fairness.get("columns") or {}).items():
        cols[name] = {"groups": [{"group": g["group"], "n": g["n"], "too_small": g["too_small"],
                                  **{m: g["metrics"][m] for m in ("accuracy", "error_rate", "mse")
                                     if m in g["metrics"]}} for g in col["groups"]],
                      "gaps": {k: v for k, v in col["gaps"].items() if k != "fairlearn"},
                      "warnings": col["warnings"]}
    return {"columns": cols, "bootstrap": fairness.get("bootstrap"), "source": "audit/fairness.json"}


def _explanation_summary(ex: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ex:
        return None
    return {"kind": ex.get("kind"), "methods": [
        {k: meth.get(k) for k in ("method", "examples", "seconds_per_example", "steps",
                                  "internal_batch_size", "completeness", "stability")
         if k in meth} for meth in ex.get("methods", [])],
        "surrogate_fidelity": (ex.get("surrogate") or {}).get("fidelity"),
        "source": "audit/explanations.json"}


# --- markdown -------------------------------------------------------------------------------

def _num(v: Any, places: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{places}f}"
    return str(v)


def _ci(v: dict[str, Any] | None) -> str:
    if not v:
        return "–"
    ci = v.get("ci")
    return f"{_num(v['value'])} [{_num(ci[0])}, {_num(ci[1])}]" if ci else _num(v["value"])


def render_markdown(c: dict[str, Any], intended_use: str = TODO) -> str:
    """The card as Markdown; the same content always gives the same text."""
    md = c["model"]
    out = [f"# Model card: {md['name']}", "",
           ("Generated by `shoestring audit` from the run's artifacts; every number names its "
            "source. `shoestring audit --strict` fails if a line below (other than *Intended "
            "use*) states something the artifacts do not support."), "",
           "## Model details", "",
           f"- Run id: {md['run_id']}",
           f"- Family: {md['family']} ({md['model']}), task: {md['task']}",
           f"- Parameters: {md['parameters']}",
           f"- Inputs: {md['inputs']}; outputs: {md['outputs']}"
           + (f" ({', '.join(map(str, md['classes']))})" if md.get("classes") else ""),
           f"- Weights sha256: {md['weights_sha256']}",
           f"- Source: {md['source']}", "",
           f"## {INTENDED_USE}", "", intended_use.strip(), "", "## Data", ""]
    d = c["data"]
    out.append(f"- Trained on: {d['source']} (label: {d['label']})")
    if d.get("audited"):
        a = d["audited"]
        out.append(f"- Audited on: {a.get('source')}, {a.get('split')} split, "
                   f"{a.get('examples')} examples")
    if d.get("preparation"):
        p = d["preparation"]
        out.append(f"- Preparation: {p.get('input')} records in, {p.get('kept')} kept "
                   f"(source: {d['preparation_source']})")
        for reason, n in (p.get("dropped") or {}).items():
            if n:
                out.append(f"  - dropped as {reason}: {n}")
    else:
        out.append("- Preparation: no preparation report (the source was not a prepared folder)")
    out += ["", "## Metrics", "", "| metric | value | source |", "| --- | --- | --- |"]
    m = c["metrics"]
    for k, v in (m.get("training_run") or {}).items():
        out.append(f"| {k} | {_num(v)} | {m['training_run_source']} |")
    for k, v in (m.get("audit") or {}).items():
        if isinstance(v, (int, float)):
            out.append(f"| audit {k} | {_num(v)} | {m['audit_source']} |")
    out += _fairness_md(c.get("fairness"), c.get("mitigation"))
    out += _explanations_md(c.get("explanations"))
    out += _privacy_md(c["privacy"])
    out += ["", "## Compression lineage", ""]
    for step in c["lineage"]:
        if step.get("missing"):
            out.append(f"- {step['run']}: folder missing or unreadable")
        else:
            tf = ", ".join(step["transforms"]) or "none"
            out.append(f"- {step['stage']}: {step['run']} (run {step['run_id']}, "
                       f"{step['family']}, transforms: {tf})")
    out += _cost_md(c["cost"])
    out += ["", "## Caveats", ""] + [f"- {x}" for x in c["caveats"] or ["none recorded"]]
    out += ["", "## Evidence", "", "| file | sha256 |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in c["evidence"].items()]
    return "\n".join(out) + "\n"


def _fairness_md(f: dict[str, Any] | None, mit: dict[str, Any] | None) -> list[str]:
    out = ["", "## Fairness", ""]
    if not f:
        return out + ["No group columns were audited (train or audit with --group COLUMN)."]
    b = f.get("bootstrap") or {}
    out.append(f"Per-group metrics with 95% bootstrap intervals ({b.get('resamples')} resamples "
               f"within each group; source: {f['source']}).")
    for name, col in f["columns"].items():
        shown = [m for m in ("accuracy", "error_rate", "mse")
                 if any(m in g for g in col["groups"])]
        out += ["", f"### {name}", "",
                "| group | n | " + " | ".join(m.replace("_", " ") for m in shown) + " |",
                "| --- | --- |" + " --- |" * len(shown)]
        for g in col["groups"]:
            small = " (too small)" if g["too_small"] else ""
            out.append(f"| {g['group']}{small} | {g['n']} | "
                       + " | ".join(_ci(g.get(m)) for m in shown) + " |")
        out += ["", "| gap | value [95% interval] |", "| --- | --- |"]
        for k, v in col["gaps"].items():
            out.append(f"| {k} | {_ci(v)} |")
        out += [f"- Warning: {w}" for w in col["warnings"]]
    if mit:
        out += ["", f"### Mitigation: {mit['method']}", "", mit["how"], "",
                "| column | gap | before | after |", "| --- | --- | --- | --- |"]
        for row in mit["table"]:
            out.append(f"| {row['column']} | {row['gap']} | {_ci(row['before'])} | "
                       f"{_ci(row['after'])} |")
    return out


def _explanations_md(e: dict[str, Any] | None) -> list[str]:
    out = ["", "## Explanations", ""]
    if not e:
        return out + ["Not run (--explain 0)."]
    out += [f"Data kind: {e['kind']} (source: {e['source']}).", "",
            "| method | examples | s/example | stability (Spearman) | completeness error |",
            "| --- | --- | --- | --- | --- |"]
    for meth in e["methods"]:
        comp = meth.get("completeness") or {}
        rel = comp.get("median_relative_error")
        out.append(f"| {meth['method']} | {meth['examples']} | "
                   f"{_num(meth['seconds_per_example'])} | "
                   f"{_num((meth.get('stability') or {}).get('spearman_mean'))} | "
                   f"{'–' if rel is None else _num(rel)} |")
    out.append(f"- Surrogate decision tree fidelity: {_num(e['surrogate_fidelity'])}")
    return out


def _privacy_md(p: dict[str, Any]) -> list[str]:
    dp = p["differential_privacy"]
    # Significant digits: δ is ~1e-6, which four decimal places would print as 0.0000.
    line = "none" if dp == "none" else ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {_num(v)}" for k, v in dp.items())
    out = ["", "## Privacy", "", f"- Differential privacy: {line} (source: {p['source']})"]
    if p.get("pii"):
        out.append(f"- PII in the data: mode {p['pii']['mode']}, "
                   f"{p['pii']['records_with_pii']} records with PII "
                   f"(source: {p['pii']['source']})")
    return out


def _cost_md(cost: dict[str, Any]) -> list[str]:
    t = cost["training"]
    rate = f" at ${_num(t['price_per_hour'])}/h" if t.get("price_per_hour") else ""
    out = ["", "## Cost", "",
           (f"- Training: ${_num(t['usd'], 6)} for {_num(t['seconds'], 2)} s{rate} "
            f"(source: {t['source']})")]
    led = cost.get("training_ledger")
    if led:
        out.append(f"- Training in the ledger: ${_num(led['usd'], 6)}, status {led['status']} "
                   f"(source: {led['source']})")
    s = cost.get("serving")
    if s:
        out.append(f"- Serving per 1,000 requests: ${_num(s['usd_per_1000'], 6)} at batch 1 "
                   f"({_num(s['ms_per_request'], 3)} ms per request measured on {s['device']}, "
                   f"priced at ${_num(s['price_per_hour'])}/h; source: {s['price_source']})")
    return out


# --- strict checking ------------------------------------------------------------------------

def intended_use_of(markdown: str) -> str:
    """The text a person wrote under *Intended use* (the TODO if untouched)."""
    match = re.search(rf"^## {INTENDED_USE}\n(.*?)(?=^## )", markdown, flags=re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else TODO


def _fact_lines(markdown: str) -> list[str]:
    """The card's lines outside *Intended use*."""
    keep, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("## "):
            inside = line == f"## {INTENDED_USE}"
        if not inside:
            keep.append(line.rstrip())
    return keep


def verify_card(run_dir: Path, audit_dir: Path) -> list[str]:
    """Lines of the card (and fields of its JSON) that its artifacts do not give.

    Empty when the card is exactly what the files give. A line that was
    changed or added by hand is reported; removing a line states nothing and
    is allowed.
    """
    md_path, json_path = Path(audit_dir) / CARD_MD, Path(audit_dir) / CARD_JSON
    if not md_path.exists():
        return []
    text = read_text(md_path)
    content = build_card(run_dir, audit_dir)
    expected = set(_fact_lines(render_markdown(content, intended_use_of(text))))
    problems = [f"{CARD_MD}: '{line.strip()}' is not supported by the artifacts"
                for line in _fact_lines(text) if line.strip() and line not in expected]
    if json_path.exists():
        try:
            stored = json.loads(read_text(json_path))
        except ValueError:
            stored = None
        if stored != json.loads(json.dumps(content)):
            problems.append(f"{CARD_JSON}: differs from the card its artifacts give "
                            f"(fields: {', '.join(_differences(stored, content)) or 'all'})")
    return problems


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if json.loads(json.dumps(a)) == json.loads(json.dumps(b)) else [path or "card"]


def write_card(run_dir: Path, audit_dir: Path) -> dict[str, Any]:
    """Write ``model_card.md`` and ``model_card.json``, keeping a person's *Intended use*."""
    from shoestring.io import atomic_write_bytes

    md_path = Path(audit_dir) / CARD_MD
    intended = intended_use_of(read_text(md_path)) if md_path.exists() else TODO
    content = build_card(run_dir, audit_dir)
    atomic_write_bytes(Path(audit_dir) / CARD_JSON,
                       json.dumps(content, indent=2, sort_keys=True).encode())
    atomic_write_bytes(md_path, render_markdown(content, intended).encode())
    return content
