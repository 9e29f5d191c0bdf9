"""Encrypted folders: a run folder or a prepared folder whose files are all encrypted.

A folder is encrypted when it holds ``encryption.json`` (written first, before
any other file), the one file left in plaintext::

    {"format": "shoestring-encrypted-folder/1", "cipher": "AES-256-GCM, chunked",
     "key_id": "…", "folder_id": "…", "chunk_size": 1048576}

It says that the folder is encrypted, with which key (its id, never the key)
and under which folder id; it holds no data, weights, metrics or names.
Every other file under the folder, down to :data:`MAX_DEPTH` levels
(``checkpoints/ckpt-*.safetensors``, ``shards/train/00000.txt``…), is written
in the format of :mod:`shoestring.crypto.chunked` with its path relative to the
folder as its authenticated name. :func:`shoestring.io.atomic_write_bytes`
encrypts and :func:`shoestring.io.read_bytes` decrypts through here, so a
producer that writes through them encrypts by construction and a reader
decrypts without knowing. A plaintext file found in an encrypted folder is
refused (it could only have been put there by someone else), and so is an
encrypted file whose folder has lost its ``encryption.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from shoestring.crypto.chunked import (
    DEFAULT_CHUNK,
    FOLDER_ID_BYTES,
    MAGIC,
    EncryptingWriter,
    decrypt_chunks,
    is_encrypted,
)
from shoestring.crypto.keys import ENV_KEY, EncryptionKey, require_key
from shoestring.errors import ShoestringError

MARKER = "encryption.json"
FORMAT = "shoestring-encrypted-folder/1"
MAX_DEPTH = 4  # a file may sit in the folder or three levels below it


@dataclass(frozen=True)
class EncryptedFolder:
    """An encrypted folder as its ``encryption.json`` describes it."""

    root: Path
    key_id: str
    folder_id: str
    chunk_size: int = DEFAULT_CHUNK

    def name_of(self, path: Path) -> str:
        """The authenticated name of ``path``: relative to the folder, POSIX form."""
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()

    def key(self, environ: Mapping[str, str], action: str) -> EncryptionKey:
        return self.check(require_key(
            environ, needed_for=f"{action} (the folder '{self.root}' is encrypted)"))

    def check(self, key: EncryptionKey) -> EncryptionKey:
        """``key`` if it is this folder's, else a "wrong key" error naming both key ids."""
        if key.key_id != self.key_id:
            raise ShoestringError(f"wrong key for the encrypted folder '{self.root}' (key id "
                                  f"{key.key_id} from {key.source}, the folder needs key id "
                                  f"{self.key_id})",
                                  hint="pass the key this folder was encrypted with "
                                  f"(--key-file or ${ENV_KEY})")
        return key

    def write(self, out, path: Path, data, environ: Mapping[str, str]) -> None:
        """Encrypt ``data`` (bytes-like) into the open file ``out`` as ``path``."""
        key = self.key(environ, f"writing '{path}'")
        with EncryptingWriter(out, key, name=self.name_of(path), folder_id=self.folder_id,
                              chunk_size=self.chunk_size) as w:
            w.write(data)

    def chunks(self, path: Path, environ: Mapping[str, str]) -> Iterator[bytes]:
        """The plaintext of ``path`` chunk by chunk (bounded memory), each authenticated."""
        key = self.key(environ, f"reading '{path}'")
        with open(path, "rb") as f:
            if not is_encrypted(f.read(len(MAGIC))):
                raise ShoestringError(f"'{path}' is not encrypted, but its folder "
                                      f"'{self.root}' is", hint="a plaintext file was put into "
                                      "an encrypted folder after it was written; remove it, or "
                                      "produce the folder again")
            f.seek(0)
            yield from decrypt_chunks(f, key, name=self.name_of(path), folder_id=self.folder_id,
                                      display=str(path))


def _read_marker(path: Path) -> EncryptedFolder | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    try:
        return EncryptedFolder(Path(os.path.abspath(path.parent)), str(raw["key_id"]),
                               str(raw["folder_id"]), int(raw["chunk_size"]))
    except (KeyError, TypeError, ValueError):
        raise ShoestringError(f"'{path}' is damaged",
                              hint="restore it from a backup; the folder cannot be read "
                              "without it") from None


