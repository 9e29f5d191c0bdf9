"""Reading a text corpus in bounded memory: the files, their fingerprint, their chunks.

A corpus is one UTF-8 file or a folder of ``.txt`` files (recursively, in
sorted path order, concatenated). It is read in chunks of about
``CHUNK_BYTES`` cut after a newline, so no chunk splits a character and
tokens rarely straddle a cut; memory stays bounded whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shoestring.errors import DataError
from shoestring.io import is_encrypted_path

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class CorpusFile:
    """A file of the corpus and what identifies its content version."""

    path: Path
    size: int
    mtime_ns: int


def corpus_files(path: Path) -> list[CorpusFile]:
    """The files of corpus ``path`` (a file, or a folder of ``.txt`` files)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"folder '{path}' holds no .txt files",
                            hint="point text: at a .txt file or a folder of them")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"data path '{path}' does not exist", hint="check the path and spelling")
    out = []
    for f in files:
        st = f.stat()
        out.append(CorpusFile(f.resolve(), st.st_size, st.st_mtime_ns))
    if sum(f.size for f in out) == 0:
        raise DataError(f"text corpus '{path}' is empty", hint="it needs some text to learn from")
    if is_encrypted_path(files[0]):  # read in place below, so never decrypted
        raise DataError(f"text corpus '{path}' lies in an encrypted folder",
                        hint="language-model corpora are streamed in place and not decrypted "
                        "(yet): prepare the corpus without --encrypt to train on it")
    return out


def _cut(buf: bytes) -> int:
    """Where to end a chunk: after the last newline, else before the last lead byte.

    0 means the buffer holds a single, maybe incomplete, character.
    """
    nl = buf.rfind(b"\n")
    if nl >= 0:
        return nl + 1
    # No newline: cut before the last byte that starts a character (UTF-8
    # continuation bytes are 0b10xxxxxx), so no character is split.
    i = len(buf) - 1
    while i > 0 and (buf[i] & 0xC0) == 0x80:
        i -= 1
    return i


def _decode(piece: bytes, file: Path, offset: int) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = offset + exc.start
        raise DataError(f"text file '{file}' is not valid UTF-8 at byte offset {at} "
                        f"(byte 0x{piece[exc.start]:02x})",
                        hint="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def iter_file_chunks(file: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Decoded chunks of one file; a bad byte raises :class:`DataError` with its offset."""
    offset = 0  # byte offset of buf[0] in the file
    buf = b""
    with open(file, "rb") as f:
        while True:
            data = f.read(chunk_bytes)
            buf += data
            if not data:
                break
            if len(buf) < chunk_bytes:
                continue
            end = _cut(buf)
            if end == 0:
                if len(buf) < chunk_bytes + 4:  # a UTF-8 character has at most 4 bytes
                    continue
                end = len(buf)  # not UTF-8 at all: let _decode name the bad byte
            piece, buf = buf[:end], buf[end:]
            text = _decode(piece, file, offset)
            offset += end
            if offset == end and text.startswith("\ufeff"):
                text = text[1:]  # a byte-order mark is not text
            yield text
    if buf:
        text = _decode(buf, file, offset)
        yield text[1:] if offset == 0 and text.startswith("\ufeff") else text


def iter_corpus(files: list[CorpusFile], chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Decoded chunks of every file in order (files are concatenated as they are)."""
    for f in files:
        yield from iter_file_chunks(f.path, chunk_bytes)
