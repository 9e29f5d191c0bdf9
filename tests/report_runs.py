"""Hand-made run folders for the report tests, in the run-folder contract's formats
(a unique module name: tests/ has no packages).

Each artifact follows its documented format: metrics.jsonl and summary.json as the
training engine writes them, compress/candidates.json as docs/compress.md, audit/ as
docs/audit.md, and a prepared folder's report.json as data/prepare/report.py.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from cards import card_for
from idx_files import write_idx_dir

MLP = {"family": "mlp", "name": "seed-mlp",
       "params": {"in_features": 64, "hidden": [32], "out_features": 10, "activation": "relu"}}

CONFIG = """out = "{out}"
name = "{name}"

[model]
name = "seed-mlp"

[data]
source = "{source}"

[train]
epochs = 3
batch_size = 32
optimizer = "adam"
lr = 0.001
price_per_hour = {price}
"""


def metrics_lines(steps: int, every: int = 1, seconds_per_step: float = 0.01) -> list[str]:
    lines = []
    for s in range(every, steps + 1, every):
        loss = 2.3 * math.exp(-s / max(steps / 4, 1)) + 0.1 + 0.05 * math.sin(s)
        lines.append(json.dumps({"step": s, "epoch": round(s / 10, 4),
                                 "elapsed_seconds": round(s * seconds_per_step, 4),
                                 "train_loss": loss, "val_loss": loss * 1.1,
                                 "val_accuracy": 1 - loss / 2.5}))
    return lines


def write_run(path: Path, *, steps: int = 30, every: int = 1, finished: bool = True,
              price: float = 1.2, source: str = "digits", corrupt_line: int | None = None,
              name: str | None = None) -> Path:
    """A finished (or, with ``finished=False``, still training) classification run."""
    path.mkdir(parents=True, exist_ok=True)
    name = name or path.name
    lines = metrics_lines(steps, every)
    if corrupt_line is not None:
        lines.insert(corrupt_line - 1, '{"step": 5, "train_lo')   # cut short by kill -9
    (path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    (path / "config.toml").write_text(CONFIG.format(out=path, name=name, source=source,
                                                    price=price))
    (path / "run.json").write_text(json.dumps({"id": f"id-{name}"}))
    if not finished:
        return path
    card = card_for(MLP).to_json_dict()
    (path / "model.json").write_text(json.dumps(card))
    seconds = steps * 0.01
    (path / "summary.json").write_text(json.dumps({
        "run_id": f"id-{name}", "name": name, "model": "seed-mlp", "data": source,
        "task": "classification", "status": "finished", "stop_reason": "all epochs done",
        "steps": steps, "epochs_run": steps / 10, "batch_size": 32, "train_seconds": seconds,
        "samples_per_second": 3200.0, "cost_usd": seconds * price / 3600,
        "price_per_hour": price, "parameters": 2410, "device": "cpu", "device_name": "cpu",
        "peak_memory_bytes": 300 * 2**20, "threads": 1, "test_accuracy": 0.93,
        "baseline_test_accuracy": 0.1, "test_loss": 0.21, "train_loss": 0.15,
        "seconds": {"startup": 1.2, "data": 0.4, "train": seconds, "eval": 0.05,
                    "write": 0.02}}))
    return path


def _png(side: int = 24) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(side * side * 3).reshape(side, side, 3) % 255)
                    .astype("uint8")).save(buf, format="PNG")
    return buf.getvalue()


def add_compress_table(run: Path, parent: Path) -> None:
    def row(name, size, p50, metric, chosen=False, pareto=False, flags=()):
        return {"name": name, "methods": [] if name == "float32" else [name],
                "is_parent": name == "float32", "size_bytes": size, "params": 2410,
                "latency": {"1": {"p50_ms": p50, "p95_ms": p50 * 1.3,
                                  "throughput_per_s": 1000 / p50, "calls": 500},
                            "32": {"p50_ms": p50 * 4, "p95_ms": p50 * 5,
                                   "throughput_per_s": 32000 / (p50 * 4), "calls": 100}},
                "metric": metric, "metric_drop": (0.93 - metric) * 100,
                "size_ratio": 10000 / size, "speedup": {"1": 0.04 / p50, "32": 0.04 / p50},
                "tokens_per_second": None, "kept_float": [], "transforms": [],
                "flags": list(flags), "pareto": pareto, "chosen": chosen, "notes": []}
    table = {"format": "shoestring.compress.candidates/1",
             "parent": {"dir": str(parent), "run_id": "id-parent"},
             "metric": "test_accuracy", "higher_is_better": True, "max_drop": 0.5,
             "drop_unit": "points", "target": "cpu", "threads": 1, "batch_sizes": [1, 32],
             "chosen": "dynamic-int8",
             "candidates": [row("float32", 10000, 0.04, 0.93, pareto=True),
                            row("onnx-fp32", 10100, 0.022, 0.93, pareto=True),
                            row("dynamic-int8", 2900, 0.019, 0.929, chosen=True, pareto=True),
                            row("prune-0.5", 5100, 0.03, 0.90,
                                flags=["over the accuracy budget"])]}
    (run / "compress").mkdir(parents=True, exist_ok=True)
    (run / "compress" / "candidates.json").write_text(json.dumps(table))


def add_audit(run: Path) -> None:
    audit = run / "audit"
    (audit / "heatmaps").mkdir(parents=True, exist_ok=True)
    (audit / "heatmaps" / "000.png").write_bytes(_png())
    (audit / "surrogate.txt").write_text("|--- pixel_36 <= 0.50\n|   |--- class: 0\n")
    (audit / "model_card.md").write_text("# Model card: seed-mlp\n\nIntended use: digits.\n")
    metric = {"value": 0.91, "ci": [0.88, 0.94]}
    (audit / "fairness.json").write_text(json.dumps({
        "groups": [{"group": "a", "n": 120, "too_small": False,
                    "metrics": {"accuracy": metric}},
                   {"group": "b", "n": 80, "too_small": False,
                    "metrics": {"accuracy": {"value": 0.86, "ci": [0.8, 0.92]}}}],
        "gaps": {"accuracy": {"value": 0.05, "ci": [0.0, 0.11], "highest": "a",
                              "lowest": "b"}},
        "warnings": ["group 'c' has 3 examples (fewer than 30): too small to judge"]}))


def write_prepared(path: Path) -> Path:
    """A prepared folder's report.json over a small IDX source (for thumbnails)."""
    idx = write_idx_dir(path / "idx", n_train=40, n_test=10)
    origin = "train-images-idx3-ubyte.gz"
    report = {
        "source": f"idx:{idx}", "kind": "images", "input": 50, "kept": 45,
        "dropped": {"invalid": 1, "exact_duplicate": 2, "near_duplicate": 1,
                    "label_issue": 1, "test_overlap": 0},
        "accounting": {"input": 50, "kept": 45, "dropped_total": 5, "holds": True,
                       "equation": "50 = 45 kept + 1 invalid + 2 exact_duplicate + "
                                   "1 near_duplicate + 1 label_issue"},
        "invalid_reasons": {"bad_shape": 1}, "pii": {"email": 2},
        "pii_summary": {"mode": "report", "records_with_pii": 2},
        "clusters": {"total": 1, "exact": {"clusters": 1, "records": 3},
                     "near": {"clusters": 0, "records": 0},
                     "examples": [{"size": 3, "kind": "exact", "review": False,
                                   "kept": [f"{origin}#1"],
                                   "members": [{"origin": f"{origin}#{i}", "action": a,
                                                "duplicate_of": None, "similarity": 1.0}
                                               for i, a in ((1, "kept"),
                                                            (2, "exact_duplicate"),
                                                            (3, "exact_duplicate"))]}]},
        "label_issues": {"found": 1, "removed": 1, "scored": 45,
                         "examples": [{"origin": f"{origin}#7", "given": "1",
                                       "suggested": "3", "confidence": 0.91}]},
        "splits": {"train": 36, "val": 4, "test": 5}, "notes": ["a note from prepare"]}
    out = path / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report))
    return out
