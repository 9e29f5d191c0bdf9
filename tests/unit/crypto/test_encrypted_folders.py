"""Encrypted folders through shoestring.io: files encrypted by construction, keys from the
environment or a private key file, and every misplaced, swapped or plaintext file refused."""

from __future__ import annotations

import base64
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest

from shoestring.crypto.chunked import HEADER_BYTES, MAGIC
from shoestring.crypto.folder import (
    MARKER,
    encrypt_in_place,
    mark_encrypted,
    unencrypted_files,
)
from shoestring.crypto.keys import (
    ENV_KEY,
    ENV_KEY_FILE,
    EncryptionKey,
    load_key,
    read_key_file,
    write_new_key,
)
from shoestring.errors import ShoestringError
from shoestring.io import append_bytes, atomic_write_bytes, read_bytes, read_chunks

KEY = EncryptionKey(os.urandom(32), "test")
ENV = {ENV_KEY: base64.b64encode(KEY.secret).decode()}


@pytest.fixture
def folder(tmp_path) -> Path:
    mark_encrypted(tmp_path / "run", KEY)
    return tmp_path / "run"


def test_files_under_an_encrypted_folder_are_encrypted_by_construction(folder):
    (folder / "checkpoints").mkdir()
    for rel, data in [("summary.json", b'{"accuracy": 0.9}'), ("empty", b""),
                      ("checkpoints/ckpt-1.safetensors", os.urandom(3 << 20))]:
        atomic_write_bytes(folder / rel, data, environ=ENV)
        raw = (folder / rel).read_bytes()
        assert raw.startswith(MAGIC) and (not data or data not in raw)
        assert read_bytes(folder / rel, environ=ENV) == data
    assert unencrypted_files(folder) == []
    marker = (folder / MARKER).read_text()
    assert KEY.key_id in marker and ENV[ENV_KEY] not in marker


def test_missing_and_wrong_keys_are_refused_with_the_fix(folder):
    atomic_write_bytes(folder / "model.json", b"{}", environ=ENV)
    with pytest.raises(ShoestringError, match="needs the encryption key") as err:
        read_bytes(folder / "model.json", environ={})
    assert "--key-file" in err.value.hint
    other = {ENV_KEY: base64.b64encode(os.urandom(32)).decode()}
    with pytest.raises(ShoestringError, match=f"wrong key.*needs key id {KEY.key_id}"):
        read_bytes(folder / "model.json", environ=other)
    with pytest.raises(ShoestringError, match="wrong key"):
        atomic_write_bytes(folder / "model.json", b"{}", environ=other)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(folder):
    atomic_write_bytes(folder / "summary.json", b"old", environ=ENV)
    with pytest.raises(ShoestringError):
        atomic_write_bytes(folder / "summary.json", b"new", environ={})
    assert read_bytes(folder / "summary.json", environ=ENV) == b"old"
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "summary.json"]


def test_files_swapped_between_names_or_folders_are_refused(folder, tmp_path):
    atomic_write_bytes(folder / "model.safetensors", b"A" * 100, environ=ENV)
    atomic_write_bytes(folder / "summary.json", b"B" * 100, environ=ENV)
    a, b = folder / "model.safetensors", folder / "summary.json"
    a_raw, b_raw = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_raw)
    b.write_bytes(a_raw)
    for path in (a, b):
        with pytest.raises(ShoestringError, match="authentication"):
            read_bytes(path, environ=ENV)
    other = tmp_path / "other"
    mark_encrypted(other, KEY)
    atomic_write_bytes(other / "model.safetensors", b"C" * 100, environ=ENV)
    a.write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ShoestringError, match="another encrypted folder"):
        read_bytes(a, environ=ENV)


def test_plaintext_in_an_encrypted_folder_and_ciphertext_outside_are_refused(folder, tmp_path):
    (folder / "summary.json").write_text('{"forged": true}')
    with pytest.raises(ShoestringError, match="is not encrypted, but its folder"):
        read_bytes(folder / "summary.json", environ=ENV)
    assert unencrypted_files(folder) == [folder / "summary.json"]
    atomic_write_bytes(folder / "model.json", b"{}", environ=ENV)
    stray = tmp_path / "copied.json"
    shutil.copy(folder / "model.json", stray)
    with pytest.raises(ShoestringError, match=f"no {MARKER}"):
        read_bytes(stray)


def test_append_re_encrypts_and_plain_files_still_append(folder, tmp_path):
    for line in (b"a\n", b"b\n", b"c\n"):
        append_bytes(folder / "metrics.jsonl", line, environ=ENV)
    assert read_bytes(folder / "metrics.jsonl", environ=ENV) == b"a\nb\nc\n"
    plain = tmp_path / "plain.txt"
    append_bytes(plain, b"x")
    append_bytes(plain, b"y")
    assert plain.read_bytes() == b"xy" == read_bytes(plain)


def test_encrypt_in_place_streams_an_appended_file(folder):
    (folder / "quarantine.jsonl").write_bytes(b"row\n" * 1000)
    encrypt_in_place(folder / "quarantine.jsonl", ENV)
    assert read_bytes(folder / "quarantine.jsonl", environ=ENV) == b"row\n" * 1000


def test_a_folder_holding_plaintext_is_not_marked(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.json").write_text("{}")
    with pytest.raises(ShoestringError, match="already holds plaintext"):
        mark_encrypted(tmp_path / "run", KEY)
    resumed = mark_encrypted(tmp_path / "enc", KEY)
    assert mark_encrypted(tmp_path / "enc", KEY) == resumed  # a resume keeps the folder
    with pytest.raises(ShoestringError, match="wrong key"):
        mark_encrypted(tmp_path / "enc", EncryptionKey(os.urandom(32)))


def test_key_files_must_be_private_and_are_never_overwritten(tmp_path):
    path = tmp_path / "key"
    key = write_new_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key({}, path).key_id == key.key_id
    assert load_key({ENV_KEY_FILE: str(path)}).key_id == key.key_id
    with pytest.raises(ShoestringError, match="already exists"):
        write_new_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ShoestringError, match="readable by others") as err:
        read_key_file(path)
    assert "chmod 600" in err.value.hint
    secret_text = path.read_text().strip()
    bad = tmp_path / "bad"
    bad.write_text("c2hvcnQ=")  # base64 of 5 bytes
    os.chmod(bad, 0o600)
    with pytest.raises(ShoestringError, match="not base64 of 32 bytes") as err:
        read_key_file(bad)
    assert secret_text not in str(err.value)
    with pytest.raises(ShoestringError, match=r"\$SHOESTRING_ENCRYPTION_KEY is not base64"):
        load_key({ENV_KEY: "too short"})


def test_streaming_a_large_file_keeps_memory_bounded(folder):
    """200 MB through the writer and the reader with a peak of a few chunks (1 MiB each)."""
    total, block = 200 << 20, os.urandom(1 << 20)
    path = folder / "big.bin"
    from shoestring.crypto.chunked import EncryptingWriter

    tracemalloc.start()
    try:
        with open(path, "wb") as f, EncryptingWriter(f, KEY, name="big.bin",
                                                     folder_id=_folder_id(folder)) as w:
            for _ in range(total // len(block)):
                w.write(block)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        seen = sum(len(c) for c in read_chunks(path, environ=ENV))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total
    assert path.stat().st_size > total + HEADER_BYTES
    assert write_peak < 8 << 20 and read_peak < 8 << 20, (write_peak, read_peak)


def _folder_id(folder: Path) -> str:
    import json

    return json.loads((folder / MARKER).read_text())["folder_id"]
