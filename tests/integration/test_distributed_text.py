"""Transformers through the real engine: DDP over 2 CPU processes (torchrun, gloo),
resume across world sizes, auto micro-batching, text runs end to end."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# Compares floating-point results: run again on AVX2 kernels by `make test`.
pytestmark = pytest.mark.numerics

GPT = ["--model", "gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
       "--block-size", "16", "--batch-size", "8", "--lr", "0.003", "--optimizer", "adamw",
       "--eval-every", "4", "--eval-iters", "2", "--checkpoint-every", "3", "--seed", "5",
       "--precision", "fp32", "--threads", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = ["the", "king", "queen", "speaks", "and", "runs", "to", "a", "castle", "by", "sea"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(600))
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(text)
    return path


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{cwd / 'ledger.db'}"}
    proc = subprocess.run([sys.executable, "-m", "shoestring", "train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def curve(out: Path) -> list[float]:
    return [json.loads(line)["val_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def assert_close(a: Path, b: Path, atol: float = 2e-5) -> None:
    wa, wb = weights(a), weights(b)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=1e-4, msg=k)


# Six training runs, three of them torchrun launches: minutes on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_ddp_two_processes_match_one_and_resume_across_world_sizes(tmp_path, corpus):
    data = ["--data", f"text:{corpus}"]
    run(tmp_path, *data, *GPT, "--max-steps", "12", "--out", "one")
    two = run(tmp_path, *data, *GPT, "--max-steps", "12", "--out", "two", "--nproc", "2")
    assert two.stdout.count("Run folder:") == 1  # the launcher's summary, not each worker's
    assert len(curve(tmp_path / "one")) == 3
    torch.testing.assert_close(torch.tensor(curve(tmp_path / "one")),
                               torch.tensor(curve(tmp_path / "two")), atol=1e-4, rtol=1e-4)
    assert_close(tmp_path / "one", tmp_path / "two")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["tokens_per_second"] > 0

    # Saved with 2 processes, resumed with 1 (and the other way round).
    run(tmp_path, *data, *GPT, "--max-steps", "6", "--out", "2to1", "--nproc", "2")
    run(tmp_path, *data, *GPT, "--max-steps", "12", "--out", "2to1", "--resume")
    run(tmp_path, *data, *GPT, "--max-steps", "6", "--out", "1to2")
    run(tmp_path, *data, *GPT, "--max-steps", "12", "--out", "1to2", "--resume", "--nproc", "2")
    assert_close(tmp_path / "one", tmp_path / "2to1")
    assert_close(tmp_path / "one", tmp_path / "1to2")
    # Only rank 0 wrote to the ledger: one row per run folder.
    runs = subprocess.run([sys.executable, "-m", "shoestring", "--db",
                           f"sqlite:///{tmp_path / 'ledger.db'}", "runs", "--json"],
                          capture_output=True, text=True, cwd=tmp_path)
    names = [r["name"] for r in json.loads(runs.stdout)]
    assert sorted(names) == ["1to2", "2to1", "one", "two"]


def test_auto_micro_batching_keeps_the_effective_batch(tmp_path, corpus):
    data = ["--data", f"text:{corpus}"]
    run(tmp_path, *data, *GPT, "--max-steps", "4", "--out", "whole")
    # A memory budget that holds the weights but only a few examples' activations.
    proc = run(tmp_path, *data, *GPT, "--max-steps", "4", "--out", "micro", "--max-memory",
               "0.0005")
    summary = json.loads((tmp_path / "micro" / "summary.json").read_text())
    assert 1 <= summary["micro_batch_size"] < 8 and summary["batch_size"] == 8
    assert "accumulation step(s)" in " ".join((proc.stdout + proc.stderr).split())
    assert_close(tmp_path / "whole", tmp_path / "micro", atol=1e-5)


def test_gpt_run_writes_tokenizer_and_generates(tmp_path, corpus):
    run(tmp_path, "--data", f"text:{corpus}", *GPT, "--max-steps", "3", "--out", "lm")
    s = json.loads((tmp_path / "lm" / "summary.json").read_text())
    assert {"tokens_per_second", "val_loss", "mfu", "flops_per_token"} <= set(s)
    assert (tmp_path / "lm" / "tokenizer.json").exists()
    gen = subprocess.run([sys.executable, "-m", "shoestring", "generate", "lm", "--prompt", "the",
                          "--max-new-tokens", "5", "--seed", "1"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.strip().startswith("the")
