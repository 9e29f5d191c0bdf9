"""Offline licenses for on-premises customers, signed with Ed25519.

A license file is JSON: ``{"license": {...}, "signature": "<base64>"}``. The
signature covers the canonical JSON of the ``license`` object (sorted keys, no
spaces), so any edit of any field, even whitespace-insensitive ones, breaks it.
Ed25519 (RFC 8032) via the ``cryptography`` package: small keys, deterministic
signatures, no parameters to get wrong. Verification needs only the public key
and the clock, never the network.

The vendor **pins** its public key into what it ships (:func:`pin_public_key`
writes ``vendor.pub`` into a run folder): a pinned run folder is served only
with a license signed by that key, and ``--public-key`` cannot replace it, so a
customer cannot sign their own license. The pin is a file like the weights: a
customer who can edit the run folder can remove it, as with any check that
runs on their machine.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes, read_bytes
from shoestring.models.run_folder import CARD, RunFolder

FORMAT = "shoestring.license/1"


@dataclass(frozen=True)
class License:
    customer: str
    models: tuple[str, ...]
    expires: date
    features: tuple[str, ...] = ()
    issued: date | None = None

    def covers(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def payload(self) -> dict[str, Any]:
        return {"format": FORMAT, "customer": self.customer, "models": list(self.models),
                "expires": self.expires.isoformat(), "features": list(self.features),
                "issued": self.issued.isoformat() if self.issued else None}


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Write a new Ed25519 key pair as PEM; the private key readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private_path = Path(private_path)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    atomic_write_bytes(Path(public_path), key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _read_key(path: Path, private: bool):
    what = "signing (private)" if private else "public"
    try:
        data = read_bytes(Path(path))  # vendor.pub of an encrypted run is encrypted too
    except OSError as exc:
        raise ShoestringError(f"cannot read {what} key '{path}': {exc.strerror}",
                              hint="create a pair with 'shoestring license keygen'") from None
    return _load_key(data, path, private)


def _load_key(data: bytes, path: Path, private: bool):
    what = "signing (private)" if private else "public"
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise ShoestringError(f"'{path}' is not a PEM {what} key: {exc}",
                              hint="pass the file written by 'shoestring license keygen'") \
            from None
    wanted = Ed25519PrivateKey if private else Ed25519PublicKey
    if not isinstance(key, wanted):
        raise ShoestringError(f"'{path}' is not an Ed25519 {what} key",
                              hint="licenses are signed with Ed25519 keys from "
                              "'shoestring license keygen'")
    return key


def issue_license(lic: License, signing_key: Path, out: Path) -> dict[str, Any]:
    """Sign ``lic`` with the private key in ``signing_key`` and write it to ``out``."""
    if not lic.models:
        raise ShoestringError("a license must name at least one model",
                              hint="pass --models NAME[,NAME…] (or '*' for all)")
    key = _read_key(signing_key, private=True)
    payload = lic.payload()
    doc = {"license": payload,
           "signature": base64.b64encode(key.sign(_canonical(payload))).decode()}
    atomic_write_bytes(Path(out), (json.dumps(doc, indent=2) + "\n").encode())
    return doc


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pin_public_key(public_key: Path, run_dir: Path) -> Path:
    """Pin the vendor's public key into ``run_dir`` (``vendor.pub``); returns its path."""
    key = _read_key(public_key, private=False)
    folder = RunFolder(run_dir)
    if not folder.has_model():
        raise ShoestringError(f"'{run_dir}' is not a run folder (no {CARD})",
                              hint="pin the key into the run folder you ship")
    out = folder.vendor_key
    atomic_write_bytes(out, key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def pinned_key(run_dirs: list[Path], public_key: Path | None) -> Path | None:
    """The key licenses must be signed by: the one pinned in the run folders, if any.

    Refuses run folders pinned to different keys, and a ``public_key`` that is not the
    pinned one (it cannot replace the vendor's). None when nothing is pinned.
    """
    pins = [RunFolder(d).vendor_key for d in run_dirs if RunFolder(d).vendor_key.exists()]
    if not pins:
        return None
    raw = {p: _raw(_read_key(p, private=False)) for p in pins}
    if len(set(raw.values())) > 1:
        raise ShoestringError(f"the run folders are pinned to different vendor keys: "
                              f"{', '.join(str(p) for p in pins)}",
                              hint="serve run folders of one vendor together")
    if public_key is not None and _raw(_read_key(public_key, private=False)) != raw[pins[0]]:
        raise ShoestringError(f"--public-key '{public_key}' is not the vendor key pinned in "
                              f"{pins[0]}; a pinned key cannot be replaced",
                              hint="use the license the vendor issued for these models "
                              "(and drop --public-key)")
    return pins[0]


def verify_license(path: Path, public_key: Path, today: date) -> License:
    """The license in ``path`` if its signature is valid and it has not expired."""
    key = _read_key(public_key, private=False)
    try:
        doc = json.loads(Path(path).read_text())
        payload, sig = doc["license"], base64.b64decode(doc["signature"], validate=True)
    except OSError as exc:
        raise ShoestringError(f"cannot read license '{path}': {exc.strerror}",
                              hint="check the --license path") from None
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ShoestringError(f"'{path}' is not a Shoestring license file",
                              hint="ask the vendor for the original license file") from None
    try:
        key.verify(sig, _canonical(payload))
    except InvalidSignature:
        raise ShoestringError(f"license '{path}' has been altered or was not signed by this "
                              "public key", hint="use the untouched file and the vendor's "
                              "public key") from None
    try:
        lic = License(customer=str(payload["customer"]), models=tuple(payload["models"]),
                      expires=date.fromisoformat(payload["expires"]),
                      features=tuple(payload.get("features") or ()),
                      issued=date.fromisoformat(payload["issued"]) if payload.get("issued")
                      else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ShoestringError(f"license '{path}' is signed but malformed: {exc}",
                              hint="ask the vendor to reissue it") from None
    if payload.get("format") != FORMAT:
        raise ShoestringError(f"license '{path}' has format {payload.get('format')!r}, "
                              f"expected {FORMAT!r}", hint="ask the vendor to reissue it")
    if today > lic.expires:
        raise ShoestringError(f"license '{path}' for {lic.customer} expired on "
                              f"{lic.expires.isoformat()}",
                              hint="ask the vendor for a renewed license")
    return lic


def check_models(lic: License, models: list[str], path: Path) -> None:
    """Refuse to serve any model the license does not cover (all named at once)."""
    missing = [m for m in models if not lic.covers(m)]
    if missing:
        raise ShoestringError(
            f"license '{path}' for {lic.customer} does not cover model(s) "
            f"{', '.join(repr(m) for m in missing)} (it covers {', '.join(lic.models)})",
            hint="serve only licensed models (--name sets a model's name) or get a license "
            "that covers them")
