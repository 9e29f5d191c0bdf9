"""The token cache: built once, reused while unchanged, rebuilt when anything changes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from shoestring.data.text import default_cache_dir, describe, load_text_data
from shoestring.data.text_cache import token_dtype, write_entry
from shoestring.errors import DataError
from shoestring.models.tokenizers import save_tokenizer

TEXT = "It is a truth universally acknowledged, that a single man in possession\n" * 40


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def load(corpus, cache, **kw):
    return load_text_data(f"text:{corpus}", cache_dir=cache, **kw)


def test_tokens_are_written_once_and_reused(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = load(corpus, cache)
    assert not first.cache_hit and first.token_file.n_tokens == len(TEXT)
    tokens = first.token_file.tokens
    stamp = tokens.stat().st_mtime_ns
    second = load(corpus, cache)
    assert second.cache_hit and second.token_file == first.token_file
    assert tokens.stat().st_mtime_ns == stamp
    assert len(list(cache.iterdir())) == 1
    ids = np.fromfile(tokens, dtype=first.token_file.dtype)
    assert first.tokenizer.decode(ids.tolist()) == TEXT


def test_meta_records_dtype_count_and_checksum(corpus, tmp_path):
    data = load(corpus, tmp_path / "cache")
    meta = json.loads((data.token_file.directory / "meta.json").read_text())
    assert meta["dtype"] == "<u2" and meta["n_tokens"] == len(TEXT)
    import hashlib
    assert meta["sha256"] == hashlib.sha256(data.token_file.tokens.read_bytes()).hexdigest()
    facts = describe(data)
    assert facts["train_tokens"] + facts["val_tokens"] == len(TEXT) and not facts["cache_hit"]


def test_editing_or_touching_the_source_invalidates(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = load(corpus, cache)
    corpus.write_text(TEXT.replace("truth", "truce"))  # same size, new content
    st = corpus.stat()
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    edited = load(corpus, cache)
    assert not edited.cache_hit
    assert edited.token_file.directory != first.token_file.directory
    x, _ = edited.train.windows(torch.tensor([0]), 20)
    assert edited.tokenizer.decode(x[0].tolist()) == "It is a truce univer"


def test_a_new_file_in_a_corpus_folder_invalidates(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    cache = tmp_path / "cache"
    first = load(folder, cache)
    (folder / "b.txt").write_text("More text.\n" * 30)
    second = load(folder, cache)
    assert not second.cache_hit and second.token_file.n_tokens == len(TEXT) + 330
    assert first.token_file.directory.exists()


def test_changing_the_tokenizer_invalidates(corpus, tmp_path):
    cache = tmp_path / "cache"
    char = load(corpus, cache, tokenizer="char")
    byte = load(corpus, cache, tokenizer="byte")
    bpe_300 = load(corpus, cache, tokenizer="bpe", bpe_vocab_size=300)
    bpe_400 = load(corpus, cache, tokenizer="bpe", bpe_vocab_size=400)
    dirs = {d.token_file.directory for d in (char, byte, bpe_300, bpe_400)}
    assert len(dirs) == 4 and not any(d.cache_hit for d in (char, byte, bpe_300, bpe_400))
    assert load(corpus, cache, tokenizer="bpe", bpe_vocab_size=300).cache_hit


def test_a_given_tokenizer_file_is_used_as_is(corpus, tmp_path):
    cache = tmp_path / "cache"
    other = tmp_path / "other.txt"
    other.write_text("zebra " + TEXT)
    trained = load(other, cache)
    path = save_tokenizer(trained.tokenizer, tmp_path / "run" / "tokenizer.json")
    reused = load(corpus, cache, tokenizer_file=path)
    assert reused.tokenizer.to_json() == trained.tokenizer.to_json()
    assert reused.vocab_size == trained.vocab_size  # 'z' and 'b' stay in the vocabulary


def test_a_damaged_token_file_is_rebuilt_with_a_note(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = load(corpus, cache)
    raw = bytearray(first.token_file.tokens.read_bytes())
    raw[10] ^= 0xFF
    first.token_file.tokens.write_bytes(bytes(raw))
    again = load(corpus, cache)
    assert not again.cache_hit and "failed its checksum" in again.notes[0]
    assert again.token_file.tokens.read_bytes() != bytes(raw)
    assert load(corpus, cache).cache_hit


def test_a_truncated_token_file_is_rebuilt(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = load(corpus, cache)
    with open(first.token_file.tokens, "r+b") as f:
        f.truncate(100)
    again = load(corpus, cache, verify=False)
    assert not again.cache_hit and "wrong size" in again.notes[0]


def test_dtype_follows_the_vocabulary():
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(200_000) == np.uint32
    with pytest.raises(DataError, match="vocabulary overflow"):
        token_dtype(2 ** 33)


class WideTokenizer:
    """A stand-in with a 70,000-token vocabulary (uint32 ids) and one bad id."""

    kind = "wide"
    vocab_size = 70_000

    def to_json(self) -> str:
        return '{"format": "shoestring.tokenizer/1", "kind": "byte"}'


def test_large_vocabularies_are_stored_as_uint32(tmp_path):
    entry = write_entry(tmp_path / "e", WideTokenizer(), [np.array([5, 69_999, 66_000])])
    assert entry.dtype == "<u4"
    assert np.fromfile(entry.tokens, dtype="<u4").tolist() == [5, 69_999, 66_000]


def test_ids_beyond_the_vocabulary_are_an_overflow_and_leave_nothing(tmp_path):
    with pytest.raises(DataError, match="vocabulary overflow: token id 70000"):
        write_entry(tmp_path / "e", WideTokenizer(), [np.array([1, 70_000])])
    assert list(tmp_path.iterdir()) == []


def test_default_cache_dir_is_under_the_workspace(tmp_path):
    assert default_cache_dir(tmp_path) == tmp_path / ".shoestring" / "cache" / "tokens"


def test_bad_specs_are_errors(tmp_path):
    with pytest.raises(DataError, match="needs a path"):
        load_text_data("text:", cache_dir=tmp_path)
    with pytest.raises(DataError, match="not a text corpus"):
        load_text_data("csv:x.csv", cache_dir=tmp_path)
    empty = tmp_path / "e.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_text_data(f"text:{empty}", cache_dir=tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    for kind in ("char", "byte"):  # fails while fitting the tokenizer / while writing tokens
        with pytest.raises(DataError, match="byte offset 3"):
            load_text_data(f"text:{bad}", tokenizer=kind, cache_dir=tmp_path / "c")
        assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_a_concurrent_builder_keeps_the_entry_that_finished_first(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = load(corpus, cache)
    # A second process finishing later with the same key gets the first entry.
    late = write_entry(first.token_file.directory, first.tokenizer, [np.array([1, 2, 3])])
    assert late == first.token_file and late.n_tokens == len(TEXT)
    assert [p.name for p in cache.iterdir()] == [first.token_file.directory.name]
