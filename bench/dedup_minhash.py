"""Near-duplicate detection: Shoestring vs datasketch's MinHashLSH, same run.

Both sides get the same 100,000 generated documents, the same word 3-gram
shingles, the same 128 MinHash permutations (datasketch's "affine32" scheme,
drawn from the same seed) and the same threshold and LSH bands/rows. Each side
is timed from raw text to its list of near-duplicate pairs:

* Shoestring: vectorized shingling, signatures and banding
  (``TextNearIndex``), then every candidate verified by its true Jaccard.
* datasketch: a ``MinHash`` per document (shingles hashed with its default
  SHA-1), ``MinHashLSH.insert`` and ``query``; its candidates are its answer.
  The same candidates filtered by datasketch's estimated Jaccard are reported
  too (that filter is cheap and included in its time).

Planted truth: 5% of the documents get 1-3 edited copies (random word
substitutions); truth is every pair whose *true* Jaccard is at or above the
threshold. Precision counts a reported pair as correct when its true Jaccard
(Python sets) reaches the threshold; recall is the share of truth pairs found.
The sides run interleaved (A B B A ...) so machine noise hits both. One more
datasketch run with the bands and rows it picks itself (it optimizes for
equal false-positive and false-negative weight) is reported after them.

Usage: python bench/dedup_minhash.py [--docs 100000] [--repeats 2] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from shoestring.data.prepare.minhash import params_for_recall
from shoestring.data.prepare.near import text_near_pairs
from shoestring.data.prepare.shingles import normalize_words
from shoestring.data.prepare.text_index import TextNearIndex

NGRAM, NUM_PERM, CHUNK = 3, 128, 10_000


def py_shingles(text: str) -> set[str]:
    w = normalize_words(text).split()
    return {" ".join(w[i:i + NGRAM]) for i in range(len(w) - NGRAM + 1)} if len(w) >= NGRAM \
        else {" ".join(w)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def make_corpus(n: int, threshold: float, seed: int = 0):
    """Documents (Zipf-distributed words) with planted edited copies, and the truth."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(30_000)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    lengths = rng.integers(30, 61, n)
    flat = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
    cuts = np.cumsum(lengths)[:-1]
    docs = [list(d) for d in np.split(flat, cuts)]
    n_sources = n // 20
    groups, slot = [], n_sources
    for s in range(n_sources):
        members = [s]
        for _ in range(rng.integers(1, 4)):
            if slot >= n:
                break
            copy = list(docs[s])
            edits = rng.integers(0, int(0.25 * len(copy)) + 1)
            fresh = vocab[rng.choice(len(vocab), size=edits, p=p)]
            for pos, word in zip(rng.choice(len(copy), size=edits, replace=False), fresh):
                copy[pos] = word
            docs[slot] = copy
            members.append(slot)
            slot += 1
        groups.append(members)
    texts = [" ".join(d) for d in docs]
    truth = set()
    for members in groups:
        sets = {m: py_shingles(texts[m]) for m in members}
        for a, b in itertools.combinations(members, 2):
            if jaccard(sets[a], sets[b]) >= threshold:
                truth.add((min(a, b), max(a, b)))
    return texts, truth


def run_shoestring(texts: list[str], threshold: float, params) -> set:
    with tempfile.TemporaryDirectory() as tmp, \
            TextNearIndex(Path(tmp), params, ngram=NGRAM, num_perm=NUM_PERM) as index:
        for lo in range(0, len(texts), CHUNK):
            index.add(texts[lo:lo + CHUNK])
        near = text_near_pairs(index, threshold)
    return {(int(i), int(j)) for i, j in near.pairs}