def find_encrypted_folder(path: Path) -> EncryptedFolder | None:
    """The encrypted folder ``path`` lies in (its parent or up to MAX_DEPTH - 1 levels above),
    if any."""
    here = Path(os.path.abspath(path)).parent
    for _ in range(MAX_DEPTH):
        marker = here / MARKER
        if marker.is_file():
            return _read_marker(marker)
        if here.parent == here:
            break
        here = here.parent
    return None


def mark_encrypted(directory: Path, key: EncryptionKey, *,
                   chunk_size: int = DEFAULT_CHUNK) -> EncryptedFolder:
    """Make ``directory`` an encrypted folder (created if needed) before anything is written.

    An already encrypted folder (a resumed run) is kept if ``key`` is its key.
    A folder that already holds plaintext files is refused: mixing the two
    would leave data unprotected.
    """
    directory = Path(directory)
    existing = _read_marker(directory / MARKER)
    if existing is not None:
        existing.check(key)
        return existing
    directory.mkdir(parents=True, exist_ok=True)
    present = [p.name for p in directory.iterdir() if not p.name.startswith(".")]
    if present:
        raise ShoestringError(f"cannot encrypt '{directory}': it already holds plaintext files "
                              f"({', '.join(sorted(present)[:5])})",
                              hint="write the encrypted output to a new folder")
    folder = EncryptedFolder(Path(os.path.abspath(directory)), key.key_id,
                             os.urandom(FOLDER_ID_BYTES).hex(), chunk_size)
    body = {"format": FORMAT, "cipher": "AES-256-GCM, chunked (docs/privacy.md)",
            "key_id": folder.key_id, "folder_id": folder.folder_id, "chunk_size": chunk_size}
    from shoestring.io import fsync_dir

    tmp = directory / f".{MARKER}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(body, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MARKER)
    fsync_dir(directory)
    return folder


def unencrypted_files(directory: Path) -> list[Path]:
    """Files under an encrypted folder that are not encrypted (the marker aside):
    what a producer that bypassed :mod:`shoestring.io` left in plaintext."""
    root = Path(directory)
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p == root / MARKER:
            continue
        with open(p, "rb") as f:
            if not is_encrypted(f.read(len(MAGIC))):
                out.append(p)
    return out


def refuse_stray_prefix(path: Path, prefix: bytes) -> None:
    """Refuse an encrypted file read outside its folder (the folder lost its marker or the
    file was copied out), given the file's first bytes, instead of handing ciphertext to a
    JSON or safetensors parser."""
    if is_encrypted(prefix[:len(MAGIC)]):
        raise ShoestringError(f"'{path}' is encrypted, but no {MARKER} is found beside it or "
                              "above it", hint=f"keep encrypted files in their folder: restore "
                              f"the folder's {MARKER}, or copy the whole folder")


def encrypt_output(directory: Path, environ: Mapping[str, str] | None = None) -> EncryptedFolder:
    """``--encrypt``: mark the output folder ``directory`` encrypted with the key given.

    The key comes from the process environment by default, the same place
    :mod:`shoestring.io` reads it from for every file written afterwards
    (``--key-file`` sets ``$SHOESTRING_ENCRYPTION_KEY_FILE``).
    """
    environ = os.environ if environ is None else environ
    return mark_encrypted(directory, require_key(environ,
                                                 needed_for=f"--encrypt ('{directory}')"))


def encrypt_in_place(path: Path, environ: Mapping[str, str] | None = None) -> None:
    """Encrypt the plaintext file ``path`` of an encrypted folder, streaming (for files a
    producer appends to as it goes, such as a preparation's quarantine)."""
    folder = find_encrypted_folder(path)
    if folder is None:
        raise ValueError(f"'{path}' is not in an encrypted folder")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    key = folder.key(os.environ if environ is None else environ, f"writing '{path}'")
    with open(path, "rb") as src, open(tmp, "wb") as out, \
            EncryptingWriter(out, key, name=folder.name_of(path), folder_id=folder.folder_id,
                             chunk_size=folder.chunk_size) as w:
        for block in iter(lambda: src.read(folder.chunk_size), b""):
            w.write(block)
    os.replace(tmp, path)


def encrypted_folder_at(directory: Path) -> EncryptedFolder | None:
    """``directory`` itself as an encrypted folder (its ``encryption.json``), if it is one."""
    return _read_marker(Path(directory) / MARKER)
