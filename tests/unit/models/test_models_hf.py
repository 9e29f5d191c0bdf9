"""Hugging Face checkpoints: import and export against transformers itself (the oracle).

Each case builds a tiny randomly initialised model with ``transformers``,
saves it with ``save_pretrained``, imports it into Shoestring's modules and
requires the same logits on the same input; then exports the Shoestring model
and requires ``transformers`` to load it back to the same logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers as tf

from shoestring.errors import ShoestringError
from shoestring.models.hf.families import _rope, family_for_architecture
from shoestring.models.hf.folder import (
    export_checkpoint,
    import_checkpoint,
    inspect_checkpoint,
    is_hf_checkpoint,
)

TOL = 1e-4
VOCAB = 61
LLAMA = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "hidden_size": 32, "intermediate_size": 48, "vocab_size": VOCAB,
         "max_position_embeddings": 64}
BERT = {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 16,
        "intermediate_size": 32, "vocab_size": VOCAB, "max_position_embeddings": 32}
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}

# name → (transformers model class, config); every family and the features each maps.
CASES = {
    "gpt2": (tf.GPT2LMHeadModel, tf.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32,
                                               vocab_size=VOCAB, bos_token_id=0,
                                               eos_token_id=0)),
    "gpt2-untied": (tf.GPT2LMHeadModel, tf.GPT2Config(n_layer=1, n_head=2, n_embd=16,
                                                      n_positions=32, vocab_size=VOCAB,
                                                      n_inner=40, tie_word_embeddings=False,
                                                      bos_token_id=0, eos_token_id=0)),
    "llama-gqa": (tf.LlamaForCausalLM, tf.LlamaConfig(**LLAMA)),
    "llama3-rope-scaling": (tf.LlamaForCausalLM, tf.LlamaConfig(
        **LLAMA, rope_parameters=LLAMA3_ROPE)),
    "llama-tied-biases": (tf.LlamaForCausalLM, tf.LlamaConfig(
        **LLAMA, tie_word_embeddings=True, attention_bias=True, mlp_bias=True)),
    "mistral-sliding-window": (tf.MistralForCausalLM, tf.MistralConfig(**LLAMA, sliding_window=5)),
    "bert-base": (tf.BertModel, tf.BertConfig(**BERT)),
    "bert-classifier": (tf.BertForSequenceClassification, tf.BertConfig(
        **BERT, num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"},
        label2id={"neg": 0, "neutral": 1, "pos": 2})),
    "bert-mlm": (tf.BertForMaskedLM, tf.BertConfig(**BERT)),
}


def _inputs(seed: int = 1) -> torch.Tensor:
    # Long enough (12) to exceed Mistral's window (5); ids from 1, so BERT's pad id 0
    # does not appear and masking is not what is compared.
    return torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


def hf_output(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=idx, attention_mask=torch.ones_like(idx))
    return out.pooler_output if isinstance(model, tf.BertModel) else out.logits


def ours_output(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


def save_hf(tmp_path: Path, case: str, **save_kw) -> tuple[Path, torch.nn.Module]:
    cls, config = CASES[case]
    torch.manual_seed(0)
    model = cls(config).eval()
    folder = tmp_path / case
    model.save_pretrained(folder, **save_kw)
    return folder, model


@pytest.mark.parametrize("case", CASES)
def test_import_and_export_give_the_same_logits_as_transformers(tmp_path, case):
    folder, hf_model = save_hf(tmp_path, case)
    ours = import_checkpoint(folder)
    idx = _inputs()
    expected, got = hf_output(hf_model, idx), ours_output(ours.model, idx)
    assert got.shape == expected.shape
    err = (got - expected).abs().max().item()
    print(f"{case}: import max |logit error| {err:.2e}")
    assert err < TOL

    out = tmp_path / "exported"
    export_checkpoint(ours.model.state_dict(), ours.architecture, out,
                      class_names=ours.imported.class_names, origin=folder)
    reloaded = CASES[case][0].from_pretrained(out).eval()
    assert reloaded.config.model_type == CASES[case][1].model_type
    idx = _inputs(2)
    err = (hf_output(reloaded, idx) - ours_output(ours.model, idx)).abs().max().item()
    print(f"{case}: export max |logit error| {err:.2e}")
    assert err < TOL


def test_sliding_window_and_rope_scaling_change_the_logits(tmp_path):
    """The features are exercised, not vacuous: without them the logits differ."""
    idx = _inputs()
    for case, key in (("mistral-sliding-window", "sliding_window"),
                      ("llama3-rope-scaling", "rope_scaling")):
        ours = import_checkpoint(save_hf(tmp_path, case)[0])
        from shoestring.models.gpt import GPT, GPTConfig

        plain = GPT(GPTConfig(**{**ours.architecture["params"], key: None})).eval()
        plain.load_state_dict(ours.model.state_dict())
        assert (ours_output(plain, idx) - ours_output(ours.model, idx)).abs().max() > 1e-3


def test_bert_classifier_keeps_its_class_names(tmp_path):
    ours = import_checkpoint(save_hf(tmp_path, "bert-classifier")[0])
    assert ours.imported.class_names == ["neg", "neutral", "pos"]
    assert ours.architecture["params"]["num_classes"] == 3


def test_sharded_checkpoints_import_and_export(tmp_path):
    folder, hf_model = save_hf(tmp_path, "llama-gqa", max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").exists()
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    ours = import_checkpoint(folder)
    idx = _inputs()
    assert (hf_output(hf_model, idx) - ours_output(ours.model, idx)).abs().max() < TOL
    out = tmp_path / "sharded-out"
    files = export_checkpoint(ours.model.state_dict(), ours.architecture, out,
                              max_shard_bytes=30_000)
    shards = [f for f in files if f.name.startswith("model-")]
    assert len(shards) > 1 and (out / "model.safetensors.index.json").exists()
    reloaded = tf.LlamaForCausalLM.from_pretrained(out).eval()
    assert (hf_output(reloaded, idx) - ours_output(ours.model, idx)).abs().max() < TOL


def test_transformers_4_style_rope_fields_are_read():
    theta, scaling, problems = _rope({"rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}})
    assert theta == 500000.0 and scaling["factor"] == 8.0 and not problems
    assert _rope({"rope_scaling": {"type": "linear", "factor": 2.0}})[1] == \
        {"rope_type": "linear", "factor": 2.0}
    assert "yarn" in _rope({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})[2][0]


def test_native_llama_shapes_export_and_load(tmp_path):
    """A model trained in Shoestring (not imported) exports with its SwiGLU width worked out."""
    from shoestring.models.presets import GPT_PRESETS
    from shoestring.models.registry import build_model

    arch = {"family": "gpt", "params": GPT_PRESETS["llama-nano"].to_dict()}
    torch.manual_seed(0)
    model = build_model(arch).eval()
    export_checkpoint(model.state_dict(), arch, tmp_path / "nano")
    reloaded = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "nano").eval()
    idx = torch.randint(0, 256, (1, 20))
    assert (hf_output(reloaded, idx) - ours_output(model, idx)).abs().max() < TOL


# --- bad input ------------------------------------------------------------------------------

def test_a_folder_that_is_not_a_checkpoint_is_refused_with_a_hint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ShoestringError, match="not a Hugging Face checkpoint.*no config.json") \
            as err:
        import_checkpoint(tmp_path)
    assert "save_pretrained" in err.value.hint
    assert not is_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    with pytest.raises(ShoestringError, match="no model.safetensors"):
        import_checkpoint(tmp_path)


def test_pickled_weights_are_refused(tmp_path):
    CASES["gpt2"][1].save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ShoestringError, match="pickled weights") as err:
        import_checkpoint(tmp_path)
    assert "safetensors" in err.value.hint


def test_an_unknown_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gptj", "n_layer": 2}))
    with pytest.raises(ShoestringError, match="model_type 'gptj' is not supported") as err:
        inspect_checkpoint(tmp_path)
    assert "bert, gpt2, llama, mistral" in err.value.hint


def test_an_unsupported_feature_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "llama", **LLAMA, "head_dim": 16, "rope_scaling": {"rope_type": "yarn"}}))
    with pytest.raises(ShoestringError, match="head_dim 16.*|yarn") as err:
        inspect_checkpoint(tmp_path)
    assert "head_dim 16" in err.value.message and "'yarn'" in err.value.message


def test_a_shape_mismatch_lists_the_tensors(tmp_path):
    folder, _ = save_hf(tmp_path, "llama-gqa")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 64  # the weights have 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ShoestringError, match="shape mismatch.*gate_proj.weight is \\[48, 32\\] "
                       "in the weights but \\[64, 32\\] by config.json") as err:
        import_checkpoint(folder)
    assert "disagree" in err.value.hint


def test_a_missing_shard_is_named(tmp_path):
    folder, _ = save_hf(tmp_path, "gpt2", max_shard_size="20KB")
    shard = max(folder.glob("model-*.safetensors"))
    shard.unlink()
    with pytest.raises(ShoestringError, match=f"shards that are not in the folder.*{shard.name}"):
        import_checkpoint(folder)


def test_export_refuses_a_model_with_no_hf_family():
    arch = {"family": "gpt", "params": {"pos": "rope", "norm": "layernorm", "mlp": "gelu",
                                        "bias": True, "n_head": 2}}
    with pytest.raises(ShoestringError, match="matches no Hugging Face family"):
        family_for_architecture(arch)
    with pytest.raises(ShoestringError, match="'mlp' model has no Hugging Face"):
        family_for_architecture({"family": "mlp", "params": {}})


def test_export_will_not_overwrite_a_folder(tmp_path):
    folder, _ = save_hf(tmp_path, "gpt2")
    ours = import_checkpoint(folder)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    with pytest.raises(ShoestringError, match="not empty"):
        export_checkpoint(ours.model.state_dict(), ours.architecture, tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "keep me"


def test_gpt_config_reports_bad_rope_scaling_and_window_together():
    from shoestring.errors import ConfigError
    from shoestring.models.gpt import GPTConfig

    with pytest.raises(ConfigError) as err:
        GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=9, pos="rope",
                  rope_scaling={"rope_type": "llama3", "factor": 8.0}, sliding_window=0)
    text = str(err.value)
    assert "needs a number for 'low_freq_factor'" in text and "sliding_window" in text
