"""`shoestring plan` as a user runs it: real process, real files, real SQLite ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SEED_STEP_FLOPS = 58_163_200  # one seed-mlp training step at batch 128 (see test_plan_memory)


def plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{tmp_path / 'ledger.db'}",
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "shoestring", "plan", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def test_json_output_has_the_promised_fields(tmp_path):
    r = plan(tmp_path, "gpt2-124m", "--tokens", "1e9", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["params"] == 124_439_808
    assert set(d["memory"]) >= {"weights", "gradients", "optimizer", "activations", "overhead",
                                "total"}
    assert d["flops"]["total"] > 6 * 124e6 * 1e9
    best = d["options"][0]
    assert best["fits"] and best["cost_usd"] > 0 and best["hours"] > 0
    assert {"hardware", "gpus", "spot", "strategy"} <= set(best)
    costs = [o["cost_usd"] for o in d["options"] if o["fits"] and not o["substituted"]]
    # ranked by cost to finish; within 2% of each other the faster comes first
    assert all(a <= b * 1.02 for i, a in enumerate(costs) for b in costs[i + 1:])


def test_table_output_and_price_age_warning(tmp_path):
    r = plan(tmp_path, "llama-3-8b", "--finetune", "qlora", "--budget", "50", "--deadline", "10")
    assert r.returncode == 0, r.stderr
    assert "Options ranked by cost to finish" in r.stdout
    assert "qlora" in r.stdout
    assert "Fastest within budget" in r.stdout and "Cheapest within deadline" in r.stdout
    assert "older than 90 days" in r.stderr   # the shipped prices are dated


def test_user_catalog_and_serving(tmp_path):
    cat = tmp_path / "mine.toml"
    cat.write_text("""
[[device]]
name = "lab-gpu"
label = "Lab GPU"
kind = "gpu"
memory_gib = 48
bandwidth_gbs = 900
peak_tflops = { fp32 = 40.0, bf16 = 200.0 }
efficiency = 0.4
source = "datasheet"

[[price]]
device = "lab-gpu"
cloud = "lab"
instance = "box"
gpus = 1
on_demand = 0.5
date = 2026-11-01
source = "invoice"
""")
    r = plan(tmp_path, "llama-3-8b", "--serve", "--requests", "1000", "--catalog", str(cat),
             "--hardware", "lab-gpu", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {o["hardware"] for o in d["options"]} == {"lab-gpu"}
    assert d["options"][0]["fits"] and d["memory"]["phase"] == "prefill"


def test_bad_input_is_an_error_with_a_hint(tmp_path):
    r = plan(tmp_path, "gpt-17")
    assert r.returncode == 1
    assert "Error: unknown model 'gpt-17'" in r.stderr and "Hint:" in r.stderr
    r = plan(tmp_path, "gpt2-124m", "--tokens", "-5", "--gpus", "0")
    assert r.returncode == 1 and "2 problems" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[[device]]\nname = 'x'\n")
    r = plan(tmp_path, "gpt2-124m", "--catalog", str(bad))
    assert r.returncode == 1 and "catalog" in r.stderr
    assert not (tmp_path / "ledger.db").exists()   # a failed plan writes nothing


def test_calibrate_stores_probes_and_later_plans_use_them(tmp_path):
    r = plan(tmp_path, "seed-mlp", "--calibrate", "--hardware", "cpu-local", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {p["model"] for p in d["calibration"]} == {"matmul", "seed-mlp"}
    assert (tmp_path / "ledger.db").exists()
    again = json.loads(plan(tmp_path, "seed-mlp", "--hardware", "cpu-local", "--json").stdout)
    assert again["options"][0]["throughput_source"].startswith("measured")


@pytest.mark.slow
def test_trace_of_llama_3_8b_lora_runs_here(tmp_path):
    """The issue's demonstration: an 8B LoRA step traced on this CPU machine."""
    r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "shoestring", "plan",
                        "llama-3-8b", "--finetune", "lora", "--trace", "--json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
                       env={**os.environ, "SHOESTRING_DB": f"sqlite:///{tmp_path / 'l.db'}"})
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)["trace"]
    assert abs(t["flops_error"]) <= 0.02 and abs(t["memory_error"]) <= 0.10
    rss_kib = int(next(line for line in r.stderr.splitlines()
                       if "Maximum resident set size" in line).split()[-1])
    assert rss_kib < 2 * 1024 * 1024  # well under 2 GiB of real memory


def test_plan_of_a_run_config_uses_the_runs_shape_and_batch(tmp_path):
    """Issue 16 item 8: `plan run.toml` used to fail with "the run's input shape is unknown"."""
    (tmp_path / "run.toml").write_text('[model]\nname = "seed-mlp"\n[data]\nsource = "digits"\n'
                                       '[train]\nbatch_size = 12\n')
    r = plan(tmp_path, "run.toml", "--hardware", "cpu-local", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["workload"]["global_batch"] == 12 and d["config"]["batch_size"] == 12
    assert d["params"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
