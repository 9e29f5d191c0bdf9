"""Rewriting PII found by :mod:`.pii`: mask, redact, hash or encrypt.

* ``mask``: every letter and digit becomes ``*``, keeping separators, the last
  four digits of card, IBAN, phone and SSN numbers (as PCI DSS 3.4 permits
  for card numbers), and the domain of e-mail addresses.
* ``redact``: the span becomes its type, e.g. ``[EMAIL]``.
* ``hash``: ``[EMAIL:<first 16 hex digits of SHA-256(salt || value)>]``. Equal
  values give equal tokens, so joins and duplicate detection still work; the
  salt stops dictionary attacks on small spaces such as phone numbers, so it
  must be secret and is read from the environment or a key file.
* ``encrypt``: ``[EMAIL:enc:<base64url(nonce || AES-GCM ciphertext)>]`` with a
  128/192/256-bit key (NIST SP 800-38D; 96-bit random nonce; the type name
  is the associated data). :func:`reveal` reverses it with the same key.

Keys and salts are never written by Shoestring: they are read from an
environment variable or a file the user controls, and only a fingerprint
(:func:`key_fingerprint`) enters the preparation key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from shoestring.data.prepare.pii import Finding
from shoestring.errors import ShoestringError

KEEP_LAST_DIGITS = {"credit_card": 4, "iban": 4, "phone": 4, "us_ssn": 4}
_TOKEN = re.compile(r"\[([A-Z_]+):enc:([A-Za-z0-9_-]+=*)\]")
NONCE_BYTES = 12
HASH_HEX = 16


def _decode_secret(raw: bytes) -> bytes:
    text = raw.strip()
    try:
        if len(text) in (32, 48, 64) and all(c in b"0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text.decode())
        decoded = base64.b64decode(text, validate=True)
        if len(decoded) in (16, 24, 32):
            return decoded
    except (binascii.Error, ValueError):
        pass
    return text


def load_secret(environ: Mapping[str, str], env_var: str, key_file: Path | None) -> bytes:
    """The salt or key: from ``key_file`` if given, else ``environ[env_var]``.

    Hex (32/48/64 digits) and base64 (16/24/32 bytes) are decoded; anything
    else is used as raw bytes (fine for a salt, rejected later for a key).
    """
    if key_file is not None:
        try:
            raw = Path(key_file).read_bytes()
        except OSError as exc:
            raise ShoestringError(f"cannot read PII key file '{key_file}': {exc.strerror}",
                                  hint="check the path and its permissions") from None
    elif environ.get(env_var):
        raw = environ[env_var].encode()
    else:
        raise ShoestringError(
            f"PII hashing/encryption needs a secret, but ${env_var} is not set and no key "
            "file was given",
            hint=f"export {env_var}=$(python -c 'import os; print(os.urandom(32).hex())') "
            "and keep it safe (without it encrypted values cannot be recovered), "
            "or pass --pii-key-file FILE")
    secret = _decode_secret(raw)
    if len(secret) < 16:
        raise ShoestringError(f"the PII secret is {len(secret)} bytes; at least 16 are needed",
                              hint="use 32 random bytes, e.g. os.urandom(32).hex()")
    return secret


def key_fingerprint(secret: bytes) -> str:
    """A short identifier of the secret, safe to store (not reversible)."""
    return hashlib.sha256(b"shoestring-pii-key-id\x00" + secret).hexdigest()[:16]


def _mask(value: str, kind: str) -> str:
    if kind == "email":
        local, _, domain = value.partition("@")
        return local[:1] + "*" * (len(local) - 1) + "@" + domain
    keep = KEEP_LAST_DIGITS.get(kind, 0)
    out, seen = [], 0
    for ch in reversed(value):
        if ch.isalnum():
            seen += 1
            out.append(ch if seen <= keep else "*")
        else:
            out.append(ch)
    return "".join(reversed(out))


class PiiRewriter:
    """Applies one operator to findings; ``secret`` is the salt (hash) or key (encrypt)."""

    def __init__(self, mode: str, secret: bytes | None = None) -> None:
        if mode in ("hash", "encrypt") and secret is None:
            raise ValueError(f"PII mode {mode!r} needs a secret")
        self.mode, self.secret = mode, secret
        self._aead = None
        if mode == "encrypt":
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            if len(secret) not in (16, 24, 32):
                raise ShoestringError(
                    f"an AES-GCM key must be 16, 24 or 32 bytes, the PII secret is {len(secret)}",
                    hint="give 32 random bytes as 64 hex digits or base64")
            self._aead = AESGCM(secret)

    def token(self, value: str, kind: str) -> str:
        tag = kind.upper()
        if self.mode == "mask":
            return _mask(value, kind)
        if self.mode == "redact":
            return f"[{tag}]"
        if self.mode == "hash":
            digest = hashlib.sha256(self.secret + value.encode("utf-8")).hexdigest()
            return f"[{tag}:{digest[:HASH_HEX]}]"
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), kind.encode())
        return f"[{tag}:enc:{base64.urlsafe_b64encode(nonce + sealed).decode()}]"

    def rewrite(self, text: str, findings: Sequence[Finding]) -> str:
        """``text`` with each finding (all of this text, sorted) replaced by its token."""
        parts, pos = [], 0
        for f in findings:
            parts += [text[pos:f.start], self.token(f.value, f.kind)]
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts)


def reveal(text: str, key: bytes) -> str:
    """Decrypt every ``[TYPE:enc:...]`` token of ``text`` written by ``encrypt`` mode."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(key)

    def one(m: re.Match) -> str:
        blob = base64.urlsafe_b64decode(m.group(2))
        try:
            plain = aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], m.group(1).lower().encode())
        except InvalidTag:
            raise ShoestringError("a PII token does not decrypt with this key",
                                  hint="use the key the data was prepared with") from None
        return plain.decode("utf-8")

    return _TOKEN.sub(one, text)
