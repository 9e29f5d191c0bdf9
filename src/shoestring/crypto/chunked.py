"""The byte format of one encrypted file: a header, then AES-256-GCM chunks.

::

    header (72 bytes, big-endian)
      magic       8   b"\\x89SSENC\\r\\n"  (PNG-style: a text-mode copy corrupts it visibly)
      version     1   1
      algorithm   1   1 = AES-256-GCM, per-file key by HKDF-SHA256
      reserved    2   0
      chunk_size  4   plaintext bytes per chunk (every chunk but the last is full)
      key_id      8   which key encrypted the file (shoestring.crypto.keys)
      folder_id  16   the encrypted folder the file belongs to (its encryption.json)
      salt       32   random per file (os.urandom)
    chunk i (i = 0 .. n-1)
      ciphertext  len(plaintext_i)     then the 16-byte GCM tag

**Keys and nonces.** Each file is encrypted under its own key,
``HKDF-SHA256(key, salt, "shoestring/encryption file key/v1")`` (RFC 5869),
and chunk ``i`` uses the 96-bit nonce ``0x00000000 || uint64_be(i)``. That is
the deterministic construction of NIST SP 800-38D §8.2.1 (a fixed field and
an invocation counter): within a file the counter never repeats, and two
files share a key only if their 256-bit random salts collide (probability
about n²/2²⁵⁷ for n files), so no (key, nonce) pair is ever used twice, even
when a file is rewritten (a rewrite draws a new salt). §8.3's limit of 2³²
invocations per key with random nonces does not bind: each key encrypts one
file, whose chunk count is capped at 2³² below, and one chunk (≤ 64 MiB) is
far under GCM's 2³⁹−256-bit limit per invocation (§5.2.1.1).

**What each tag binds** (the associated data of chunk ``i``)::

    header || uint16_be(len(name)) || name || uint64_be(i) || uint8(last)

``name`` is the file's path relative to its encrypted folder (POSIX form),
``last`` is 1 for the final chunk only. So a changed byte anywhere, a
truncation (even at a chunk boundary: the new final chunk was sealed with
``last = 0``), an appended or reordered chunk, a file renamed or swapped with
another (its name differs) or copied in from another encrypted folder (the
folder id differs) fails authentication. An empty file is one empty final
chunk, so a file cut down to its header is detected too.

Memory is bounded by about two chunks whatever the file size: the writer
holds at most one chunk of plaintext, the reader one chunk of ciphertext.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from shoestring.crypto.keys import EncryptionKey, hkdf_sha256
from shoestring.errors import ShoestringError

MAGIC = b"\x89SSENC\r\n"
VERSION = 1
ALGORITHM_AES256_GCM_HKDF = 1
_HEADER = struct.Struct(">8sBBHI8s16s32s")
HEADER_BYTES = _HEADER.size  # 72
TAG_BYTES = 16
SALT_BYTES = 32
FOLDER_ID_BYTES = 16
DEFAULT_CHUNK = 1 << 20      # 1 MiB: AES-GCM runs at full speed, two chunks of memory
MIN_CHUNK, MAX_CHUNK = 64, 64 << 20
MAX_CHUNKS = 1 << 32
_FILE_KEY_INFO = b"shoestring/encryption file key/v1"


def is_encrypted(prefix: bytes) -> bool:
    """Whether bytes starting a file are this format's magic."""
    return prefix[:len(MAGIC)] == MAGIC


@dataclass(frozen=True)
class Header:
    chunk_size: int
    key_id: str          # hex
    folder_id: str       # hex
    salt: bytes
    version: int = VERSION
    algorithm: int = ALGORITHM_AES256_GCM_HKDF

    def pack(self) -> bytes:
        return _HEADER.pack(MAGIC, self.version, self.algorithm, 0, self.chunk_size,
                            bytes.fromhex(self.key_id), bytes.fromhex(self.folder_id), self.salt)


class DecryptionError(ShoestringError):
    """An encrypted file that cannot be read: wrong key, damaged or tampered with."""


def _damaged(name: str, what: str) -> DecryptionError:
    return DecryptionError(f"encrypted file '{name}' {what}",
                           hint="the file was changed, truncated, reordered or swapped after it "
                           "was written; restore it from a backup or produce it again")


def parse_header(raw: bytes, name: str) -> Header:
    if len(raw) < HEADER_BYTES or not is_encrypted(raw):
        raise _damaged(name, "has no complete encryption header")
    _magic, version, algorithm, _, chunk, key_id, folder_id, salt = _HEADER.unpack(
        raw[:HEADER_BYTES])
    if version != VERSION or algorithm != ALGORITHM_AES256_GCM_HKDF:
        raise DecryptionError(f"encrypted file '{name}' has format version {version}, "
                              f"algorithm {algorithm}; this Shoestring reads version {VERSION}",
                              hint="upgrade Shoestring to read it")
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        raise _damaged(name, f"declares a chunk size of {chunk} bytes")
    return Header(chunk, key_id.hex(), folder_id.hex(), salt, version, algorithm)


def _aad_prefix(header: bytes, name: str) -> bytes:
    encoded = name.encode("utf-8")
    return header + struct.pack(">H", len(encoded)) + encoded


def _nonce(index: int) -> bytes:
    return b"\0\0\0\0" + struct.pack(">Q", index)


