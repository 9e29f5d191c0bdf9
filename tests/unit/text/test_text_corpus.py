"""Reading corpora in chunks: files in order, characters never split, bad bytes located."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoestring.data.text_corpus import corpus_files, iter_corpus, iter_file_chunks
from shoestring.errors import DataError


@settings(max_examples=80, deadline=None)
@given(text=st.text(min_size=0, max_size=300), chunk=st.integers(min_value=1, max_value=40))
def test_chunks_join_back_to_the_file(tmp_path_factory, text, chunk):
    path = tmp_path_factory.mktemp("c") / "a.txt"
    path.write_bytes(text.encode("utf-8"))
    assert "".join(iter_file_chunks(path, chunk_bytes=chunk)) == text


def test_folder_files_are_read_recursively_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("two\n")
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "notes.md").write_text("ignored\n")
    files = corpus_files(tmp_path)
    assert [f.path.name for f in files] == ["a.txt", "2.txt"]
    assert "".join(iter_corpus(files)) == "one\ntwo\n"


def test_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\n" * 3)
    assert "".join(iter_file_chunks(path, chunk_bytes=4)) == "hello\n" + "\ufeffhello\n" * 2


def test_undecodable_byte_names_the_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"line one\n" * 50 + b"caf\xe9\n")
    with pytest.raises(DataError) as err:
        list(iter_file_chunks(path, chunk_bytes=64))
    assert f"'{path}'" in err.value.message and "byte offset 453" in err.value.message
    assert "0xe9" in err.value.message and "UTF-8" in err.value.hint


def test_empty_corpus_and_empty_folder_are_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        corpus_files(tmp_path / "empty.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="holds no .txt files"):
        corpus_files(tmp_path / "sub")
    with pytest.raises(DataError, match="does not exist"):
        corpus_files(tmp_path / "nope.txt")
