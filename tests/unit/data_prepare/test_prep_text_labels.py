"""Labelled text: label issues by cross-validated text classification, and the
prepared folder as a training source (through the text capability's tokenizers)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import ShoestringError

TOPICS = {"sport": ["goal", "match", "team", "score", "league", "coach", "pitch", "win"],
          "food": ["recipe", "bake", "flour", "sugar", "oven", "taste", "spice", "meal"],
          "tech": ["code", "server", "chip", "cloud", "data", "laptop", "app", "network"]}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    rng = random.Random(0)
    rows, flipped = [], []
    names = sorted(TOPICS)
    for i in range(240):
        topic = names[i % 3]
        text = " ".join(rng.choice(TOPICS[topic]) for _ in range(12)) + f" id{i}"
        label = topic
        if i in (7, 50, 101, 160, 222):
            label = names[(names.index(topic) + 1) % 3]
            flipped.append(f"docs.jsonl:{i + 1}")
        rows.append({"text": text, "topic": label})
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = resolve_prepare_config({"source": f"jsonl:{root / 'docs.jsonl'}", "out": root / "out",
                                  "label_field": "topic", "tokenizer": "char",
                                  "near": False})
    return cfg, prepare(cfg), flipped


def test_flipped_text_labels_are_flagged(labelled):
    cfg, result, flipped = labelled
    issues = [json.loads(line) for line in (cfg.out / "label_issues.jsonl").read_text()
              .splitlines()]
    assert sorted(i["origin"] for i in issues) == sorted(flipped)
    assert result.report["classes"] == ["food", "sport", "tech"]


def test_prepared_text_trains_as_token_ids(labelled):
    cfg, result, _ = labelled
    ds = load_dataset(f"prepared:{cfg.out}", SourceOptions())
    assert ds.class_names == ("food", "sport", "tech")
    assert len(ds.train) == result.report["splits"]["train"]
    assert ds.train.x.dtype.is_floating_point is False and ds.train.x.shape[1] == ds.input_shape[0]
    assert ds.tokenizer.kind == "char"


def test_edited_input_is_a_different_preparation(labelled, tmp_path):
    cfg, _, _ = labelled
    src = tmp_path / "docs.jsonl"
    src.write_text(Path(cfg.source.removeprefix("jsonl:")).read_text())
    out = tmp_path / "out"
    first = resolve_prepare_config({"source": f"jsonl:{src}", "out": out, "near": False,
                                    "label_issues": False})
    prepare(first)
    assert prepare(first).reused
    with src.open("a") as f:
        f.write(json.dumps({"text": "one more line"}) + "\n")
    with pytest.raises(ShoestringError, match="different preparation"):
        prepare(first)
    redone = prepare(first.model_copy(update={"force": True}))
    assert not redone.reused and redone.report["input"] == 241


def test_unlabelled_text_shards_are_a_language_modelling_corpus(tmp_path):
    from shoestring.data.prepare.shards import ShardSet
    from shoestring.errors import DataError

    docs = [f"document {i} says hello\u00e9 {'x' * (i % 7)}" for i in range(40)]
    (tmp_path / "c.txt").write_text("\n".join(docs) + "\n\n")
    out = tmp_path / "o"
    r = prepare(resolve_prepare_config({"source": f"text:{tmp_path / 'c.txt'}", "out": out,
                                        "near": False})).report
    assert r["input"] == 40 and r["task"] is None
    shards = ShardSet(out / "shards")
    texts = [t for s in ("train", "val", "test") for t in shards.load(s)[0]]
    assert sorted(texts) == sorted(docs)
    assert (out / "shards" / "train" / "00000.txt").read_text().count("\n") == \
        r["splits"]["train"]
    with pytest.raises(DataError, match="no labels") as err:
        load_dataset(f"prepared:{out}", SourceOptions())
    assert f"text:{out / 'shards' / 'train'}" in err.value.hint
