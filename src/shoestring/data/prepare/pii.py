"""Offline PII detection in text: regular expressions plus checksums, no models.

Each type has a pattern and, where the format has one, a validity check that
removes most false matches:

* ``email``: a simplified WHATWG HTML "valid e-mail address".
* ``phone``: North American (NANP) numbers with separators, and ``+CC``
  international numbers of 8 to 15 digits (ITU-T E.164 allows at most 15).
* ``credit_card``: 13 to 19 digits with an issuer prefix of a major network
  (ISO/IEC 7812 IIN ranges as published by the networks) and a valid Luhn
  check digit (ISO/IEC 7812-1 annex B).
* ``iban``: country code, check digits and BBAN, valid under ISO 13616's
  mod-97 check (ISO 7064 MOD 97-10).
* ``ip_address``: IPv4 and IPv6, each candidate parsed by :mod:`ipaddress`.
* ``us_ssn``: dashed ``AAA-GG-SSSS`` without the never-issued areas 000, 666 and
  900-999, group 00 or serial 0000 (Social Security Administration rules).
* ``secret``: provider key formats (AWS, GitHub, Slack, Stripe, Google,
  OpenAI), JWTs, PEM private-key blocks, and ``api_key=...``-style
  assignments; patterns after the gitleaks default rules
  (https://github.com/gitleaks/gitleaks, config/gitleaks.toml).

Overlaps are resolved by the order of :data:`DETECTORS`: a span claimed by an
earlier type (a secret, an e-mail) is not reported again as a later one.
A whole chunk of texts is scanned per pattern in one regex pass over the
texts joined by NUL characters, then matches are mapped back to documents.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Finding:
    doc: int
    start: int
    end: int
    kind: str
    value: str


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1 Luhn check. ``luhn_valid("4111111111111111")`` → True."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (prefix lengths to check, allowed lengths) per network; ISO/IEC 7812 IINs.
def _card_network_ok(d: str) -> bool:
    n = len(d)
    p2, p4, p6 = int(d[:2]), int(d[:4]), int(d[:6])
    return ((d[0] == "4" and n in (13, 16, 19))                                   # Visa
            or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)               # Mastercard
            or (p2 in (34, 37) and n == 15)                                       # Amex
            or ((p4 == 6011 or p2 == 65 or 644 <= int(d[:3]) <= 649
                 or 622126 <= p6 <= 622925) and 16 <= n <= 19)                    # Discover
            or (3528 <= p4 <= 3589 and 16 <= n <= 19)                             # JCB
            or ((p2 in (36, 38, 39) or 300 <= int(d[:3]) <= 305) and 14 <= n <= 19)  # Diners
            or (p2 == 62 and 16 <= n <= 19))                                      # UnionPay


def card_valid(text: str) -> bool:
    d = re.sub(r"[ -]", "", text)
    return 13 <= len(d) <= 19 and _card_network_ok(d) and luhn_valid(d)


def iban_valid(text: str) -> bool:
    """ISO 13616 mod-97: move the first four characters to the end, letters to 10..35."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s.isalnum():
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ip_valid(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _digits_between(lo: int, hi: int) -> Callable[[str], bool]:
    return lambda text: lo <= sum(ch.isdigit() for ch in text) <= hi


_SECRET = re.compile(
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{82}\b"
    r"|\bxox[baprs]-[A-Za-z0-9-]{10,}"
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{20,}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"
    r"|\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[^\x00]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?i:\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token"
    r"|passw(?:or)?d)\b[\"']?\s*[:=]\s*[\"']?)(?P<value>[A-Za-z0-9_\-/+=.]{12,})")

# name -> (pattern, check, group that holds the value)
DETECTORS: dict[str, tuple[re.Pattern, Callable[[str], bool] | None, str | int]] = {
    "secret": (_SECRET, None, "value"),
    "email": (re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}"
                         r"(?![\w-])"), None, 0),
    "iban": (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
             iban_valid, 0),
    "credit_card": (re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), card_valid, 0),
    "us_ssn": (re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
               None, 0),
    "ip_address": (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
                              r"|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
                   _ip_valid, 0),
    "phone": (re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w])"
                         r"|(?<![\w+(])(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
                         r"(?![\w])"),
              _digits_between(8, 15), 0),
}


def _overlaps(starts: list[int], ends: list[int], s: int, e: int) -> bool:
    k = bisect.bisect_left(starts, s)
    return (k < len(starts) and starts[k] < e) or (k > 0 and ends[k - 1] > s)


def scan(texts: Sequence[str], kinds: Sequence[str] = tuple(DETECTORS)) -> list[Finding]:
    """Every PII span in ``texts``, sorted by document and position.

    >>> [(f.kind, f.value) for f in scan(["mail a.b@example.org or call +44 20 7946 0958"])]
    [('email', 'a.b@example.org'), ('phone', '+44 20 7946 0958')]
    """
    if not texts:
        return []
    joined = "\x00".join(t.replace("\x00", " ") for t in texts)
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    taken_starts: list[int] = []  # disjoint spans claimed so far, sorted
    taken_ends: list[int] = []
    found: list[tuple[int, int, str, str]] = []
    for kind, (pattern, check, group) in DETECTORS.items():
        if kind not in kinds:
            continue
        for m in pattern.finditer(joined):
            s, e = m.span(group) if m.group(group) is not None else m.span()
            value = joined[s:e]
            if check is not None and not check(value):
                continue
            if _overlaps(taken_starts, taken_ends, s, e):
                continue
            k = bisect.bisect_left(taken_starts, s)
            taken_starts.insert(k, s)
            taken_ends.insert(k, e)
            found.append((s, e, kind, value))
    found.sort()
    out = []
    for s, e, kind, value in found:
        doc = int(np.searchsorted(starts, s, side="right") - 1)
        out.append(Finding(doc, s - int(starts[doc]), e - int(starts[doc]), kind, value))
    return out
