"""The chunked AES-256-GCM file format: round trips at every size that matters, and every
way of tampering with a file refused with an error that says what happened."""

from __future__ import annotations

import io
import os
import struct

import pytest

from shoestring.crypto.chunked import (
    HEADER_BYTES,
    MAGIC,
    TAG_BYTES,
    DecryptionError,
    EncryptingWriter,
    decrypt_chunks,
    plaintext_size,
)
from shoestring.crypto.keys import EncryptionKey

CHUNK = 256
FOLDER = "ab" * 16
KEY = EncryptionKey(bytes(range(32)), "test key")
OTHER = EncryptionKey(bytes(range(1, 33)), "other key")


def seal(data: bytes, *, name: str = "model.safetensors", key: EncryptionKey = KEY,
         chunk: int = CHUNK, writes: int = 1) -> bytes:
    out = io.BytesIO()
    with EncryptingWriter(out, key, name=name, folder_id=FOLDER, chunk_size=chunk) as w:
        step = max(1, -(-len(data) // writes))
        for lo in range(0, max(len(data), 1), step):
            w.write(data[lo:lo + step])
    return out.getvalue()


def unseal(blob: bytes, *, name: str = "model.safetensors", key: EncryptionKey = KEY,
           folder: str = FOLDER) -> bytes:
    return b"".join(decrypt_chunks(io.BytesIO(blob), key, name=name, folder_id=folder))


def chunks_of(blob: bytes, chunk: int = CHUNK) -> list[bytes]:
    body, block = blob[HEADER_BYTES:], chunk + TAG_BYTES
    return [body[i:i + block] for i in range(0, len(body), block)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7])
@pytest.mark.parametrize("writes", [1, 3])
def test_round_trip_at_chunk_boundaries(size, writes):
    data = os.urandom(size)
    blob = seal(data, writes=writes)
    assert blob.startswith(MAGIC)
    assert size < 16 or data not in blob  # (a byte or two may occur in random ciphertext)
    n_chunks = max(1, -(-size // CHUNK))
    assert len(blob) == HEADER_BYTES + size + n_chunks * TAG_BYTES
    assert plaintext_size(len(blob), CHUNK) == size
    assert unseal(blob) == data


def test_each_file_gets_a_fresh_salt_so_equal_plaintexts_differ():
    data = b"x" * 1000
    a, b = seal(data), seal(data)
    assert a[:HEADER_BYTES - 32] == b[:HEADER_BYTES - 32]  # same key id, folder, chunk size
    assert a[HEADER_BYTES - 32:HEADER_BYTES] != b[HEADER_BYTES - 32:HEADER_BYTES]
    assert a[HEADER_BYTES:] != b[HEADER_BYTES:]


@pytest.mark.parametrize("position", [0, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 300,
                                      -1])
def test_a_changed_byte_is_refused(position):
    blob = bytearray(seal(os.urandom(3 * CHUNK + 10)))
    if position == 0:  # the magic: not this format at all
        blob[0] ^= 1
        with pytest.raises(DecryptionError, match="no complete encryption header"):
            unseal(bytes(blob))
        return
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError, match=r"model\.safetensors") as err:
        unseal(bytes(blob))
    assert err.value.hint


@pytest.mark.parametrize("cut", ["mid-chunk", "chunk-boundary", "header-only", "mid-header"])
def test_a_truncated_file_is_refused(cut):
    data = os.urandom(4 * CHUNK)
    blob = seal(data)
    end = {"mid-chunk": len(blob) - 5,
           "chunk-boundary": HEADER_BYTES + 2 * (CHUNK + TAG_BYTES),
           "header-only": HEADER_BYTES,
           "mid-header": HEADER_BYTES - 10}[cut]
    with pytest.raises(DecryptionError, match="truncated|authentication|header"):
        unseal(blob[:end])


def test_truncation_at_a_boundary_fails_on_the_last_chunk_flag():
    """The cut file's new final chunk was sealed as "not last": authentication fails there."""
    blob = seal(os.urandom(3 * CHUNK))
    cut = blob[:HEADER_BYTES + 2 * (CHUNK + TAG_BYTES)]
    with pytest.raises(DecryptionError, match="chunk 1"):
        unseal(cut)


def test_reordered_chunks_are_refused():
    blob = seal(os.urandom(4 * CHUNK + 3))
    c = chunks_of(blob)
    swapped = blob[:HEADER_BYTES] + c[1] + c[0] + b"".join(c[2:])
    with pytest.raises(DecryptionError, match="chunk 0"):
        unseal(swapped)


def test_an_appended_or_duplicated_chunk_is_refused():
    blob = seal(os.urandom(2 * CHUNK + 3))
    c = chunks_of(blob)
    with pytest.raises(DecryptionError):
        unseal(blob + c[0])                      # a chunk appended
    other = seal(os.urandom(2 * CHUNK + 3))
    with pytest.raises(DecryptionError):
        unseal(blob + chunks_of(other)[-1])      # another file's final chunk appended
    with pytest.raises(DecryptionError):
        unseal(blob[:HEADER_BYTES] + c[0] + c[0] + c[1] + c[2])


def test_chunks_spliced_from_another_file_are_refused():
    a, b = seal(os.urandom(3 * CHUNK)), seal(os.urandom(3 * CHUNK))
    ca, cb = chunks_of(a), chunks_of(b)
    with pytest.raises(DecryptionError, match="chunk 1"):
        unseal(a[:HEADER_BYTES] + ca[0] + cb[1] + ca[2])


def test_a_file_under_another_name_or_folder_is_refused():
    blob = seal(b"weights", name="model.safetensors")
    with pytest.raises(DecryptionError, match="authentication"):
        unseal(blob, name="checkpoints/ckpt-0000000001.safetensors")
    with pytest.raises(DecryptionError, match="another encrypted folder"):
        unseal(blob, folder="cd" * 16)


def test_the_wrong_key_is_named_by_its_key_id():
    blob = seal(b"secret")
    with pytest.raises(DecryptionError) as err:
        unseal(blob, key=OTHER)
    assert f"key id {OTHER.key_id}" in str(err.value)
    assert f"needs key id {KEY.key_id}" in str(err.value)
    assert KEY.secret.hex() not in str(err.value) + (err.value.hint or "")


def test_a_changed_chunk_size_in_the_header_is_refused():
    blob = bytearray(seal(os.urandom(3 * CHUNK)))
    struct.pack_into(">I", blob, 12, CHUNK * 2)
    with pytest.raises(DecryptionError):
        unseal(bytes(blob))
    struct.pack_into(">I", blob, 12, 1 << 30)    # absurd: refused before any allocation
    with pytest.raises(DecryptionError, match="chunk size"):
        unseal(bytes(blob))


def test_nonces_are_unique_per_chunk_and_keys_per_file():
    """Chunk i of a file uses nonce 0^32 || i under a key derived from the file's salt:
    the same plaintext chunk encrypts differently at each index and in each file."""
    data = b"\0" * (3 * CHUNK)
    blob = seal(data)
    c = chunks_of(blob)
    assert len({x[:CHUNK] for x in c}) == 3
    assert chunks_of(seal(data))[0] != c[0]


def test_writer_refuses_absurd_chunk_sizes():
    with pytest.raises(ValueError):
        EncryptingWriter(io.BytesIO(), KEY, name="x", folder_id=FOLDER, chunk_size=8)


def test_a_reused_mutable_buffer_is_copied_not_held():
    """Callers may refill a bytearray after write(): the writer must not keep a view of it."""
    data = os.urandom(3 * CHUNK + 50)
    out, buf = io.BytesIO(), bytearray(100)
    with EncryptingWriter(out, KEY, name="model.safetensors", folder_id=FOLDER,
                          chunk_size=CHUNK) as w:
        for lo in range(0, len(data), 100):
            part = data[lo:lo + 100]
            buf[:len(part)] = part
            w.write(memoryview(buf)[:len(part)])
            buf[:] = b"\xff" * 100
    assert unseal(out.getvalue()) == data
