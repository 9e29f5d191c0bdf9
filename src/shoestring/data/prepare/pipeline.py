"""``prepare(config)``: the Python API behind ``shoestring data prepare``.

Two passes over the data, memory bounded by the chunk size:

1. read → validate (quarantine) → PII scan/rewrite → exact digest, MinHash /
   pHash → stage (:mod:`.ingest`);
2. decide duplicates (:mod:`.near`, :mod:`.clusters`), label issues
   (:mod:`.labels`), leakage-free split (:mod:`.split`), training-split
   statistics (:mod:`.stats`), then write shards and the report
   (:mod:`.writeout`).

The output is built in a hidden sibling folder and renamed into place, so a
crash never leaves a half-written prepared folder. Environment (for the PII
secret) and clock are parameters; nothing here prints.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shoestring.crypto.folder import encrypt_in_place, encrypt_output, unencrypted_files
from shoestring.data.prepare import clusters as cl
from shoestring.data.prepare.config import PrepareConfig
from shoestring.data.prepare.fingerprint import PREPARE_VERSION, content_key
from shoestring.data.prepare.ingest import Ingested, ingest
from shoestring.data.prepare.labels import (
    cross_val_probabilities,
    find_label_issues,
    image_features,
)
from shoestring.data.prepare.labelspace import LabelSpace, label_space
from shoestring.data.prepare.near import NearPairs, image_near_pairs, text_near_pairs
from shoestring.data.prepare.open_source import open_records
from shoestring.data.prepare.pii_ops import PiiRewriter, key_fingerprint, load_secret
from shoestring.data.prepare.records import GIVEN_TEST, RecordSource
from shoestring.data.prepare.split import assign_splits
from shoestring.data.prepare.validate import Rules, check_ranges_known
from shoestring.data.prepare.writeout import Decisions, write_output
from shoestring.data.sources import split_spec
from shoestring.errors import ConfigError, DataError, ShoestringError
from shoestring.io import read_text

MANIFEST = "manifest.json"
SCRATCH = ("staging", "minhash")  # removed before the folder takes its name
LABEL, OVERLAP = 3, 4  # drop reasons after clusters.EXACT (1) and clusters.NEAR (2)


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    report: dict
    reused: bool


def _existing(out: Path) -> dict | None:
    try:
        return json.loads(read_text(out / MANIFEST))
    except (OSError, json.JSONDecodeError):
        return None


def _check_out(out: Path, key: str, force: bool) -> dict | None:
    """The existing report when ``out`` already holds this preparation."""
    manifest = _existing(out)
    if manifest is None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ShoestringError(f"'{out}' exists and is not a prepared folder",
                                  hint="choose an empty or new --out folder; Shoestring never "
                                  "deletes a folder it did not write")
        return None
    if manifest.get("key") == key and not force:
        try:
            return json.loads(read_text(out / "report.json"))
        except (OSError, json.JSONDecodeError):
            return None
    if manifest.get("key") != key and not force:
        raise ShoestringError(
            f"'{out}' holds a different preparation (other inputs or options)",
            hint="pass --force to replace it, or choose another --out")
    return None


def _secret(config: PrepareConfig, environ: Mapping[str, str]) -> bytes | None:
    if config.pii not in ("hash", "encrypt"):
        return None
    return load_secret(environ, config.pii_key_env, config.pii_key_file)


def prepare(config: PrepareConfig, *, environ: Mapping[str, str] | None = None,
            clock: Callable[[], float] = time.perf_counter,
            log: Callable[[str], None] | None = None) -> PrepareResult:
    """Validate, deduplicate, scan for PII, split and pack ``config.source`` into ``config.out``.

    >>> from shoestring.data.prepare.config import resolve_prepare_config
    >>> cfg = resolve_prepare_config({"source": "digits", "out": "/tmp/ss-prep"})
    >>> prepare(cfg).report["kept"]                       # doctest: +SKIP
    1797
    """
    start = clock()
    log = log or (lambda _msg: None)
    environ = os.environ if environ is None else environ
    source = open_records(config.source, config, config.image_mode)
    unknown = check_ranges_known(config.ranges, source.feature_names)
    if unknown and source.kind == "table":
        raise ConfigError([f"ranges.{c}: no numeric feature column of that name" for c in unknown],
                          hint=f"numeric columns are: {', '.join(source.feature_names or ())}")
    if config.split == "given" and not source.has_given_splits:
        raise ConfigError([f"split: 'given' but '{config.source}' has no split of its own"],
                          hint="use --split random (or auto)")
    secret = _secret(config, environ)
    out = Path(config.out)
    options = config.key_fields()
    scheme, arg = split_spec(config.source)
    options["source"] = f"{scheme}#{arg.partition('#')[2]}" if source.files else config.source
    key = content_key(source.files, options,
                      {"pii_key": key_fingerprint(secret)} if secret else None)
    reused = _check_out(out, key, config.force)
    if reused is not None:
        log(f"reusing '{out}': same inputs and options (key {key[:12]})")
        return PrepareResult(out, reused, True)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        if config.encrypt:
            encrypt_output(work)
        report = _run(config, source, work, secret, log)
        report["key"] = key
        report["elapsed_seconds"] = round(clock() - start, 3)
        write_manifest_and_report(work, report, key, source)
        if config.encrypt:
            _encrypt_streamed_files(work)
        _swap_in(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PrepareResult(out, report, False)


def _run(config: PrepareConfig, source: RecordSource, work: Path, secret: bytes | None,
         log: Callable[[str], None]) -> dict:
    rules = Rules(labels=frozenset(config.labels) if config.labels else None,
                  ranges=config.ranges or None, min_chars=config.min_chars)
    rewriter = PiiRewriter(config.pii, secret) if config.pii not in ("off", "report") else None
    log(f"reading {config.source} ({source.kind})")
    ing = ingest(source, work, chunk=config.chunk_records, rules=rules, near=config.near,
                 pii_mode=config.pii, pii_types=config.pii_types, rewriter=rewriter,
                 near_threshold=config.near_threshold, ngram=config.ngram,
                 num_perm=config.num_perm, lsh_recall=config.lsh_recall,
                 quarantine=work / "quarantine.jsonl")
    if ing.input == 0:
        ing.staging.close()
        raise DataError(f"'{config.source}' holds no records",
                        hint="check the path; blank lines and a CSV header alone are not records")
    try:
        return _decide_and_write(config, source, work, ing, log)
    finally:
        if ing.text_index is not None:
            ing.text_index.close()
        ing.staging.close()


def _near(config: PrepareConfig, ing: Ingested) -> NearPairs:
    if not config.near:
        return NearPairs.none()
    if ing.text_index is not None:
        return text_near_pairs(ing.text_index, config.near_threshold)
    if ing.phashes is not None:
        return image_near_pairs(ing.staging.x(), ing.phashes, config.phash_distance,
                                config.pixel_similarity)
    return NearPairs.none()


def _decide_and_write(config: PrepareConfig, source: RecordSource, work: Path, ing: Ingested,
                      log: Callable[[str], None]) -> dict:
    st = ing.staging
    n = st.n
    log(f"{ing.input} records read, {n} valid; finding duplicates")
    # Test records come first, so a duplicate pair across train/test keeps the test copy.
    priority = np.where(st.given == GIVEN_TEST, 0, 1).astype(np.int64) * n + np.arange(n)
    near = _near(config, ing)
    remove = not config.keep_duplicates
    exempt = _short_units(config, source, ing)
    dd = cl.decide(ing.digests, near.pairs, near.similarity, priority,
                   remove_exact=remove and config.exact, remove_near=remove and config.near,
                   max_cluster=config.max_cluster, exempt=exempt)
    space = label_space(st.label_codes, source.kind, config.task)
    y = space.y(st.codes)
    reason = dd.reason.copy()
    issues = _label_issues(config, source, st, y, reason == cl.KEEP, space, log)
    if issues is not None and config.drop_label_issues and len(issues["ids"]):
        hit = issues["ids"][reason[issues["ids"]] == cl.KEEP]
        reason[hit] = LABEL
    use_given = config.split == "given" or (config.split == "auto" and source.has_given_splits)
    if use_given:
        # A training record that is a copy or a verified near-duplicate of a kept
        # test record is the leakage the split exists to prevent.
        alive = reason == cl.KEEP
        test = alive & (st.given == GIVEN_TEST)
        reason[alive & ~test & cl.related_to(test, alive, dd)] = OVERLAP
    kept_mask = reason == cl.KEEP
    kept = np.flatnonzero(kept_mask)
    groups = cl.split_groups(kept_mask, dd, config.max_cluster)
    strata = np.where(y[kept] >= 0, y[kept], -1) if space.task == "classification" \
        else np.full(len(kept), -1)
    splits = assign_splits(groups[kept], strata, st.given[kept], config.val_fraction,
                           config.test_fraction, config.seed, use_given)
    split_of = np.zeros(n, dtype=np.int8)
    split_of[kept] = splits
    log(f"{len(kept)} records kept; writing shards")
    decisions = Decisions(reason=reason, dedup=dd, group=groups, kept=kept, splits=splits,
                          y=y, space=space, near=near, issues=issues, use_given=use_given,
                          across=cl.cross_split_relations(kept_mask, split_of, dd))
    report = write_output(config, source, work, ing, decisions)
    if source.text_unit is not None:
        report["text"] = _text_report(config, source, ing, priority, exempt)
    return report


def _short_units(config: PrepareConfig, source: RecordSource, ing: Ingested
                 ) -> np.ndarray | None:
    """``text:`` units too short to be judged duplicates (speaker tags, stage directions)."""
    if source.text_unit is None or ing.text_chars is None or config.dedup_min_chars == 0:
        return None
    return ing.text_chars < config.dedup_min_chars


def _text_report(config: PrepareConfig, source: RecordSource, ing: Ingested,
                 priority: np.ndarray, exempt: np.ndarray | None) -> dict:
    """What the unit of a ``text:`` corpus was, why, and what the exemption kept."""
    from shoestring.data.prepare.exact import exact_groups

    short = exempt if exempt is not None else np.zeros(ing.staging.n, dtype=bool)
    rep = exact_groups(ing.digests, priority)[1]
    repeats = short & (rep != np.arange(len(rep)))
    return {"unit": source.text_unit, "why": source.notes[0] if source.notes else "",
            "dedup_min_chars": config.dedup_min_chars, "short_units": int(short.sum()),
            "short_repeats_kept": int(repeats.sum())}


def _label_issues(config: PrepareConfig, source: RecordSource, st, y: np.ndarray,
                  alive: np.ndarray, space: LabelSpace, log) -> dict | None:
    if not config.label_issues or space.task != "classification" or len(space.classes) < 2:
        return None
    ids = np.flatnonzero(alive & (y >= 0))
    counts = np.bincount(y[ids], minlength=len(space.classes))
    folds = min(config.cv_folds, int(counts[counts > 0].min())) if counts.any() else 0
    if folds < 2 or (counts > 0).sum() < 2:
        return {"skipped": "too few examples per class for cross-validation", "ids": ids[:0]}
    log(f"scoring labels of {len(ids)} records ({folds}-fold cross-validation)")
    labels = np.unique(y[ids], return_inverse=True)
    present, local = labels[0], labels[1]
    if source.kind == "text":
        feats = st.texts(ids)
    elif source.kind == "image":
        feats = image_features(st.x()[ids]) / (255.0 if st.dtype == np.uint8 else 1.0)
    else:
        feats = np.asarray(st.x()[ids], dtype=np.float32)
    probs = cross_val_probabilities(feats, local, folds, config.seed, source.kind)
    found = find_label_issues(probs, local)
    return {"ids": ids[found.index], "given": present[found.given],
            "suggested": present[found.suggested], "confidence": found.confidence,
            "folds": folds, "scored": len(ids)}


def write_manifest_and_report(work: Path, report: dict, key: str, source: RecordSource) -> None:
    from shoestring.io import atomic_write_bytes

    atomic_write_bytes(work / "report.json", json.dumps(report, indent=1).encode())
    manifest = {"key": key, "version": PREPARE_VERSION, "kind": source.kind,
                "source": source.spec, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime())}
    atomic_write_bytes(work / MANIFEST, json.dumps(manifest, indent=1).encode())


def _encrypt_streamed_files(work: Path) -> None:
    """Encrypt what was appended to as it went (the quarantine); scratch is removed."""
    for path in unencrypted_files(work):
        if path.relative_to(work).parts[0] not in SCRATCH:
            encrypt_in_place(path)


def _swap_in(work: Path, out: Path) -> None:
    for scratch in SCRATCH:
        shutil.rmtree(work / scratch, ignore_errors=True)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)

