"""Labelled JSONL texts as a classification dataset of padded token ids."""

from __future__ import annotations

import json

import pytest
import torch

from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.data.text_jsonl import TextClassificationDataset
from shoestring.models.text_layout import CLS_ID, OFFSET, PAD_ID
from shoestring.errors import DataError
from shoestring.types import Dataset, Task


def write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture()
def reviews(tmp_path):
    rows = [{"text": f"great film number {i}", "label": "pos"} for i in range(10)] + \
           [{"text": f"dull plot {i}", "label": "neg"} for i in range(10)]
    return write(tmp_path / "reviews.jsonl", rows)


TextOptions = SourceOptions


def test_jsonl_loads_through_the_source_registry(reviews):
    ds = load_dataset(f"jsonl:{reviews}", SourceOptions(test_fraction=0.2, seed=0))
    assert isinstance(ds, Dataset) and isinstance(ds, TextClassificationDataset)
    assert ds.task is Task.classification and ds.class_names == ("neg", "pos")
    assert len(ds.train) == 16 and len(ds.test) == 4
    assert ds.train.x.dtype == torch.int64 and ds.train.x.shape == (16, 128)
    assert ds.input_shape == (128,) and ds.num_outputs == 2
    assert ds.vocab_size == 256 + OFFSET and ds.pad_id == PAD_ID and ds.truncated == 0


def test_rows_are_cls_tokens_then_padding(reviews):
    ds = load_dataset(f"jsonl:{reviews}", TextOptions(max_length=12))
    row = ds.train.x[0]
    assert row[0] == CLS_ID
    text = bytes((row[1:][row[1:] != PAD_ID] - OFFSET).tolist()).decode()
    assert text.startswith(("great film", "dull plot"))
    assert ds.truncated == 10  # "great film number i" is cut; "dull plot i" fits 11 exactly


def test_field_names_tokenizer_and_integer_labels_are_options(tmp_path):
    rows = [{"body": "a b c " * (i % 3 + 1), "stars": i % 3 + 1} for i in range(30)]
    path = write(tmp_path / "stars.jsonl", rows)
    ds = load_dataset(f"jsonl:{path}", TextOptions(text_field="body", label="stars",
                                                   tokenizer="char", max_length=32))
    assert ds.class_names == ("1", "2", "3") and ds.tokenizer.kind == "char"
    assert ds.vocab_size == 4 + OFFSET  # space, a, b, c
    counts = torch.bincount(torch.cat((ds.train.y, ds.test.y)))
    assert counts.tolist() == [10, 10, 10]


@pytest.mark.parametrize("rows, message", [
    (['{"text": "ok", "label": "a"}', '{"text": "x", "label": '], "line 2 is not valid JSON"),
    (['{"text": "ok", "label": "a"}', '["text"]'], "line 2 is not a JSON object"),
    ([{"text": "ok", "label": "a"}, {"txt": "oops", "label": "b"}],
     "line 2 has no field 'text' \\(fields: label, txt\\)"),
    ([{"text": "ok", "label": "a"}, {"text": "ok"}], "line 2 has no field 'label'"),
    ([{"text": 5, "label": "a"}], "line 1: text field 'text' is not a string"),
    ([{"text": "ok", "label": 1.5}], "line 1: label field 'label' is 1.5"),
    ([{"text": "ok", "label": "a"}, {"text": "ok", "label": "a"}], "single class 'a'"),
    (["", "  "], "has no examples"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, rows, message):
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(f"jsonl:{path}")
    assert str(path) in err.value.message or "single class" in message


def test_undecodable_jsonl_is_an_error(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "caf\xe9", "label": "a"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_dataset(f"jsonl:{path}")


def test_text_sources_point_language_modelling_elsewhere(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    with pytest.raises(DataError, match="language-modelling corpus") as err:
        load_dataset(f"text:{tmp_path / 'a.txt'}")
    assert "gpt" in err.value.hint


def test_string_labels_that_are_numbers_sort_as_numbers(tmp_path):
    """One class order with `data prepare` and csv: '9' before '10' (it was '10' first)."""
    rows = [{"text": f"text {i}", "label": "10" if i % 2 else "9"} for i in range(20)]
    ds = load_dataset(f"jsonl:{write(tmp_path / 'n.jsonl', rows)}")
    assert ds.class_names == ("9", "10")
