"""Generated corpora with planted problems, and the exact truth about them.

Documents are random words from a large vocabulary, so unrelated documents
share no word 3-gram. A near-duplicate is a copy with ``q`` fresh words
appended: a base of ``S`` shingles then has Jaccard exactly ``S / (S + q)``
with its copy (40 shingles: q=10 gives 0.8, q=11 gives 0.784, q=8 0.833).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

BASE_WORDS = 42  # 40 word 3-grams

PII_SAMPLES = {
    "email": ["reach me at jane.roe@example.org today", "ops-team+alerts@mail.example.co.uk"],
    "phone": ["call +44 20 7946 0958 after noon", "office (555) 201-3344 ext"],
    "credit_card": ["card 4111 1111 1111 1111 on file", "paid with 5500-0000-0000-0004"],
    "iban": ["wire to GB82 WEST 1234 5698 7654 32 please", "iban DE89370400440532013000 ok"],
    "ip_address": ["server 192.168.10.20 is down", "v6 host 2001:db8::8a2e:370:7334 up"],
    "us_ssn": ["ssn 123-45-6789 on the form", "record 078-05-1120 archived"],
    "secret": ["key AKIAIOSFODNN7EXAMPLE leaked", "api_key=Zx9kQ2mN8vB4tR6yW1pL3sD5 set"],
}
# Look-alikes that must NOT be reported.
PII_DECOYS = ["card 4111 1111 1111 1112 fails luhn", "iban GB82 WEST 1234 5698 7654 33 bad",
              "ip 999.10.1.1 invalid", "ssn 666-12-3456 never issued", "time 10:30:00 today",
              "date 2023-01-15 and order 12345"]


def words(rng: random.Random, n: int) -> list[str]:
    return [f"w{rng.randrange(1_000_000)}" for _ in range(n)]


@dataclass
class TextCorpus:
    path: Path
    input: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    exact_dups: int = 0
    near_dups: int = 0          # planted copies at or above the threshold
    below: int = 0              # planted copies just below it (must be kept)
    pii: dict[str, int] = field(default_factory=dict)
    unique: int = 0


def write_text_corpus(path: Path, seed: int = 0, n_unique: int = 120,
                      threshold: float = 0.8) -> TextCorpus:
    """A JSONL corpus with exact, near, below-threshold duplicates, PII and bad lines."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    truth = TextCorpus(path)
    bases = [words(rng, BASE_WORDS) for _ in range(n_unique)]

    def emit(text: str, label: str = "a") -> None:
        lines.append(json.dumps({"text": text, "label": label}).encode() + b"\n")

    for b in bases:
        emit(" ".join(b))
    truth.unique = n_unique
    for b in bases[:10]:  # exact: case and spacing differ only
        emit("  " + " ".join(b).upper().replace(" ", "   ") + " ")
        truth.exact_dups += 1
    for q in (10, 8, 5, 1):  # Jaccard 0.8 (at), 0.833, 0.889, 0.976: removed
        for b in bases[10 + 5 * q: 15 + 5 * q]:
            emit(" ".join(b + words(rng, q)))
            truth.near_dups += 1
    for b in bases[80:90]:  # Jaccard 40/51 = 0.784: just below, kept
        emit(" ".join(b + words(rng, 11)))
        truth.below += 1
    for kind, samples in PII_SAMPLES.items():
        for s in samples:
            emit(f"{s} {' '.join(words(rng, 6))}")
        truth.pii[kind] = len(samples)
    for s in PII_DECOYS:
        emit(f"{s} {' '.join(words(rng, 6))}")
    truth.unique += sum(len(s) for s in PII_SAMPLES.values()) + len(PII_DECOYS)
    bad = {"bad_json": [b'{"text": "unterminated\n'],
           "missing_field": [b'{"body": "no text field here"}\n'],
           "bad_encoding": [b'{"text": "caf\xe9 latin-1 bytes"}\n'],
           "empty_text": [b'{"text": "   "}\n', b'{"text": ""}\n'],
           "not_an_object": [b'["a", "list"]\n']}
    for reason, raws in bad.items():
        lines += raws
        truth.invalid[reason] = len(raws)
    lines.append(b"\n")  # blank lines are not records
    order = list(range(len(lines)))
    rng.shuffle(order)
    path.write_bytes(b"".join(lines[i] for i in order))
    truth.input = sum(1 for line in lines if line.strip())
    return truth
