"""Peak memory of preparing (deduplicating) one million short documents.

Generates N short documents (10-30 Zipf-distributed words; 5% of them get a
near-copy with one word appended and 1% an upper-cased exact copy) as JSON Lines, then runs, each in a
fresh child process whose peak resident set size is read from ``wait4``:

1. ``baseline``: Python importing Shoestring's data preparation (and torch),
   nothing else: the floor every command pays;
2. ``dedup``: the streaming near-duplicate core alone (shingles, MinHash,
   LSH bands spilled to disk, candidates, true-Jaccard verification);
3. ``prepare``: the whole ``shoestring data prepare`` pipeline (validation,
   PII scan, exact and near dedup, split, shards, report).

Usage: python bench/dedup_memory.py [--docs 1000000] [--work DIR] [--skip-prepare]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMIT_MIB = 2048

DEDUP_ONLY = """
import sys, json, tempfile, time
from pathlib import Path
from shoestring.data.prepare.minhash import params_for_recall
from shoestring.data.prepare.near import text_near_pairs
from shoestring.data.prepare.text_index import TextNearIndex
path, chunk = sys.argv[1], 10_000
t = time.perf_counter()
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as tmp, \\
        TextNearIndex(Path(tmp), params_for_recall(0.8, 128)) as index:
    batch = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            batch.append(json.loads(line)["text"])
            if len(batch) == chunk:
                index.add(batch)
                batch = []
    if batch:
        index.add(batch)
    near = text_near_pairs(index, 0.8)
print(json.dumps({"docs": index.n, "candidates": near.candidates, "verified": len(near.pairs),
                  "seconds": round(time.perf_counter() - t, 1)}))
"""

PREPARE = """
import sys, json
from shoestring.data.prepare import prepare, resolve_prepare_config
cfg = resolve_prepare_config({"source": "jsonl:" + sys.argv[1], "out": sys.argv[2],
                              "label_issues": False, "force": True})
r = prepare(cfg).report
print(json.dumps({k: r[k] for k in ("input", "kept", "dropped", "pii", "splits",
                                    "elapsed_seconds")}))
"""

BASELINE = "import torch, shoestring.data.prepare, shoestring.data.prepare.pipeline; print('{}')"

WRITE = """
import sys, json
sys.path.insert(0, sys.argv[3])
from dedup_memory import write_corpus
write_corpus(sys.argv[1], int(sys.argv[2]))
print("{}")
"""


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    n_near, n_exact = n // 20, n // 100
    n_base = n - n_near - n_exact
    lengths = rng.integers(10, 31, n_base)
    words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
    docs = [" ".join(d) for d in np.split(words, np.cumsum(lengths)[:-1])]
    # One word appended: a base of S shingles keeps Jaccard S / (S + 1) >= 8/9.
    docs += [docs[k] + " tail" for k in rng.choice(n_base, n_near, replace=False)]
    docs += [docs[k].upper() for k in rng.choice(n_base, n_exact, replace=False)]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)


def measure(code: str, *args: str) -> tuple[dict, float, float]:
    """Run ``code`` in a child Python; its output, peak RSS in MiB and wall seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{err}")
    # Linux reports ru_maxrss in KiB.
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024, \
        time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=None, help="folder for the corpus and output")
    ap.add_argument("--skip-prepare", action="store_true", help="measure the dedup core only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        corpus = Path(tmp) / "docs.jsonl"
        # Written by a child too: a child's peak RSS counts the memory it inherits
        # at fork, so this process must stay small while it measures the others.
        _, _, wall = measure(WRITE, str(corpus), str(args.docs), str(Path(__file__).parent))
        size = corpus.stat().st_size / 2 ** 20
        print(f"{args.docs:,} documents, {size:,.0f} MiB of JSONL (written in {wall:.0f} s)",
              flush=True)
        runs = [("baseline", BASELINE, ()), ("dedup", DEDUP_ONLY, (str(corpus), tmp))]
        if not args.skip_prepare:
            runs.append(("prepare", PREPARE, (str(corpus), str(Path(tmp) / "prepared"))))
        for name, code, extra in runs:
            out, peak, wall = measure(code, *extra)
            verdict = "under" if peak < LIMIT_MIB else "OVER"
            print(f"{name:<9} peak RSS {peak:8,.0f} MiB ({verdict} {LIMIT_MIB:,} MiB), "
                  f"{wall:6.1f} s wall, {args.docs / wall:,.0f} docs/s  {json.dumps(out)}",
                  flush=True)


if __name__ == "__main__":
    main()
