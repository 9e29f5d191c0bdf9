"""``shoestring quickstart``: the whole path on embedded data.

Each stage adds its step here and returns its numbers; the CLI renders them.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from shoestring.ledger.runs import RunLedger
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.reporter import Reporter

# Digits has 1,437 training images; 30 epochs of the seed MLP take a few
# seconds here and reach ~97% test accuracy (10 epochs stop near 93%).
QUICKSTART_EPOCHS = 30
# gpt-nano on a 220 kB Shakespeare excerpt: enough steps for the loss to fall
# from ~4.4 (uniform over the characters) to ~2.3, in well under a minute.
LM_STEPS = 300


def corpus_path() -> Path:
    return Path(str(resources.files("shoestring.data") / "corpora" / "shakespeare-excerpt.txt"))


def _train_stage(cfg_dict: dict, what: str, metric: str, ledger, reporter) -> dict[str, Any]:
    result = train(resolve_config(cfg_dict), ledger=ledger, reporter=reporter)
    s = result.summary
    return {"stage": "train", "what": what, "result": f"{metric} {s[metric]:.4f}",
            "seconds": s["train_seconds"], "cost_usd": s["cost_usd"],
            "where": str(result.out_dir), "summary": s}


def quickstart(out_root: Path, *, ledger: RunLedger | None = None,
               reporter: Reporter | None = None, lm_steps: int = LM_STEPS) -> dict[str, Any]:
    """Train the seed MLP on digits (and a tiny GPT on Shakespeare); return what it cost."""
    t0 = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stages = [_train_stage(
        {"model": {"name": "seed-mlp"}, "data": {"source": "digits"},
         "train": {"epochs": QUICKSTART_EPOCHS, "batch_size": 128, "lr": 1e-3,
                   "optimizer": "adam", "seed": 0},
         "out": str(out_root / f"quickstart-seed-mlp-digits-{stamp}")},
        "seed-mlp on digits", "test_accuracy", ledger, reporter)]
    if lm_steps > 0:
        lm = _train_stage(
            {"model": {"name": "gpt-nano"},
             "data": {"source": f"text:{corpus_path()}", "tokenizer": "char"},
             "train": {"batch_size": 12, "max_steps": lm_steps, "lr": 1e-3,
                       "optimizer": "adamw", "seed": 0, "eval_iters": 10},
             "out": str(out_root / f"quickstart-gpt-nano-shakespeare-{stamp}")},
            "gpt-nano on a Shakespeare excerpt", "val_loss", ledger, reporter)
        lm["result"] += f", {lm['summary']['tokens_per_second']:,.0f} tokens/s"
        stages.append(lm)
    return {"stages": stages, "total_seconds": time.perf_counter() - t0}
