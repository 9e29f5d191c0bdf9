"""Every tokenizer honours one contract: round trip, save/load, stable ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoestring.models.tokenizers import (
    ByteTokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_json,
    train_tokenizer,
)
from shoestring.errors import DataError, ShoestringError

CORPUS = ["First Citizen:\nBefore we proceed any further, hear me speak.\n",
          "All:\nSpeak, speak. Ünïcödé — ok? 你好 🙂\n"] * 20


@pytest.fixture(scope="module", params=["char", "byte", "bpe"])
def tokenizer(request):
    return train_tokenizer(request.param, CORPUS, vocab_size=300)


def test_round_trip_on_the_training_text(tokenizer):
    text = "".join(CORPUS[:2])
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.encode_array(text).tolist() == ids


def test_saved_tokenizer_loads_without_the_corpus(tokenizer, tmp_path):
    path = save_tokenizer(tokenizer, tmp_path / "sub" / "tokenizer.json")
    loaded = load_tokenizer(path)
    text = "hear me speak, 你好"
    assert loaded.kind == tokenizer.kind and loaded.vocab_size == tokenizer.vocab_size
    assert loaded.encode(text) == tokenizer.encode(text)


def test_char_vocabulary_is_the_sorted_characters():
    tok = train_tokenizer("char", ["hello", " world"])
    assert tok.chars == " dehlorw" and tok.vocab_size == 8
    assert tok.encode("lower") == [4, 5, 7, 2, 6]


def test_char_ids_follow_the_file_order_even_unsorted():
    tok = tokenizer_from_json('{"format": "shoestring.tokenizer/1", "kind": "char", '
                              '"chars": "zab"}')
    assert tok.encode("abz") == [1, 2, 0]


def test_bpe_training_is_deterministic_and_compresses():
    a = train_tokenizer("bpe", CORPUS, vocab_size=300)
    b = train_tokenizer("bpe", CORPUS, vocab_size=300)
    assert a.to_json() == b.to_json()
    text = CORPUS[0]
    assert len(a.encode(text)) < len(text.encode("utf-8"))


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_byte_and_bpe_read_any_text(text):
    for tok in (ByteTokenizer(), _BPE):
        assert tok.decode(tok.encode(text)) == text


_BPE = train_tokenizer("bpe", CORPUS, vocab_size=300)


def test_unknown_character_is_named():
    tok = train_tokenizer("char", ["abc"])
    with pytest.raises(DataError, match=r"character 'é' \(U\+00E9\) at position 2"):
        tok.encode("abé")


def test_bad_kinds_sizes_and_files_are_refused(tmp_path):
    with pytest.raises(ShoestringError, match="unknown tokenizer 'word'"):
        train_tokenizer("word", [])
    with pytest.raises(ShoestringError, match="at least 256 tokens, got 100"):
        train_tokenizer("bpe", CORPUS, vocab_size=100)
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(ShoestringError, match="not valid JSON"):
        load_tokenizer(bad)
    bad.write_text('{"format": "shoestring.tokenizer/1", "kind": "wordpiece"}')
    with pytest.raises(ShoestringError, match="unknown tokenizer 'wordpiece'"):
        load_tokenizer(bad)
    bad.write_text('{"something": "else"}')
    with pytest.raises(ShoestringError, match="not a tokenizer file"):
        load_tokenizer(bad)
    with pytest.raises(ShoestringError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
