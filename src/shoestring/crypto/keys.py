"""The encryption key: where it comes from, and the id that names it.

A key is 32 random bytes (AES-256), written as base64. It is read from, in
order: a key file passed in (``--key-file PATH``), the file named by
``$SHOESTRING_ENCRYPTION_KEY_FILE`` (what ``--key-file`` sets, so that worker
processes inherit it), or ``$SHOESTRING_ENCRYPTION_KEY`` itself. Shoestring
never writes a key anywhere but the file ``shoestring encryption keygen``
creates, and never prints one: errors name the source (the variable, the
file), never its contents.

The **key id** names a key without revealing it: the first 8 bytes of
HKDF-SHA256 (RFC 5869) of the key with a fixed label, in hex. It is stored in
every encrypted file's header and in the folder's ``encryption.json``, so a
wrong key is reported as "wrong key (key id X, the folder needs Y)" rather
than as a failed authentication tag.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shoestring.errors import ShoestringError

ENV_KEY = "SHOESTRING_ENCRYPTION_KEY"
ENV_KEY_FILE = "SHOESTRING_ENCRYPTION_KEY_FILE"
KEY_BYTES = 32  # AES-256
KEY_ID_BYTES = 8
_KEY_ID_INFO = b"shoestring/encryption key id/v1"
KEYGEN_HINT = ("create one with 'shoestring encryption keygen --out KEYFILE' and pass "
               f"--key-file KEYFILE (or export {ENV_KEY}=<base64 of 32 random bytes>)")


def hkdf_sha256(secret: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869) from ``cryptography``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


@dataclass(frozen=True)
class EncryptionKey:
    """A 32-byte AES-256 key. Its ``repr`` shows the key id only, never the key.

    >>> key = EncryptionKey(bytes(range(32)), source="test")
    >>> key                                                   # doctest: +ELLIPSIS
    EncryptionKey(key_id='...', source='test')
    >>> len(key.key_id), key.secret.hex() in repr(key)
    (16, False)
    """

    secret: bytes = field(repr=False)
    source: str = "the key"

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ShoestringError(f"{self.source} is {len(self.secret)} bytes; an encryption "
                                  f"key is {KEY_BYTES} bytes (AES-256)", hint=KEYGEN_HINT)

    @property
    def key_id(self) -> str:
        return hkdf_sha256(self.secret, salt=None, info=_KEY_ID_INFO,
                           length=KEY_ID_BYTES).hex()

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id!r}, source={self.source!r})"


def parse_key(text: str | bytes, source: str) -> EncryptionKey:
    """Decode a base64 key (standard or URL-safe alphabet); the error never echoes it.

    >>> parse_key("not a key", "$X")
    Traceback (most recent call last):
    ...
    shoestring.errors.ShoestringError: $X is not base64 of 32 bytes
    """
    raw = text.encode() if isinstance(text, str) else text
    raw = raw.strip()
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            secret = decode(raw + b"=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(secret) == KEY_BYTES:
            return EncryptionKey(secret, source)
    raise ShoestringError(f"{source} is not base64 of {KEY_BYTES} bytes", hint=KEYGEN_HINT)


def read_key_file(path: Path) -> EncryptionKey:
    """The key in ``path``; refused when group or others may read it (like ssh's keys)."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_bytes()
    except OSError as exc:
        raise ShoestringError(f"cannot read key file '{path}': {exc.strerror}",
                              hint="check the path and its permissions; " + KEYGEN_HINT) from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ShoestringError(f"key file '{path}' is readable by others "
                              f"(mode {stat.S_IMODE(mode):o})",
                              hint=f"make it private: chmod 600 '{path}'")
    return parse_key(text, f"key file '{path}'")


def load_key(environ: Mapping[str, str], key_file: Path | None = None) -> EncryptionKey | None:
    """The key from ``key_file``, ``$SHOESTRING_ENCRYPTION_KEY_FILE`` or
    ``$SHOESTRING_ENCRYPTION_KEY`` (in that order), or None when none is given.

    >>> load_key({}) is None
    True
    """
    if key_file is not None:
        return read_key_file(key_file)
    if environ.get(ENV_KEY_FILE):
        return read_key_file(Path(environ[ENV_KEY_FILE]))
    if environ.get(ENV_KEY):
        return parse_key(environ[ENV_KEY], f"${ENV_KEY}")
    return None


def require_key(environ: Mapping[str, str], key_file: Path | None = None, *,
                needed_for: str) -> EncryptionKey:
    """:func:`load_key`, or an error saying what needed a key and how to give one."""
    key = load_key(environ, key_file)
    if key is None:
        raise ShoestringError(f"{needed_for} needs the encryption key, and none was given",
                              hint=f"pass --key-file KEYFILE or set ${ENV_KEY}; " + KEYGEN_HINT)
    return key


def new_key_text() -> str:
    """Base64 of 32 bytes from the operating system's CSPRNG."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def write_new_key(path: Path) -> EncryptionKey:
    """Create ``path`` (mode 600, never overwriting) holding a new key; return it."""
    path = Path(path).expanduser()
    text = new_key_text()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ShoestringError(f"key file '{path}' already exists",
                              hint="a key is never overwritten (the data it encrypted would be "
                              "lost); choose another path or remove the old file yourself") \
            from None
    except OSError as exc:
        raise ShoestringError(f"cannot create key file '{path}': {exc.strerror}",
                              hint="check that the folder exists and is writable") from None
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return parse_key(text, f"key file '{path}'")