def _cipher(key: EncryptionKey, salt: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(hkdf_sha256(key.secret, salt=salt, info=_FILE_KEY_INFO, length=32))


class EncryptingWriter:
    """Encrypts everything written to it into ``out``, one chunk at a time.

    ``close()`` seals the final chunk (and must be called: a file without its
    final chunk reads as truncated). It does not close ``out``.
    """

    def __init__(self, out: BinaryIO, key: EncryptionKey, *, name: str, folder_id: str,
                 chunk_size: int = DEFAULT_CHUNK, salt: bytes | None = None) -> None:
        import os

        if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be in [{MIN_CHUNK}, {MAX_CHUNK}]")
        self._out, self._chunk = out, chunk_size
        header = Header(chunk_size, key.key_id, folder_id, salt or os.urandom(SALT_BYTES))
        packed = header.pack()
        self._aad = _aad_prefix(packed, name)
        self._aes = _cipher(key, header.salt)
        self._pending: bytes | bytearray | memoryview = b""
        self._index = 0
        self._closed = False
        out.write(packed)

    def _emit(self, plaintext, last: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise ShoestringError("file too large to encrypt (2^32 chunks)",
                                  hint="use a larger chunk size")
        aad = self._aad + struct.pack(">QB", self._index, last)
        self._out.write(self._aes.encrypt(_nonce(self._index), plaintext, aad))
        self._index += 1

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        # A full chunk is sealed only once more data follows it, so the final chunk
        # (full or not) is the one close() seals. Whole chunks are encrypted straight
        # from the caller's buffer; a tail is held without a copy when the caller's
        # buffer is immutable (bytes) and copied otherwise.
        if len(self._pending):
            take = min(self._chunk - len(self._pending), n)
            if take:
                if not isinstance(self._pending, bytearray):
                    self._pending = bytearray(self._pending)
                self._pending += view[:take]
                view = view[take:]
            if not view:
                return n
            self._emit(self._pending, last=False)
            self._pending = b""
        while len(view) > self._chunk:
            self._emit(view[:self._chunk], last=False)
            view = view[self._chunk:]
        self._pending = view if isinstance(data, bytes) else bytearray(view)
        return n

    def close(self) -> None:
        if not self._closed:
            self._emit(self._pending, last=True)
            self._pending = b""
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def read_header(source: BinaryIO, name: str) -> Header:
    return parse_header(source.read(HEADER_BYTES), name)


def check_key(header: Header, key: EncryptionKey, name: str) -> None:
    if header.key_id != key.key_id:
        raise DecryptionError(f"wrong key for encrypted file '{name}' (key id {key.key_id} from "
                              f"{key.source}, the file needs key id {header.key_id})",
                              hint="pass the key this folder was encrypted with (--key-file or "
                              "$SHOESTRING_ENCRYPTION_KEY)")


def decrypt_chunks(source: BinaryIO, key: EncryptionKey, *, name: str, folder_id: str,
                   display: str | None = None) -> Iterator[bytes]:
    """The plaintext chunks of the encrypted stream ``source`` (positioned at its start),
    each authenticated before it is yielded; errors name ``display`` (default ``name``)."""
    display = display or name
    raw_header = source.read(HEADER_BYTES)
    header = parse_header(raw_header, display)
    check_key(header, key, display)
    if header.folder_id != folder_id:
        raise _damaged(display, f"belongs to another encrypted folder (folder id "
                       f"{header.folder_id}, this folder is {folder_id})")
    from cryptography.exceptions import InvalidTag

    aes = _cipher(key, header.salt)
    aad = _aad_prefix(raw_header[:HEADER_BYTES], name)
    block = header.chunk_size + TAG_BYTES
    # Two reusable buffers: the chunk being decrypted and the one after it (whose
    # absence says the current chunk must be the last).
    current, following = bytearray(block), bytearray(block)
    got = _read_into(source, current)
    index = 0
    while True:
        ahead = _read_into(source, following) if got == block else 0
        last = ahead == 0
        if got < TAG_BYTES:
            raise _damaged(display, f"is truncated (chunk {index} is {got} bytes)")
        try:
            yield aes.decrypt(_nonce(index), memoryview(current)[:got],
                              aad + struct.pack(">QB", index, last))
        except InvalidTag:
            raise _damaged(display, f"failed authentication at chunk {index} (byte "
                           f"{HEADER_BYTES + index * block}): a byte was changed, chunks were "
                           "cut, added or reordered, or the file was renamed or swapped") \
                from None
        if last:
            return
        current, following, got, index = following, current, ahead, index + 1


def _read_into(source: BinaryIO, buf: bytearray) -> int:
    """Fill ``buf`` from ``source`` as far as the data goes; the byte count."""
    view, total = memoryview(buf), 0
    while total < len(buf):
        n = source.readinto(view[total:])
        if not n:
            break
        total += n
    return total


def plaintext_size(encrypted_size: int, chunk_size: int) -> int:
    """The plaintext length of an intact encrypted file of ``encrypted_size`` bytes."""
    body = encrypted_size - HEADER_BYTES
    block = chunk_size + TAG_BYTES
    full, rest = divmod(body, block)
    if rest == 0 and full:  # the final chunk is full
        return full * chunk_size
    return full * chunk_size + max(rest - TAG_BYTES, 0)
