"""Fine-tuning through the real trainer: warm starts from runs and Hugging Face checkpoints,
LoRA and merged adapters, memory savers, and the errors of bad recipes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from shoestring.errors import ConfigError, ShoestringError
from shoestring.models.run_folder import load_run
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.hooks import TrainHooks

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\n") * 60
LLAMA = {"name": "llama-nano", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_kv_head": 1,
         "block_size": 32}


def cfg(tmp_path: Path, out: str, model: dict | None = None, **train_section):
    (tmp_path / "c.txt").write_text(TEXT)
    return resolve_config({"model": model or {}, "out": str(tmp_path / out),
                           "data": {"source": f"text:{tmp_path / 'c.txt'}", "tokenizer": "byte"},
                           "train": {"max_steps": 3, "batch_size": 4, "eval_iters": 1,
                                     # runs are compared: no load-dependent thread count
                                     "threads": 1, **train_section}})


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("base")
    train(cfg(tmp, "base", LLAMA, max_steps=4), ledger=None, workspace=tmp)
    return tmp / "base"


def _capture():
    start = {}

    def setup(parts):
        start.update({k: v.detach().clone() for k, v in parts.model.state_dict().items()})
        return parts
    return start, TrainHooks(setup=setup)


def test_lora_trains_adapters_saved_alone_and_merge_gives_the_same_model(tmp_path, base):
    start, hooks = _capture()
    lora = train(cfg(tmp_path, "lora", finetune="lora", lora_rank=4, lora_targets="q,v,down",
                     lr=0.01), init_from=base, hooks=hooks, ledger=None, workspace=tmp_path)
    assert set(start) == {k for k in start if ".lora_" in k}  # only adapters in its state
    adapter = load_run(lora.out_dir)
    weights = lora.out_dir / "model.safetensors"
    assert weights.stat().st_size * 5 < (base / "model.safetensors").stat().st_size
    record = adapter.card.transforms[-1]
    assert record.kind == "lora" and record.config["base"] == str(base.resolve())
    assert adapter.card.lineage.parent_dir == str(base.resolve())
    base_model = load_run(base).model
    for name, p in base_model.state_dict().items():  # the base is untouched
        torch.testing.assert_close(adapter.model.get_parameter(name)
                                   if "weight" in name else p, p, msg=name)
    merged = train(cfg(tmp_path, "merged", finetune="lora", lora_rank=4,
                       lora_targets="q,v,down", lr=0.01, merge=True),
                   init_from=base, ledger=None, workspace=tmp_path)
    whole = load_run(merged.out_dir)
    assert not whole.card.transforms and not any(".lora_" in k for k in
                                                  whole.model.state_dict())
    x = torch.randint(0, 256, (2, 32))
    with torch.no_grad():  # same seed, same steps: the merged run is the adapter run, folded
        torch.testing.assert_close(whole.model(x)[0], adapter.model(x)[0], rtol=1e-4,
                                   atol=1e-5)


def test_full_fine_tune_starts_from_the_base_weights(tmp_path, base):
    start, hooks = _capture()
    train(cfg(tmp_path, "full", finetune="full"), init_from=base, hooks=hooks, ledger=None,
          workspace=tmp_path)
    for name, p in load_run(base).model.state_dict().items():
        assert torch.equal(start[name], p), name


def test_memory_savers_train_to_the_same_weights(tmp_path, base):
    # fp32 on both sides: the chunked loss multiplies the head itself, outside the
    # bf16-matmul path that auto takes for a GPT on a CPU with native bf16.
    plain = train(cfg(tmp_path, "plain", finetune="full", optimizer="adamw", precision="fp32"),
                  init_from=base, ledger=None, workspace=tmp_path)
    saved = train(cfg(tmp_path, "savers", finetune="full", optimizer="adamw", precision="fp32",
                      optimizer_in_backward=True, loss_chunks=4, offload_activations=True),
                  init_from=base, ledger=None, workspace=tmp_path)
    a, b = load_run(plain.out_dir).model, load_run(saved.out_dir).model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    assert saved.summary["val_loss"] == pytest.approx(plain.summary["val_loss"], rel=1e-4)


def test_bf16_true_saves_bf16_weights_that_load(tmp_path, base):
    result = train(cfg(tmp_path, "bf16", finetune="full", precision="bf16-true"),
                   init_from=base, ledger=None, workspace=tmp_path)
    run = load_run(result.out_dir)
    assert [t.kind for t in run.card.transforms] == ["cast"]
    assert all(p.dtype == torch.bfloat16 for p in run.model.parameters())
    assert result.summary["precision"] == "bf16-true"


def test_a_fine_tune_keeps_the_base_shape_and_names_a_conflict(tmp_path, base):
    with pytest.raises(ConfigError, match="model.n_embd = 64 \\(the base has 32\\)") as err:
        train(cfg(tmp_path, "wide", {"n_embd": 64}, finetune="full"), init_from=base,
              ledger=None, workspace=tmp_path)
    assert "leave these [model] fields unset" in err.value.hint


@pytest.mark.parametrize("settings,message", [
    ({"finetune": "lora"}, "--finetune lora fine-tunes a model: name it with --init-from"),
    ({"merge": True}, "--merge folds LoRA adapters"),
    ({"optimizer_in_backward": True, "grad_clip": 1.0}, "grad_clip"),
    ({"optimizer_in_backward": True, "micro_batch_size": 2}, "cannot accumulate"),
    ({"optimizer": "paged-adam8bit"}, "nothing to page"),
])
def test_recipes_that_cannot_run_are_refused_before_training(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        train(cfg(tmp_path, "bad", LLAMA, **settings), ledger=None, workspace=tmp_path)
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_bad_lora_targets_list_the_real_ones(tmp_path, base):
    with pytest.raises(ShoestringError, match="'wq' does not exist") as err:
        train(cfg(tmp_path, "t", finetune="lora", lora_targets="q,wq"), init_from=base,
              ledger=None, workspace=tmp_path)
    assert "q, k, v, o, gate, up, down" in err.value.hint


def test_qlora_without_bitsandbytes_says_what_to_install(tmp_path, base, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ShoestringError, match="bitsandbytes is not installed") as err:
        train(cfg(tmp_path, "q", finetune="qlora"), init_from=base, ledger=None,
              workspace=tmp_path)
    assert "shoestring[quant]" in err.value.hint and "--finetune lora" in err.value.hint


def test_adam8bit_without_bitsandbytes_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ShoestringError, match="adam8bit.*needs bitsandbytes"):
        train(cfg(tmp_path, "o", LLAMA, optimizer="adam8bit"), ledger=None, workspace=tmp_path)


def test_init_from_a_folder_that_is_no_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShoestringError, match="neither a run folder nor a run") as err:
        train(cfg(tmp_path, "x", finetune="full"), init_from=tmp_path / "empty", ledger=None,
              workspace=tmp_path)
    assert "Hugging Face checkpoint" in err.value.hint


def test_offload_is_a_noop_on_cpu_and_says_so(tmp_path, base):
    from shoestring.train.reporter import SilentReporter

    class Notes(SilentReporter):
        lines: list[str] = []

        def log(self, message: str) -> None:
            self.lines.append(message)

    reporter = Notes()
    train(cfg(tmp_path, "off", finetune="full", offload_activations=True), init_from=base,
          ledger=None, workspace=tmp_path, reporter=reporter)
    assert any("no-op on a CPU" in line for line in reporter.lines)
    assert any(line.startswith("trainable parameters:") for line in reporter.lines)


def test_summary_and_config_record_the_recipe(tmp_path, base):
    result = train(cfg(tmp_path, "rec", finetune="lora", lora_rank=2), init_from=base,
                   ledger=None, workspace=tmp_path)
    saved = (result.out_dir / "config.toml").read_text()
    assert 'finetune = "lora"' in saved and "lora_rank = 2" in saved
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["kind"] == "finetune"
    # LoRA rank 2 on q, k, v, o of one 32-wide layer (kv heads 16 wide): A is r×in, B out×r.
    assert summary["trainable_parameters"] == 2 * (32 + 32) + 2 * 2 * (32 + 16) + 2 * (32 + 32)
    assert summary["trainable_parameters"] < summary["parameters"] / 10


def test_serve_runs_an_adapter_over_its_base(tmp_path, base):
    from fastapi.testclient import TestClient

    from shoestring.models.generate import generate_text
    from shoestring.serve.app import serving_app
    from shoestring.serve.config import resolve_serve_config
    from shoestring.serve.keys import KeyStore
    from shoestring.serve.service import Service

    lora = train(cfg(tmp_path, "lora", finetune="lora", lora_rank=4, lr=0.05), init_from=base,
                 ledger=None, workspace=tmp_path)
    svc = Service(resolve_serve_config({"models": [{"run_dir": lora.out_dir, "name": "romeo"}],
                                        "db": f"sqlite:///{tmp_path / 'serve.db'}",
                                        "max_new_tokens": 6, "key_cache_seconds": 0}))
    secret, _ = KeyStore(svc.engine, svc.plans).create(project="p", plan="pro")
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["ROMEO:"]}]}
    with TestClient(serving_app(svc)) as c:
        r = c.post("/v2/models/romeo/infer", json=body,
                   headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    served = r.json()["outputs"][0]["data"][0]
    # The same run through generate (greedy): the adapters are applied in both.
    assert served == generate_text(lora.out_dir, "ROMEO:", max_new_tokens=6,
                                   temperature=0).completion


def test_qlora_and_8bit_adam_train_where_bitsandbytes_runs(tmp_path, base):
    pytest.importorskip("bitsandbytes")
    result = train(cfg(tmp_path, "qlora", finetune="qlora", lora_rank=4, optimizer="adam8bit",
                       lr=0.01), init_from=base, ledger=None, workspace=tmp_path)
    assert result.summary["val_loss"] == pytest.approx(result.summary["val_loss"])  # finite
    run = load_run(result.out_dir)
    from shoestring.models.lora import lora_layers

    layers = lora_layers(run.model)
    assert layers and all(layer.quantized for _, layer in layers)  # rebuilt over a 4-bit base
    ckpt = next((result.out_dir / "checkpoints").glob("ckpt-*.safetensors"))
    from safetensors import safe_open

    names = list(safe_open(str(ckpt), "pt").keys())
    assert any(n.endswith("/state1") for n in names)  # 8-bit moments in the checkpoint
    assert not any(n.startswith("model.") and ".lora_" not in n for n in names)


def test_a_lora_run_resumes_from_its_small_checkpoints(tmp_path, base):
    first = train(cfg(tmp_path, "r", finetune="lora", max_steps=2, checkpoint_every=1),
                  init_from=base, ledger=None, workspace=tmp_path)
    more = cfg(tmp_path, "r", finetune="lora", max_steps=4, checkpoint_every=1)
    resumed = train(more.model_copy(update={"resume": True}), init_from=base, ledger=None,
                    workspace=tmp_path)
    assert (first.summary["steps"], resumed.summary["steps"]) == (2, 4)
    straight = train(cfg(tmp_path, "s", finetune="lora", max_steps=4, checkpoint_every=1),
                     init_from=base, ledger=None, workspace=tmp_path)
    a = load_run(resumed.out_dir).model.state_dict()
    b = load_run(straight.out_dir).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
