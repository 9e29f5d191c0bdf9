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
from shoestring.train.evaluate import headline
from shoestring.train.reporter import Reporter

# Digits has 1,437 training images; 30 epochs of the seed MLP take a few
# seconds here and reach ~97% test accuracy (10 epochs stop near 93%).
QUICKSTART_EPOCHS = 30
# gpt-nano on a 220 kB Shakespeare excerpt: enough steps for the loss to fall
# from ~4.4 (uniform over the characters) to ~2.3, in well under a minute.
LM_STEPS = 300


def corpus_path() -> Path:
    return Path(str(resources.files("shoestring.data") / "corpora" / "shakespeare-excerpt.txt"))


def _train_stage(cfg_dict: dict, what: str, ledger, reporter) -> dict[str, Any]:
    result = train(resolve_config(cfg_dict), ledger=ledger, reporter=reporter)
    s = result.summary
    return {"stage": "train", "what": what, "result": headline(s),
            "seconds": s["train_seconds"], "cost_usd": s["cost_usd"],
            "where": str(result.out_dir), "summary": s}


def _serve_stage(run_dir: Path, out_root: Path, ledger: RunLedger | None) -> dict[str, Any]:
    """Serve the digits model on 127.0.0.1, make one paid request, read back its metering."""
    from sklearn.datasets import load_digits

    from shoestring.serve.demo import serve_demo

    t0 = time.perf_counter()
    db_url = ledger.url if ledger is not None else \
        f"sqlite:///{(out_root / 'ledger.db').resolve()}"
    demo = serve_demo(run_dir, db_url, rows=[load_digits().data[0].tolist()])
    u = demo["usage"]
    return {"stage": "serve", "what": f"{demo['model']} over HTTP, key {demo['key_prefix']}…",
            "result": f"predicted {demo['prediction'][0]}; metered {u['requests']} request, "
                      f"{u['units']} unit, ${u['cost_usd']:.4f}",
            "seconds": time.perf_counter() - t0, "cost_usd": 0.0, "where": demo["url"]}


def _report_stage(runs: list[Path], out: Path) -> dict[str, Any]:
    """One self-contained HTML page of the quickstart's runs, to open in a browser."""
    from shoestring.report import ReportConfig, write_report

    r = write_report(ReportConfig(runs=runs, out=out, title="Shoestring quickstart"))
    return {"stage": "report", "what": f"{len(runs)} runs in one HTML page",
            "result": f"{r.bytes / 1024:,.0f} KiB, {len(r.sections)} sections",
            "seconds": r.seconds, "cost_usd": 0.0, "where": str(r.path)}


def quickstart(out_root: Path, *, ledger: RunLedger | None = None,
               reporter: Reporter | None = None, lm_steps: int = LM_STEPS) -> dict[str, Any]:
    """Train the seed MLP on digits, serve it with a metered key, train a tiny GPT on
    Shakespeare and write an HTML report of the runs; return what each stage cost."""
    t0 = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stages = [_train_stage(
        {"model": {"name": "seed-mlp"}, "data": {"source": "digits"},
         "train": {"epochs": QUICKSTART_EPOCHS, "batch_size": 128, "lr": 1e-3,
                   "optimizer": "adam", "seed": 0},
         "out": str(out_root / f"quickstart-seed-mlp-digits-{stamp}")},
        "seed-mlp on digits", ledger, reporter)]
    stages.append(_serve_stage(Path(stages[0]["where"]), out_root, ledger))
    if lm_steps > 0:
        lm = _train_stage(
            {"model": {"name": "gpt-nano"},
             "data": {"source": f"text:{corpus_path()}", "tokenizer": "char"},
             "train": {"batch_size": 12, "max_steps": lm_steps, "lr": 1e-3,
                       "optimizer": "adamw", "seed": 0, "eval_iters": 10},
             "out": str(out_root / f"quickstart-gpt-nano-shakespeare-{stamp}")},
            "gpt-nano on a Shakespeare excerpt", ledger, reporter)
        lm["result"] += f", {lm['summary']['tokens_per_second']:,.0f} tokens/s"
        stages.append(lm)
    stages.append(_report_stage([Path(s["where"]) for s in stages if s["stage"] == "train"],
                                out_root / f"quickstart-report-{stamp}.html"))
    return {"stages": stages, "total_seconds": time.perf_counter() - t0,
            "report": stages[-1]["where"]}
