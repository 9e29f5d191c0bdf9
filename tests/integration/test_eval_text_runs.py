"""``eval`` for every text model (issue 16 item 6): an encoder trained on jsonl: with its
own label field, one trained on prepared:, and a GPT on text: (loss and perplexity)."""

from __future__ import annotations

import json
import math
import random

import pytest
from click.testing import CliRunner

from shoestring.cli.main import build_cli
from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.evaluate_run import evaluate_run

TOPICS = {"sport": ["goal", "match", "team", "score"], "food": ["bake", "flour", "sugar", "oven"],
          "tech": ["code", "server", "chip", "cloud"]}


def write_docs(path, n=150, label="topic", text="body"):
    rng = random.Random(0)
    names = sorted(TOPICS)
    with open(path, "w") as f:
        for i in range(n):
            t = names[i % 3]
            words = " ".join(rng.choice(TOPICS[t]) for _ in range(8))
            f.write(json.dumps({text: f"{words} id{i}", label: t}) + "\n")


def encoder(source, out, **data):
    return train(resolve_config({"model": {"name": "encoder", "n_layer": 1, "n_embd": 16,
                                           "n_head": 2},
                                 "data": {"source": source, **data},
                                 "train": {"max_steps": 15, "batch_size": 16},
                                 "out": str(out)}), handle_signals=False)


def test_encoder_from_jsonl_evaluates_with_its_own_label_field(isolated_env):
    write_docs(isolated_env / "docs.jsonl")
    run = encoder("jsonl:docs.jsonl", isolated_env / "enc", text_field="body",
                  label_field="topic")
    metrics = evaluate_run(run.out_dir)
    assert metrics["test_accuracy"] == pytest.approx(run.summary["test_accuracy"])
    assert metrics["baseline_test_accuracy"] == pytest.approx(1 / 3, abs=0.05)
    # Other data with other field names: the flags the hint names exist on eval.
    write_docs(isolated_env / "other.jsonl", n=60, label="kind", text="words")
    r = CliRunner().invoke(build_cli(), ["eval", str(run.out_dir), "--data", "jsonl:other.jsonl",
                                         "--json"], catch_exceptions=False)
    assert r.exit_code == 1 and "--label" in r.output
    r = CliRunner().invoke(build_cli(), ["eval", str(run.out_dir), "--data", "jsonl:other.jsonl",
                                         "--label", "kind", "--text-field", "words",
                                         "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["examples"] > 0


def test_encoder_from_prepared_evaluates(isolated_env):
    write_docs(isolated_env / "docs.jsonl")
    prepare(resolve_prepare_config({"source": "jsonl:docs.jsonl", "out": isolated_env / "prep",
                                    "text_field": "body", "label_field": "topic",
                                    "near": False, "label_issues": False}))
    run = encoder(f"prepared:{isolated_env / 'prep'}", isolated_env / "encp")
    metrics = evaluate_run(run.out_dir)
    assert metrics["test_accuracy"] == pytest.approx(run.summary["test_accuracy"])
    splits = json.loads((isolated_env / "prep" / "report.json").read_text())["splits"]
    assert metrics["examples"] == splits["test"]


def test_gpt_run_reports_loss_and_perplexity(isolated_env):
    (isolated_env / "corpus.txt").write_text(
        "".join(f"ROMEO:\nwords of line {i} and more words\n\n" for i in range(300)))
    run = train(resolve_config({"model": {"name": "gpt-nano", "n_layer": 1, "n_embd": 32,
                                          "n_head": 2, "block_size": 32},
                                "data": {"source": "text:corpus.txt"},
                                "train": {"max_steps": 10, "batch_size": 4, "eval_iters": 5},
                                "out": str(isolated_env / "lm")}), handle_signals=False)
    metrics = evaluate_run(run.out_dir)
    assert metrics["split"] == "val" and metrics["tokens_scored"] > 0
    assert metrics["val_ppl"] == pytest.approx(math.exp(metrics["val_loss"]))
    # The exact pass agrees with training's estimate from random windows.
    assert metrics["val_loss"] == pytest.approx(run.summary["val_loss"], rel=0.05)
    train_metrics = evaluate_run(run.out_dir, split="train")
    assert "train_loss" in train_metrics
    r = CliRunner().invoke(build_cli(), ["eval", str(run.out_dir)], catch_exceptions=False)
    assert r.exit_code == 0 and "val_ppl" in r.output and "train it with model" not in r.output
