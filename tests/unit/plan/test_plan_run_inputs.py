"""Planning a Shoestring run: `plan run.toml`, `plan runs/x`, `plan runs/x/config.toml`.

Each plans the run's own model *and* workload (issue 16, item 8): a run of
batch 12 is planned at batch 12, not at the pre-training default of ~0.5M tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoestring.errors import ShoestringError
from shoestring.plan.api import plan
from shoestring.plan.config import resolve_plan_config
from shoestring.plan.specs import count_params

LLAMA_FRAGMENT = """
[model]
name = "gpt"
n_layer = 4
n_head = 4
n_kv_head = 2
n_embd = 128
norm = "rmsnorm"
mlp = "swiglu"
pos = "rope"
bias = false
tie_embeddings = false
"""


def _plan(ref: Path | str, **fields):
    return plan(resolve_plan_config({"model": str(ref), "hardware": ("cpu-local",), **fields}))


def test_a_table_run_toml_is_planned_from_its_data_shape_and_train_section(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\nname = "seed-mlp"\n[data]\nsource = "digits"\n'
                    '[train]\nepochs = 3\nbatch_size = 64\noptimizer = "sgd"\n')
    r = _plan(toml)
    assert r.spec.widths == (64, 128, 64, 10)          # digits: 8×8 pixels, 10 classes
    assert r.workload.global_batch == 64
    # 3 epochs of ceil(1437 / 64) = 23 steps (1437: 80% of sklearn's 1797 digits)
    assert r.workload.steps == 3 * 23 and r.workload.total_units == 3 * 23 * 64
    assert r.config.optimizer == "sgd"


def test_a_llama_model_fragment_without_text_data_still_plans(tmp_path):
    toml = tmp_path / "llama.toml"
    toml.write_text(LLAMA_FRAGMENT)
    r = _plan(toml)
    assert (r.spec.layers, r.spec.kv_heads, r.spec.mlp, r.spec.vocab_size) == (4, 2, "swiglu", 256)
    assert any("byte tokenizer" in n for n in r.notes)
    assert r.options[0].fits


def test_a_text_run_plans_its_vocabulary_batch_and_steps(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n" * 20_000)   # 446 steps per epoch
    toml = tmp_path / "lm.toml"
    toml.write_text(LLAMA_FRAGMENT + f'[data]\nsource = "text:{corpus}"\ntokenizer = "char"\n'
                    '[train]\nbatch_size = 12\nmax_steps = 300\n')
    r = _plan(toml)
    assert r.spec.vocab_size == len(set("to be or not to be\n"))
    assert r.workload.global_batch == 12 and r.workload.seq_len == 64
    assert r.workload.total_units == 300 * 12 * 64
    assert r.workload.steps == 300


def _fake_run(folder: Path) -> None:
    """A finished gpt-nano run of batch 12 (model card, config.toml, summary.json)."""
    from cards import card_for

    from shoestring.models.presets import GPT_PRESETS
    from shoestring.train.config import resolve_config

    folder.mkdir()
    arch = {"family": "gpt", "name": "gpt-nano", "params": GPT_PRESETS["gpt-nano"].to_dict()}
    (folder / "model.json").write_text(json.dumps(
        card_for(arch, task="language_modeling").to_json_dict()))
    (folder / "config.toml").write_text(resolve_config({
        "model": {"name": "gpt-nano"}, "data": {"source": "text:missing.txt"},
        "train": {"batch_size": 12, "precision": "bf16"}}).to_toml())
    (folder / "summary.json").write_text(json.dumps({"steps": 300}))


@pytest.mark.parametrize("ref", ["runs/lm", "runs/lm/config.toml"])
def test_a_run_folder_or_its_config_plans_the_runs_batch(tmp_path, ref):
    _fake_run(_mk(tmp_path))
    r = _plan(tmp_path / ref)
    assert r.workload.global_batch == 12          # not 524288 // 64 = 8192
    assert r.workload.total_units == 300 * 12 * 64
    assert count_params(r.spec).total == 834_304   # gpt-nano at its 256-token vocabulary
    assert r.config.precision == "bf16"


def _mk(tmp_path: Path) -> Path:
    (tmp_path / "runs").mkdir(exist_ok=True)
    return tmp_path / "runs" / "lm"


def test_flags_win_over_the_runs_values(tmp_path):
    _fake_run(_mk(tmp_path))
    r = _plan(tmp_path / "runs" / "lm", batch_size=24, tokens=1e6, precision="fp32")
    assert r.workload.global_batch == 24 and r.workload.total_units == 1e6
    assert r.config.precision == "fp32"


def test_a_run_toml_with_a_missing_corpus_is_a_clear_error(tmp_path):
    toml = tmp_path / "lm.toml"
    toml.write_text('[model]\nname = "gpt-nano"\n[data]\nsource = "text:nowhere.txt"\n')
    with pytest.raises(ShoestringError, match="does not exist"):
        _plan(toml)
