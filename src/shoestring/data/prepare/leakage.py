"""``shoestring data leakage TRAIN TEST``: which test records also appear in train.

Both sources are read through the same readers and validation as
``prepare``; a test record leaks when its normalized content equals a
training record's (exact) or when it is a verified near-duplicate of one
(text: Jaccard of word n-grams; images: pHash candidates checked by pixel
similarity). Lee et al., "Deduplicating Training Data Makes Language Models
Better" (ACL 2022), found over 4% of some standard validation sets in their
training sets; this is the check that finds such overlap before it inflates a
reported accuracy.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from shoestring.data.prepare.config import LeakageConfig
from shoestring.data.prepare.exact import DIGEST_BYTES
from shoestring.data.prepare.ingest import ingest
from shoestring.data.prepare.near import NearPairs, image_near_pairs, text_near_pairs
from shoestring.data.prepare.open_source import open_records
from shoestring.data.prepare.records import GIVEN_TEST, GIVEN_TRAIN, Batch, RecordSource
from shoestring.data.prepare.validate import Rules
from shoestring.errors import DataError


def _both(train: RecordSource, test: RecordSource) -> RecordSource:
    def batches(chunk: int) -> Iterator[Batch]:
        for src, code in ((train, GIVEN_TRAIN), (test, GIVEN_TEST)):
            for b in src.batches(chunk):
                b.given = np.full(len(b), code, dtype=np.int8)
                b.origins = [f"{'train' if code == GIVEN_TRAIN else 'test'}:{o}"
                             for o in b.origins]
                b.rejects = [type(r)(f"{'train' if code == GIVEN_TRAIN else 'test'}:{r.origin}",
                                     r.reason, r.detail) for r in b.rejects]
                yield b

    return RecordSource(spec=f"{train.spec} | {test.spec}", kind=train.kind,
                        files=train.files + test.files, batches=batches,
                        feature_names=train.feature_names)


def find_leakage(config: LeakageConfig, *, clock: Callable[[], float] = time.perf_counter,
                 work: Path | None = None) -> dict:
    """Counts and examples of TEST records found in TRAIN, exactly or nearly."""
    start = clock()
    train = open_records(config.train, config)
    test = open_records(config.test, config)
    if train.kind != test.kind:
        raise DataError(f"cannot compare {train.kind} records ({config.train}) with "
                        f"{test.kind} records ({config.test})",
                        hint="give two sources of the same kind")
    with tempfile.TemporaryDirectory(prefix="shoestring-leakage-", dir=work) as tmp:
        ing = ingest(_both(train, test), Path(tmp), chunk=config.chunk_records, rules=Rules(),
                     near=True, pii_mode="off", pii_types=[], rewriter=None,
                     near_threshold=config.near_threshold, ngram=config.ngram,
                     num_perm=config.num_perm, lsh_recall=config.lsh_recall)
        try:
            st = ing.staging
            if train.kind == "image" and st.n and st.item_shape is None:
                raise DataError("no valid images to compare")
            is_test = st.given == GIVEN_TEST
            n_train, n_test = int((~is_test).sum()), int(is_test.sum())
            exact_pair = _exact_matches(ing.digests, is_test)
            near = NearPairs.none()
            if ing.text_index is not None:
                near = text_near_pairs(ing.text_index, config.near_threshold)
            elif ing.phashes is not None:
                near = image_near_pairs(st.x(), ing.phashes, config.phash_distance,
                                        config.pixel_similarity)
            cross = is_test[near.pairs[:, 0]] != is_test[near.pairs[:, 1]]
            pairs, sims = near.pairs[cross], near.similarity[cross]
            test_side = np.where(is_test[pairs[:, 0]], pairs[:, 0], pairs[:, 1])
            train_side = np.where(is_test[pairs[:, 0]], pairs[:, 1], pairs[:, 0])
            near_only = ~np.isin(test_side, exact_pair[:, 0])
            # One example per leaking test record: its most similar training record.
            order = np.lexsort((-sims[near_only], test_side[near_only]))
            t_ids, first = np.unique(test_side[near_only][order], return_index=True)
            near_best = np.stack((t_ids, train_side[near_only][order][first]), axis=1) \
                if len(t_ids) else np.empty((0, 2), np.int64)
            near_sim = sims[near_only][order][first] if len(t_ids) else np.empty(0)
            examples = _examples(st, exact_pair, near_best, near_sim, config.examples)
            invalid = int(sum(ing.invalid.values()))
        finally:
            if ing.text_index is not None:
                ing.text_index.close()
            ing.staging.close()
    leaked = len(exact_pair) + len(near_best)
    return {"train": config.train, "test": config.test, "kind": train.kind,
            "train_records": n_train, "test_records": n_test, "invalid_skipped": invalid,
            "test_in_train": {"exact": len(exact_pair), "near": len(near_best),
                              "total": leaked,
                              "share": round(leaked / n_test, 6) if n_test else 0.0},
            "near_threshold": config.near_threshold if train.kind == "text" else None,
            "examples": examples, "elapsed_seconds": round(clock() - start, 3)}


def _exact_matches(digests: np.ndarray, is_test: np.ndarray) -> np.ndarray:
    """``[k, 2]`` (test id, one train id with the same digest) for each leaking test record."""
    if len(digests) == 0:
        return np.empty((0, 2), np.int64)
    keys = np.ascontiguousarray(digests).view(np.dtype((np.void, DIGEST_BYTES))).ravel()
    train_ids = np.flatnonzero(~is_test)
    test_ids = np.flatnonzero(is_test)
    tk = keys[train_ids]
    order = np.argsort(tk)
    pos = np.searchsorted(tk[order], keys[test_ids])
    pos = np.minimum(pos, max(len(order) - 1, 0))
    hit = (len(order) > 0) & (tk[order][pos] == keys[test_ids]) if len(order) else \
        np.zeros(len(test_ids), bool)
    return np.stack((test_ids[hit], train_ids[order][pos[hit]]), axis=1)


def _examples(st, exact: np.ndarray, near: np.ndarray, near_sim: np.ndarray, limit: int
              ) -> list[dict]:
    rows = [("exact", int(t), int(r), 1.0) for t, r in exact[:limit]]
    rows += [("near", int(t), int(r), float(s)) for (t, r), s in zip(near, near_sim)]
    rows = rows[:limit]
    if not rows:
        return []
    ids = sorted({i for _, t, r, _ in rows for i in (t, r)})
    origin = dict(zip(ids, st.origins(ids)))
    return [{"kind": k, "test": origin[t], "train": origin[r], "similarity": round(s, 4)}
            for k, t, r, s in rows]
