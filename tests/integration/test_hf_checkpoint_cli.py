"""``generate`` and ``eval`` take a Hugging Face checkpoint folder as they take a run.

The oracle is ``transformers`` on the same folder: greedy generation gives the
same tokens, and the corpus loss is the one ``transformers`` computes on the
same windows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers as tf
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from shoestring.cli.main import build_cli

TEXT = ("First Citizen: Before we proceed any further, hear me speak.\n"
        "All: Speak, speak.\nFirst Citizen: You are all resolved rather to die than to "
        "famish?\nAll: Resolved. resolved.\n") * 6


def _tokenizer(vocab: int = 300) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(
        vocab_size=vocab, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    tok = _tokenizer()
    vocab = tok.get_vocab_size()
    configs = {
        # A wide initializer_range gives peaked logits: greedy decoding then has no
        # near-ties for rounding to flip (a 0.02 init leaves every logit within ~1e-3).
        "gpt2": (tf.GPT2LMHeadModel, tf.GPT2Config(n_layer=2, n_head=2, n_embd=32,
                                                   n_positions=64, vocab_size=vocab,
                                                   initializer_range=0.3)),
        "llama": (tf.LlamaForCausalLM, tf.LlamaConfig(
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
            intermediate_size=64, vocab_size=vocab, max_position_embeddings=64,
            initializer_range=0.3)),
    }
    out = {}
    for name, (cls, config) in configs.items():
        torch.manual_seed(0)
        folder = root / name
        cls(config).save_pretrained(folder)
        tok.save(str(folder / "tokenizer.json"))
        out[name] = folder
    (root / "corpus.txt").write_text(TEXT)
    out["corpus"] = root / "corpus.txt"
    return out


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_greedy_generation_matches_transformers(checkpoints, name):
    folder = checkpoints[name]
    r = CliRunner().invoke(build_cli(), ["generate", str(folder), "--prompt", "First Citizen:",
                                 "--temperature", "0", "--max-new-tokens", "12", "--json"])
    assert r.exit_code == 0, r.output
    ours = json.loads(r.output)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = torch.tensor([tok.encode("First Citizen:").ids])
    hf = tf.AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=12, min_new_tokens=12, pad_token_id=0)
    assert ours["new_tokens"] == 12
    assert ours["completion"] == tok.decode(out[0, ids.shape[1]:].tolist())


def test_eval_scores_a_checkpoint_on_a_corpus_like_transformers(checkpoints, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # the token cache goes under the workspace
    folder = checkpoints["gpt2"]
    r = CliRunner().invoke(build_cli(), ["eval", str(folder), "--data", f"text:{checkpoints['corpus']}",
                                 "--split", "train", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    # The same windows by hand: the corpus's ids, the first 90% (train split), windows of 64.
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(
        TEXT, add_special_tokens=False).ids
    train = torch.tensor(ids[:len(ids) - max(int(len(ids) * 0.1), 1)])
    n = (len(train) - 1) // 64
    x = torch.stack([train[i * 64:i * 64 + 64] for i in range(n)])
    y = torch.stack([train[i * 64 + 1:i * 64 + 65] for i in range(n)])
    hf = tf.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = hf(x).logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                 y.reshape(-1)).item()
    assert got["tokens_scored"] == y.numel()
    assert got["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_generate_on_a_folder_that_is_not_a_checkpoint_says_so(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    r = CliRunner().invoke(build_cli(), ["generate", str(tmp_path), "--prompt", "x"])
    assert r.exit_code != 0
    assert "model_type 't5' is not supported" in r.output and "Hint" in r.output


def test_fine_tune_a_checkpoint_with_lora_then_export_it_back(checkpoints, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli()
    r = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'l.db'}", "train",
                                 "--init-from", str(checkpoints["llama"]),
                                 "--data", f"text:{checkpoints['corpus']}", "--finetune", "lora",
                                 "--lora-targets", "q_proj,v_proj", "--max-steps", "2",
                                 "--batch-size", "2", "--block-size", "32", "--lr", "0.05",
                                 "--out", "runs/ft"])
    assert r.exit_code == 0, r.output
    assert "warm start from" in r.output and "trainable parameters" in r.output
    from shoestring.models.run_folder import load_run

    run = load_run(Path("runs/ft"))
    assert run.card.architecture.params["block_size"] == 64  # the checkpoint's context
    assert run.card.tokenizer.kind == "hf"
    r = CliRunner().invoke(cli, ["export", "runs/ft", "--out", "hf/ft"])
    assert r.exit_code == 0, r.output
    hf = tf.AutoModelForCausalLM.from_pretrained("hf/ft").eval()
    x = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        assert (hf(x).logits - run.model(x)[0]).abs().max() < 1e-4
        before = tf.AutoModelForCausalLM.from_pretrained(checkpoints["llama"]).eval()(x).logits
    assert (before - hf(x).logits).abs().max() > 1e-4  # the adapters changed the model
    # The exported folder carries the checkpoint's tokenizer: transformers reads it.
    assert (Path("hf/ft") / "tokenizer.json").exists()
