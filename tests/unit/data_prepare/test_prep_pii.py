"""PII detection (with checksums) and the four rewriting operators."""

from __future__ import annotations

import base64
import os

import pytest
from planted_corpus import PII_DECOYS, PII_SAMPLES

from shoestring.data.prepare.pii import card_valid, iban_valid, luhn_valid, scan
from shoestring.data.prepare.pii_ops import PiiRewriter, key_fingerprint, load_secret, reveal
from shoestring.errors import ShoestringError


@pytest.mark.parametrize("kind", sorted(PII_SAMPLES))
def test_each_type_is_found_with_its_exact_value(kind):
    for text in PII_SAMPLES[kind]:
        found = scan([text])
        assert [f.kind for f in found] == [kind], text
        f = found[0]
        assert text[f.start:f.end] == f.value


def test_look_alikes_are_not_reported():
    assert scan(PII_DECOYS) == []


def test_checksums():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert card_valid("378282246310005")  # Amex test number
    assert not card_valid("1234 5678 9012 3456")  # no issuer prefix
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765431")


def test_findings_map_back_to_their_document_and_offsets():
    texts = ["nothing here", "x a@b.co y", "", "ip 10.0.0.1"]
    found = scan(texts)
    assert [(f.doc, f.kind) for f in found] == [(1, "email"), (3, "ip_address")]
    assert texts[1][found[0].start:found[0].end] == "a@b.co"


def test_kinds_filter():
    text = "mail a@b.co call +1 415 555 0100"
    assert [f.kind for f in scan([text], kinds=["phone"])] == ["phone"]


def test_operators():
    text = "card 4111 1111 1111 1111 mail john.doe@example.com"
    found = scan([text])
    assert PiiRewriter("mask").rewrite(text, found) == \
        "card **** **** **** 1111 mail j*******@example.com"
    assert PiiRewriter("redact").rewrite(text, found) == "card [CREDIT_CARD] mail [EMAIL]"
    salt = b"s" * 16
    h1 = PiiRewriter("hash", salt).rewrite(text, found)
    assert h1 == PiiRewriter("hash", salt).rewrite(text, found)  # joinable
    assert h1 != PiiRewriter("hash", b"t" * 16).rewrite(text, found)  # salted
    assert "4111" not in h1 and "john" not in h1


def test_encryption_round_trips_only_with_the_key():
    key = os.urandom(32)
    text = "ssn 123-45-6789 and a@b.co"
    sealed = PiiRewriter("encrypt", key).rewrite(text, scan([text]))
    assert "123-45-6789" not in sealed and "a@b.co" not in sealed
    assert reveal(sealed, key) == text
    with pytest.raises(ShoestringError, match="does not decrypt"):
        reveal(sealed, os.urandom(32))


def test_secret_loading(tmp_path):
    key = os.urandom(32)
    assert load_secret({"K": key.hex()}, "K", None) == key
    assert load_secret({"K": base64.b64encode(key).decode()}, "K", None) == key
    f = tmp_path / "key"
    f.write_text(key.hex() + "\n")
    assert load_secret({}, "K", f) == key
    with pytest.raises(ShoestringError, match="at least 16"):
        load_secret({"K": "short"}, "K", None)
    with pytest.raises(ShoestringError, match="cannot read"):
        load_secret({}, "K", tmp_path / "missing")
    with pytest.raises(ShoestringError, match="AES-GCM key"):
        PiiRewriter("encrypt", b"x" * 20)
    assert key.hex() not in key_fingerprint(key) and len(key_fingerprint(key)) == 16