def run_datasketch(texts: list[str], threshold: float, params) -> tuple[set, set]:
    """``params=None`` lets datasketch choose its own bands and rows."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM,
                     params=(params.bands, params.rows) if params else None)
    sketches = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM, seed=1)
        m.update_batch([s.encode("utf-8") for s in py_shingles(t)])
        lsh.insert(i, m)
        sketches.append(m)
    pairs = set()
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    filtered = {(i, j) for i, j in pairs if sketches[i].jaccard(sketches[j]) >= threshold}
    return pairs, filtered


def quality(pairs: set, truth: set, texts: list[str], threshold: float) -> tuple[float, float]:
    cache: dict[int, set] = {}

    def sh(i):
        if i not in cache:
            cache[i] = py_shingles(texts[i])
        return cache[i]

    correct = sum(1 for i, j in pairs if (i, j) in truth or jaccard(sh(i), sh(j)) >= threshold)
    precision = correct / len(pairs) if pairs else 1.0
    recall = len(pairs & truth) / len(truth) if truth else 1.0
    return precision, recall


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--no-datasketch-defaults", dest="datasketch_defaults", action="store_false",
                    help="skip the extra datasketch run with its own bands and rows")
    args = ap.parse_args()
    params = params_for_recall(args.threshold, NUM_PERM)
    t0 = time.perf_counter()
    texts, truth = make_corpus(args.docs, args.threshold)
    print(f"{len(texts):,} documents, {len(truth):,} planted pairs with Jaccard >= "
          f"{args.threshold} (generated in {time.perf_counter() - t0:.1f} s); "
          f"{NUM_PERM} permutations, word {NGRAM}-grams, {params.bands} bands x "
          f"{params.rows} rows")
    runs: dict[str, list] = {"shoestring": [], "datasketch": []}
    results = {}
    for r in range(args.repeats):
        order = ("shoestring", "datasketch") if r % 2 == 0 else ("datasketch", "shoestring")
        for side in order:
            if side == "shoestring":
                out, wall, cpu = timed(run_shoestring, texts, args.threshold, params)
            else:
                out, wall, cpu = timed(run_datasketch, texts, args.threshold, params)
            runs[side].append((wall, cpu))
            results[side] = out
            print(f"  run {r + 1}: {side:<10} {wall:7.2f} s wall, {cpu:7.2f} s CPU", flush=True)
    ours = results["shoestring"]
    ds_raw, ds_filtered = results["datasketch"]
    rows = [("shoestring (verified)", ours, "shoestring"),
            ("datasketch (LSH candidates)", ds_raw, "datasketch"),
            ("datasketch (+ estimate filter)", ds_filtered, "datasketch")]
    if args.datasketch_defaults:
        (own_raw, own_filtered), wall, cpu = timed(run_datasketch, texts, args.threshold, None)
        from datasketch import MinHashLSH

        b, r = MinHashLSH(threshold=args.threshold, num_perm=NUM_PERM).b, \
            MinHashLSH(threshold=args.threshold, num_perm=NUM_PERM).r
        runs["own"] = [(wall, cpu)]
        rows += [(f"datasketch own {b}x{r} (cand.)", own_raw, "own"),
                 (f"datasketch own {b}x{r} (+ filter)", own_filtered, "own")]
    print(f"\n{'method':<34}{'pairs':>8}{'precision':>11}{'recall':>8}{'docs/s (wall)':>15}"
          f"{'docs/s (CPU)':>14}")
    for name, pairs, side in rows:
        p, rc = quality(pairs, truth, texts, args.threshold)
        wall = statistics.median(w for w, _ in runs[side])
        cpu = statistics.median(c for _, c in runs[side])
        print(f"{name:<34}{len(pairs):>8,}{p:>11.4f}{rc:>8.4f}{len(texts) / wall:>15,.0f}"
              f"{len(texts) / cpu:>14,.0f}")
    w_ratio = statistics.median(w for w, _ in runs["datasketch"]) / \
        statistics.median(w for w, _ in runs["shoestring"])
    c_ratio = statistics.median(c for _, c in runs["datasketch"]) / \
        statistics.median(c for _, c in runs["shoestring"])
    print(f"\nthroughput ratio shoestring / datasketch: {w_ratio:.1f}x wall-clock, "
          f"{c_ratio:.1f}x CPU time (median of {args.repeats} interleaved runs)")


if __name__ == "__main__":
    main()
