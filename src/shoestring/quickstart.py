"""``shoestring quickstart``: the whole path on the embedded digits data.

Each stage adds its step here and returns its numbers; the CLI renders them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shoestring.ledger.runs import RunLedger
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.reporter import Reporter

# Digits has 1,437 training images; 30 epochs of the seed MLP take a few
# seconds here and reach ~97% test accuracy (10 epochs stop near 93%).
QUICKSTART_EPOCHS = 30


def quickstart(out_root: Path, *, ledger: RunLedger | None = None,
               reporter: Reporter | None = None) -> dict[str, Any]:
    """Train the seed MLP on digits and return a table of what it cost."""
    t0 = time.perf_counter()
    out = out_root / f"quickstart-seed-mlp-digits-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = resolve_config({"model": {"name": "seed-mlp"}, "data": {"source": "digits"},
                          "train": {"epochs": QUICKSTART_EPOCHS, "batch_size": 128, "lr": 1e-3,
                                    "optimizer": "adam", "seed": 0},
                          "out": str(out)})
    result = train(cfg, ledger=ledger, reporter=reporter)
    s = result.summary
    return {
        "stages": [{
            "stage": "train", "what": "seed-mlp on digits",
            "result": f"test_accuracy {s['test_accuracy']:.4f}",
            "seconds": s["train_seconds"], "cost_usd": s["cost_usd"], "where": str(result.out_dir),
        }],
        "total_seconds": time.perf_counter() - t0,
    }
