"""The reading pass: every record is validated, scanned for PII, fingerprinted
and either staged or quarantined, one chunk at a time."""

from __future__ import annotations

import json
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shoestring.data.prepare.exact import array_digests, text_digests
from shoestring.data.prepare.minhash import params_for_recall
from shoestring.data.prepare.phash import phash
from shoestring.data.prepare.pii import scan
from shoestring.data.prepare.pii_ops import PiiRewriter
from shoestring.data.prepare.records import RecordSource
from shoestring.data.prepare.staging import Staging
from shoestring.data.prepare.text_index import TextNearIndex
from shoestring.data.prepare.validate import Rules, validate_batch

# Origins of at most this many records per PII type are listed in the report.
PII_EXAMPLES = 5


@dataclass
class Ingested:
    """What the reading pass leaves for the decisions."""

    staging: Staging
    digests: np.ndarray
    text_index: TextNearIndex | None
    phashes: np.ndarray | None
    input: int = 0
    invalid: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    pii_records: int = 0
    pii_examples: dict = field(default_factory=dict)
    converted: int = 0
    text_chars: np.ndarray | None = None  # text: characters, whitespace runs as one


def ingest(source: RecordSource, work: Path, *, chunk: int, rules: Rules, near: bool,
           pii_mode: str, pii_types: list[str], rewriter: PiiRewriter | None,
           near_threshold: float = 0.8, ngram: int = 3, num_perm: int = 128,
           lsh_recall: float = 0.999, quarantine: Path | None = None) -> Ingested:
    """Read ``source`` once into staging under ``work``; rejections go to ``quarantine``."""
    staging = Staging(work / "staging", source.kind)
    index = None
    if near and source.kind == "text":
        index = TextNearIndex(work / "minhash", params_for_recall(near_threshold, num_perm,
                                                                  lsh_recall),
                              ngram=ngram, num_perm=num_perm)
    out = Ingested(staging, np.empty((0, 16), np.uint8), index, None)
    digests, hashes, chars = [], [], []
    with open(quarantine, "a", encoding="utf-8") if quarantine else nullcontext() as qfile:
        for raw in source.batches(chunk):
            out.input += len(raw) + len(raw.rejects)
            out.converted += raw.converted
            batch = validate_batch(raw, source.kind, rules, source.feature_names)
            for r in batch.rejects:
                out.invalid[r.reason] += 1
                if qfile is not None:
                    qfile.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            if len(batch) == 0:
                continue
            originals = batch.texts  # duplicates are judged on the text as read
            scanned = batch.texts if batch.texts is not None else batch.side_texts
            if pii_mode != "off" and scanned is not None:
                rewritten = _pii(out, batch.origins, scanned, pii_types, rewriter)
                if batch.texts is not None and rewritten is not None:
                    batch.texts = rewritten
            if source.kind == "text":
                digests.append(text_digests(originals))
                chars.append(np.fromiter((len(" ".join(t.split())) for t in originals),
                                         np.int64, len(originals)))
                if index is not None:
                    index.add(originals)
            else:
                digests.append(array_digests(batch.x))
                if near and source.kind == "image":
                    hashes.append(phash(batch.x))
            staging.append(batch)
    staging.finish()
    out.digests = np.concatenate(digests) if digests else np.empty((0, 16), np.uint8)
    if hashes:
        out.phashes = np.concatenate(hashes)
    if source.kind == "text":
        out.text_chars = np.concatenate(chars) if chars else np.empty(0, np.int64)
    return out


def _pii(out: Ingested, origins: list[str], texts: list[str], kinds: list[str],
         rewriter: PiiRewriter | None) -> list[str] | None:
    findings = scan(texts, kinds)
    if not findings:
        return None
    by_doc: dict[int, list] = {}
    for f in findings:
        by_doc.setdefault(f.doc, []).append(f)
        out.pii[f.kind] += 1
        ex = out.pii_examples.setdefault(f.kind, [])
        if len(ex) < PII_EXAMPLES and origins[f.doc] not in ex:
            ex.append(origins[f.doc])
    out.pii_records += len(by_doc)
    if rewriter is None:
        return None
    new = list(texts)
    for d, fs in by_doc.items():
        new[d] = rewriter.rewrite(texts[d], fs)
    return new
