"""``shoestring export RUN --format hf``: transformers loads what a Shoestring run exports.

Runs are trained for a few steps by the real ``train`` command; the exported
folder is loaded with ``transformers`` (model and tokenizer) and must give the
Shoestring model's logits on the same text, tokenized to the same ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers as tf
from click.testing import CliRunner

from shoestring.cli.main import build_cli
from shoestring.models.run_folder import load_run

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind\n" * 40
TOL = 1e-4


@pytest.fixture
def cli(isolated_env):
    runner = CliRunner()
    group = build_cli()
    return lambda *args: runner.invoke(group, list(args), catch_exceptions=False)


@pytest.mark.parametrize("model,tokenizer,model_type", [
    ("gpt-nano", "char", "gpt2"), ("llama-nano", "byte", "llama"), ("gpt-nano", "bpe", "gpt2")])
def test_an_exported_language_model_loads_in_transformers(cli, isolated_env, model, tokenizer,
                                                          model_type):
    (isolated_env / "c.txt").write_text(TEXT)
    extra = ["--bpe-vocab-size", "300"] if tokenizer == "bpe" else []
    r = cli("train", "--model", model, "--data", "text:c.txt", "--tokenizer", tokenizer,
            "--max-steps", "3", "--batch-size", "4", "--out", "runs/lm", "--n-layer", "2",
            *extra)
    assert r.exit_code == 0, r.output
    r = cli("export", "runs/lm", "--format", "hf", "--out", "hf/lm")
    assert r.exit_code == 0, r.output
    assert f"as {model_type}" in r.output
    hf_model = tf.AutoModelForCausalLM.from_pretrained("hf/lm").eval()
    hf_tok = tf.AutoTokenizer.from_pretrained("hf/lm")
    run = load_run(Path("runs/lm"))
    prompt = "Whether 'tis nobler"
    ids = run.tokenizer().encode(prompt)
    assert hf_tok(prompt)["input_ids"] == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        err = (hf_model(x).logits - run.model(x)[0]).abs().max().item()
    assert err < TOL
    assert hf_tok.decode(ids) == prompt


def test_an_exported_text_classifier_loads_with_its_labels_and_layout(cli, isolated_env):
    rows = [{"text": t, "label": lab} for t, lab in
            [("good fine great", "pos"), ("bad awful poor", "neg")] * 20]
    (isolated_env / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    r = cli("train", "--model", "encoder", "--data", "jsonl:t.jsonl", "--max-steps", "3",
            "--batch-size", "8", "--max-length", "16", "--n-layer", "1", "--out", "runs/cls")
    assert r.exit_code == 0, r.output
    r = cli("export", "runs/cls", "--out", "hf/cls", "--dtype", "float32")
    assert r.exit_code == 0, r.output
    hf_model = tf.AutoModelForSequenceClassification.from_pretrained("hf/cls").eval()
    assert hf_model.config.id2label == {0: "neg", 1: "pos"}
    hf_tok = tf.AutoTokenizer.from_pretrained("hf/cls")
    enc = hf_tok(["good great"], padding="max_length", max_length=16, return_tensors="pt")
    run = load_run(Path("runs/cls"))
    from shoestring.models.text_layout import encode_texts

    ids, _ = encode_texts(run.tokenizer(), ["good great"], 16, run.card.tokenizer.layout)
    assert enc["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        ours = run.model(ids)[0]
        theirs = hf_model(**enc).logits
    assert (ours - theirs).abs().max().item() < TOL


def test_export_refuses_a_model_without_a_hf_family(cli, isolated_env):
    r = cli("train", "--data", "digits", "--epochs", "1", "--out", "runs/mlp")
    assert r.exit_code == 0, r.output
    r = cli("export", "runs/mlp", "--out", "hf/mlp")
    assert r.exit_code == 1
    assert "'mlp' model has no Hugging Face checkpoint format" in r.output
    assert not Path("hf/mlp").exists()
