"""The seed's BERT road: masked-LM pre-training on a corpus, then a classifier from that run;
and the same from a Hugging Face BERT checkpoint with its own WordPiece tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shoestring.errors import ShoestringError
from shoestring.models.run_folder import load_run
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.evaluate_run import evaluate_run

WORDS = {"pos": ["good", "great", "fine", "lovely"], "neg": ["bad", "awful", "poor", "sad"]}
TINY = {"name": "encoder", "n_layer": 1, "n_head": 2, "n_embd": 32, "intermediate_size": 64}


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    lines, rows = [], []
    for i in range(200):
        label = "pos" if i % 2 else "neg"
        words = [WORDS[label][int(j)] for j in torch.randint(0, 4, (5,), generator=g)]
        lines.append("the day was " + " and ".join(words) + ".")
        rows.append({"text": " ".join(words), "label": label})
    (tmp_path / "corpus.txt").write_text("\n".join(lines))
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path / "corpus.txt", tmp_path / "labels.jsonl"


def test_mlm_pretraining_then_a_classifier_from_the_run(tmp_path):
    corpus, labels = _corpus(tmp_path)
    pre = train(resolve_config({
        "model": TINY, "data": {"source": f"text:{corpus}", "tokenizer": "char",
                                "max_length": 24},
        "train": {"threads": 1, "objective": "mlm", "max_steps": 4, "batch_size": 8,
                  "eval_iters": 2},
        "out": str(tmp_path / "mlm")}), ledger=None, workspace=tmp_path)
    assert {"val_loss", "val_accuracy"} <= set(pre.summary)
    mlm = load_run(pre.out_dir)
    layout = mlm.card.tokenizer.layout
    assert mlm.card.architecture.params["mlm"] and layout.kind == "cls-pad"
    assert layout.mask_id == mlm.card.architecture.params["vocab_size"] - 1
    cls = train(resolve_config({
        "data": {"source": f"jsonl:{labels}", "max_length": 16},
        "train": {"threads": 1, "max_steps": 3, "batch_size": 8}, "out": str(tmp_path / "cls")}),
        init_from=pre.out_dir, ledger=None, workspace=tmp_path)
    run = load_run(cls.out_dir)
    p = run.card.architecture.params
    assert (p["num_classes"], p["mlm"], p["n_embd"]) == (2, False, 32)
    assert run.card.tokenizer.layout == layout  # the pre-training's ids
    # The body is the MLM run's after a warm start; the classifier is new.
    assert "test_accuracy" in evaluate_run(cls.out_dir)


def test_masks_are_the_same_when_a_run_is_repeated(tmp_path):
    corpus, _ = _corpus(tmp_path)

    def run(out):
        return train(resolve_config({
            "model": TINY, "data": {"source": f"text:{corpus}", "tokenizer": "char",
                                    "max_length": 16},
            "train": {"threads": 1, "objective": "mlm", "max_steps": 2, "batch_size": 4,
                      "eval_iters": 1},
            "out": str(tmp_path / out)}), ledger=None, workspace=tmp_path).summary["val_loss"]
    assert run("a") == run("b")


def test_mlm_needs_an_encoder_and_a_corpus(tmp_path):
    corpus, labels = _corpus(tmp_path)
    with pytest.raises(ShoestringError, match="pre-trains an encoder"):
        train(resolve_config({"model": {"name": "gpt-nano"},
                              "data": {"source": f"text:{corpus}"},
                              "train": {"threads": 1, "objective": "mlm", "max_steps": 1},
                              "out": str(tmp_path / "g")}), ledger=None, workspace=tmp_path)
    with pytest.raises(ShoestringError, match="pre-trains on a text corpus"):
        train(resolve_config({"model": TINY, "data": {"source": f"jsonl:{labels}"},
                              "train": {"threads": 1, "objective": "mlm", "max_steps": 1},
                              "out": str(tmp_path / "j")}), ledger=None, workspace=tmp_path)


def _hf_bert(folder: Path, num_labels: int | None) -> None:
    import transformers as tf
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "day", "was", "and", "."]
    vocab += sorted({w for ws in WORDS.values() for w in ws})
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    config = tf.BertConfig(num_hidden_layers=1, num_attention_heads=2, hidden_size=32,
                           intermediate_size=64, vocab_size=len(vocab),
                           max_position_embeddings=32, pad_token_id=0)
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(
        tf.BertConfig(**config.to_dict(), num_labels=num_labels)) if num_labels \
        else tf.BertForMaskedLM(config)
    model.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))


def test_a_hugging_face_bert_fine_tunes_with_its_own_tokenizer(tmp_path):
    _, labels = _corpus(tmp_path)
    _hf_bert(tmp_path / "bert", None)
    result = train(resolve_config({
        "data": {"source": f"jsonl:{labels}", "max_length": 12},
        "train": {"threads": 1, "max_steps": 3, "batch_size": 8, "finetune": "lora",
                  "lora_rank": 2},
        "out": str(tmp_path / "cls")}), init_from=tmp_path / "bert", ledger=None,
        workspace=tmp_path)
    run = load_run(result.out_dir)
    assert run.card.tokenizer.layout.kind == "plain" and run.card.tokenizer.layout.pad_id == 0
    from shoestring.models.text_layout import encode_texts

    ids, _ = encode_texts(run.tokenizer(), ["good day"], 12, run.card.tokenizer.layout)
    good = run.tokenizer().hf.token_to_id("good")
    assert ids[0, :5].tolist() == [2, good, 6, 3, 0]  # [CLS] good day [SEP] [PAD]
    record = run.card.transforms[-1]
    assert record.config["train_also"] == ["classifier", "pooler"]
    assert "test_accuracy" in evaluate_run(result.out_dir)
