"""``data leakage TRAIN TEST`` finds planted test-in-train copies, exactly counted."""

from __future__ import annotations

import json
import random

import pytest
from planted_corpus import words
from planted_images import leaky_idx

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.prepare.config import resolve_leakage_config
from shoestring.data.prepare.leakage import find_leakage
from shoestring.errors import DataError


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_text_leakage_counts_exact_and_near_copies(tmp_path):
    rng = random.Random(0)
    train = [" ".join(words(rng, 42)) for _ in range(200)]
    test = [" ".join(words(rng, 42)) for _ in range(50)]
    test[0:4] = [t.upper() for t in train[0:4]]                  # exact (after normalizing)
    test[4:7] = [" ".join(train[k].split() + words(rng, 8)) for k in (10, 11, 12)]  # J 0.83
    test[7:9] = [" ".join(train[k].split() + words(rng, 11)) for k in (20, 21)]  # J 0.78
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "test.jsonl", test)
    r = find_leakage(resolve_leakage_config({"train": f"jsonl:{tmp_path / 'train.jsonl'}",
                                             "test": f"jsonl:{tmp_path / 'test.jsonl'}"}))
    assert r["test_in_train"] == {"exact": 4, "near": 3, "total": 7, "share": 0.14}
    assert r["train_records"] == 200 and r["test_records"] == 50
    near = [e for e in r["examples"] if e["kind"] == "near"]
    assert {e["test"] for e in near} == {"test:test.jsonl:5", "test:test.jsonl:6",
                                        "test:test.jsonl:7"}
    assert all(e["similarity"] >= 0.8 for e in near)


def test_image_leakage_between_idx_splits(tmp_path):
    d = leaky_idx(tmp_path / "idx", exact=5, near=4)
    r = find_leakage(resolve_leakage_config({"train": f"idx:{d}#train", "test": f"idx:{d}#test"}))
    assert r["test_in_train"]["exact"] == 5 and r["test_in_train"]["near"] == 4


def test_prepared_folder_has_no_leakage_left(tmp_path):
    d = leaky_idx(tmp_path / "idx", exact=5, near=4)
    out = tmp_path / "prep"
    prepare(resolve_prepare_config({"source": f"idx:{d}", "out": out, "label_issues": False}))
    r = find_leakage(resolve_leakage_config({"train": f"prepared:{out}#train",
                                             "test": f"prepared:{out}#test"}))
    assert r["test_in_train"]["total"] == 0
    assert r["test_records"] == 60
    # The validation split under the name people write (issue 16 item 8: a KeyError).
    r = find_leakage(resolve_leakage_config({"train": f"prepared:{out}#train",
                                             "test": f"prepared:{out}#validation"}))
    assert r["test_in_train"]["total"] == 0 and r["test_records"] > 0
    with pytest.raises(DataError, match="no split 'holdout'") as err:
        find_leakage(resolve_leakage_config({"train": f"prepared:{out}#train",
                                             "test": f"prepared:{out}#holdout"}))
    assert "#val" in err.value.hint and "#validation" in err.value.hint


def test_kinds_must_match(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", ["hello world"])
    d = leaky_idx(tmp_path / "idx")
    with pytest.raises(DataError, match="cannot compare"):
        find_leakage(resolve_leakage_config({"train": f"jsonl:{tmp_path / 't.jsonl'}",
                                             "test": f"idx:{d}#test"}))
