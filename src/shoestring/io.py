"""Crash-safe file writes (a temp file, fsync, then an atomic rename), and the
reads and writes of files that may lie in an encrypted folder.

A file under an encrypted folder (one holding ``encryption.json``,
:mod:`shoestring.crypto.folder`) is encrypted by :func:`atomic_write_bytes` and
decrypted by :func:`read_bytes`, with the key from the environment
(``$SHOESTRING_ENCRYPTION_KEY`` or ``$SHOESTRING_ENCRYPTION_KEY_FILE``, which
``--key-file`` sets). Run folders and prepared folders write and read through
these, so their producers and readers handle encryption by construction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True,
                       environ: Mapping[str, str] | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    With ``durable`` the data and the rename are fsynced, so the file also
    survives a power cut or ``kill -9`` right after the call returns. Under an
    encrypted folder the file is written encrypted (plaintext never touches
    the disk).
    """
    from shoestring.crypto.folder import find_encrypted_folder

    path = Path(path)
    sealed = find_encrypted_folder(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if sealed is None:
                f.write(data)
            else:
                sealed.write(f, path, data, os.environ if environ is None else environ)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def read_bytes(path: Path, *, environ: Mapping[str, str] | None = None) -> bytes:
    """The contents of ``path``, decrypted (and authenticated) if it lies in an encrypted
    folder. Raises ``OSError`` like :meth:`Path.read_bytes` when the file is missing."""
    return b"".join(read_chunks(path, environ=environ))


def read_text(path: Path, *, encoding: str = "utf-8", errors: str = "strict",
              environ: Mapping[str, str] | None = None) -> str:
    """:func:`read_bytes`, decoded."""
    return read_bytes(path, environ=environ).decode(encoding, errors)


def read_chunks(path: Path, *, environ: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """The contents of ``path`` in pieces of bounded size, decrypted as :func:`read_bytes`."""
    from shoestring.crypto.folder import find_encrypted_folder

    path = Path(path)
    sealed = find_encrypted_folder(path)
    if sealed is not None:
        return sealed.chunks(path, os.environ if environ is None else environ)
    f = open(path, "rb")  # opened now, so a missing file fails here as Path.read_bytes does
    return _plain_chunks(path, f)


def _plain_chunks(path: Path, f) -> Iterator[bytes]:
    """``f``'s contents, refusing an encrypted file that has left its folder (one open and
    one read: the first block is checked as it is read)."""
    from shoestring.crypto.folder import refuse_stray_prefix

    with f:
        first = f.read(1 << 20)
        refuse_stray_prefix(path, first)
        if first:
            yield first
        yield from iter(lambda: f.read(1 << 20), b"")


def append_bytes(path: Path, data: bytes, *, environ: Mapping[str, str] | None = None) -> None:
    """Append ``data`` to ``path``; under an encrypted folder the file is re-encrypted
    whole (atomically), since a sealed final chunk cannot be extended."""
    from shoestring.crypto.folder import find_encrypted_folder

    path = Path(path)
    if find_encrypted_folder(path) is None:
        with open(path, "ab") as f:
            f.write(data)
        return
    old = read_bytes(path, environ=environ) if path.exists() else b""
    atomic_write_bytes(path, old + data, durable=False, environ=environ)


def is_encrypted_path(path: Path) -> bool:
    """Whether ``path`` lies in an encrypted folder (or is one)."""
    from shoestring.crypto.folder import MARKER, find_encrypted_folder

    path = Path(path)
    return (path / MARKER).is_file() or find_encrypted_folder(path) is not None
