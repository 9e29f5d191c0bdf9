"""Fashion-MNIST through ``shoestring data prepare`` and ``train --data prepared:DIR``.

Prepares the Debian copy of Fashion-MNIST twice (with the default exact and
near deduplication, and with deduplication off), then trains the same model
on each, with and without training-time augmentation, and scores every run
on the same test set: the deduplicated official test split (which differs
from the raw one only by the near-duplicates inside it). Prints the
preparation reports' key figures and one accuracy per run.

Usage: python bench/data_fmnist_prepare_train.py [--epochs 4] [--model cnn]
       [--augment crop=2,flip [--augment trivial ...]] [--threads N] [--work DIR]
Needs Debian's dataset-fashion-mnist (or --data pointing at its IDX files).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.evaluate_run import evaluate_run

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")


def prepared(data: Path, out: Path, dedup: bool) -> dict:
    cfg = resolve_prepare_config({"source": f"idx:{data}", "out": out, "exact": dedup,
                                  "near": dedup})
    r = prepare(cfg).report
    print(f"prepare ({'dedup' if dedup else 'no dedup'}): input {r['input']:,}, kept "
          f"{r['kept']:,}, dropped {r['dropped']}, near pairs verified "
          f"{r['clusters']['near']['verified_pairs']}, label issues flagged "
          f"{r['label_issues']['found']:,}, splits {r['splits']}, "
          f"{r['elapsed_seconds']:.1f} s", flush=True)
    return r


def run(name: str, source: str, out: Path, args, augment: str | None, test_on: str) -> dict:
    cfg = resolve_config({"model": {"name": args.model},
                          "data": {"source": source, "augment": augment},
                          "train": {"epochs": args.epochs, "seed": 0, "threads": args.threads,
                                    "checkpoint_every": 0},
                          "out": str(out / name)})
    t = time.perf_counter()
    summary = train(cfg, handle_signals=False).summary
    wall = time.perf_counter() - t
    common = evaluate_run(out / name, test_on)["test_accuracy"]
    print(f"{name:<28} own test_accuracy {summary['test_accuracy']:.4f}, on the common "
          f"(deduplicated) test split {common:.4f}, {summary['steps']} steps, {wall:.0f} s",
          flush=True)
    return {"name": name, "own": summary["test_accuracy"], "common": common, "seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--model", default="cnn")
    # Mirror images of clothes are still the same class, so flips are valid here.
    ap.add_argument("--augment", action="append", default=None,
                    help="augmentation spec; repeat for several runs (default crop=2,flip)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        root = Path(tmp)
        prepared(args.data, root / "dedup", True)
        prepared(args.data, root / "raw", False)
        common = f"prepared:{root / 'dedup'}"
        rows = [run("no dedup, no augment", f"prepared:{root / 'raw'}", root, args, None, common),
                run("dedup, no augment", common, root, args, None, common)]
        rows += [run(f"dedup, augment {spec}", common, root, args, spec, common)
                 for spec in args.augment or ["crop=2,flip"]]
        print(f"\n{args.model}, {args.epochs} epochs, seed 0; accuracy on the common test split:")
        for r in rows:
            print(f"  {r['name']:<32} {r['common']:.4f}   ({r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
