"""Masked-LM pre-training then fine-tuning, against the same classifier trained from scratch.

    python bench/finetune_mlm_vs_scratch.py            # 3 seeds, ~3 minutes on 2 quiet cores
    python bench/finetune_mlm_vs_scratch.py --quick    # 1 seed (a check, about a minute)

The seed's BERT road on a generated corpus, with few labels (the case
pre-training is for). A sentence's sentiment is carried by its adjectives,
drawn from one of two sets of 16; the unlabelled corpus has many sentences
of several adjectives each (adjectives of one sentiment co-occur), the
labelled JSONL only 288 short texts of one adjective each, 32 to learn from
and 256 held out, so about a third of the adjectives scored were never seen
under a label. Both arms are the same encoder, with the same byte-level BPE
tokenizer size, batch and learning rate:

- **pre-trained**: ``--objective mlm`` on the corpus for P steps, then a
  classifier from that run (``--init-from``) for F steps on the JSONL;
- **scratch**: the classifier on the same JSONL for P + F steps.

Both are scored on the JSONL's held-out split (``test_accuracy``, the
trainer's own final evaluation); the table shows each seed, the mean ± sd
and how many seeds pre-training won.
Every run goes through ``shoestring.train.api.train``, as ``shoestring train``
does.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

POSITIVE = ("good great fine lovely happy bright warm kind sweet gentle merry fair noble "
            "brave glad calm").split()
NEGATIVE = ("bad awful poor sad dark cold cruel bitter harsh grim vile foul base weak "
            "sour dull").split()
NOUNS = "day night king queen road house song field sky town feast letter".split()
MODEL = {"name": "encoder", "n_layer": 2, "n_head": 2, "n_embd": 64, "intermediate_size": 128}
# A BPE of 1000 makes every word of the corpus one token (at 300, adjectives were split
# into byte pairs, and masking one piece of a word says little about sentiment).
BPE_VOCAB, SEQ, LABEL_LEN, BATCH, LR = 1000, 32, 12, 16, 1e-3
# 32 labelled to learn from (about a third of the test's adjectives never seen under a
# label), 256 to score (one seed's accuracy is then good to about ±3 points, not ±6).
LABELS, TEST_FRACTION = 288, 256 / 288
# (pre-training, fine-tuning) steps. At 300 + 100 against 400 the MLM had not learned
# the adjectives yet (masked accuracy 0.15-0.25, mostly the function words) and did not
# reliably win; at 900 it predicts 0.67-0.70 of the masked tokens (docs/finetune.md).
STEPS = (900, 100)


def make_data(root: Path, seed: int) -> tuple[Path, Path]:
    """The unlabelled corpus and the small labelled JSONL (same vocabulary)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(3000):
        words = rng.choice((POSITIVE, NEGATIVE))
        adj = rng.sample(words, 3)
        lines.append(f"the {rng.choice(NOUNS)} was {adj[0]} and {adj[1]}, so {adj[2]}.")
    rows = []
    for i in range(LABELS):
        label, words = ("pos", POSITIVE) if i % 2 else ("neg", NEGATIVE)
        rows.append({"text": f"the {rng.choice(NOUNS)} was {rng.choice(words)}.",
                     "label": label})
    corpus, labels = root / "corpus.txt", root / "labels.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    labels.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return corpus, labels


def _train(config: dict, root: Path, init_from: Path | None = None):
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    return train(resolve_config(config), init_from=init_from, ledger=None, workspace=root)


def one_seed(root: Path, seed: int, pre_steps: int, ft_steps: int, bpe_vocab: int = BPE_VOCAB,
             mlm_probability: float | None = None, ft_lr: float = LR) -> dict:
    corpus, labels = make_data(root, seed)
    # max_steps only caps the epochs (default 10, i.e. 20 steps of 32 labelled texts):
    # epochs high enough that every arm runs exactly the steps it is given.
    common = {"batch_size": BATCH, "lr": LR, "seed": seed, "eval_iters": 4,
              "epochs": 100_000}
    mlm = {} if mlm_probability is None else {"mlm_probability": mlm_probability}
    t0 = time.perf_counter()
    pre = _train({"model": MODEL,
                  "data": {"source": f"text:{corpus}", "tokenizer": "bpe",
                           "bpe_vocab_size": bpe_vocab, "max_length": SEQ},
                  "train": {**common, "objective": "mlm", "max_steps": pre_steps, **mlm},
                  "out": str(root / f"mlm-{seed}")}, root)
    fine = _train({"data": {"source": f"jsonl:{labels}", "max_length": LABEL_LEN,
                            "test_fraction": TEST_FRACTION},
                   "train": {**common, "lr": ft_lr, "max_steps": ft_steps},
                   "out": str(root / f"finetuned-{seed}")}, root, init_from=pre.out_dir)
    t1 = time.perf_counter()
    scratch = _train({"model": MODEL,
                      "data": {"source": f"jsonl:{labels}", "tokenizer": "bpe",
                               "bpe_vocab_size": bpe_vocab, "max_length": LABEL_LEN,
                               "test_fraction": TEST_FRACTION},
                      "train": {**common, "max_steps": pre_steps + ft_steps},
                      "out": str(root / f"scratch-{seed}")}, root)
    t2 = time.perf_counter()
    return {"seed": seed, "mlm_val_accuracy": pre.summary.get("val_accuracy"),
            "pretrained_test_accuracy": fine.summary["test_accuracy"],
            "scratch_test_accuracy": scratch.summary["test_accuracy"],
            "pretrained_seconds": t1 - t0, "scratch_seconds": t2 - t1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default: 3; --quick: 1)")
    ap.add_argument("--bpe-vocab", type=int, default=BPE_VOCAB,
                    help="byte-level BPE size (1000 makes every word one token)")
    ap.add_argument("--mlm-probability", type=float, default=None,
                    help="share of tokens masked (default: the trainer's)")
    ap.add_argument("--ft-lr", type=float, default=LR,
                    help="learning rate of the pre-trained arm's fine-tuning")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    pre_steps, ft_steps = STEPS
    seeds = args.seeds or (1 if args.quick else 3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            root = Path(tmp) / str(seed)
            root.mkdir()
            rows.append(one_seed(root, seed, pre_steps, ft_steps, args.bpe_vocab,
                                 args.mlm_probability, args.ft_lr))
    load = Path("/proc/loadavg").read_text().split()[:3]
    pre = statistics.mean(r["pretrained_test_accuracy"] for r in rows)
    scratch = statistics.mean(r["scratch_test_accuracy"] for r in rows)
    sd = {k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0
          for k in ("pretrained_test_accuracy", "scratch_test_accuracy")}
    wins = sum(r["pretrained_test_accuracy"] > r["scratch_test_accuracy"] for r in rows)
    if args.json:
        print(json.dumps({"steps": [pre_steps, ft_steps], "rows": rows, "load": load,
                          "mean_pretrained": pre, "mean_scratch": scratch,
                          "sd_pretrained": sd["pretrained_test_accuracy"],
                          "sd_scratch": sd["scratch_test_accuracy"], "seeds_won": wins},
                         indent=2))
        return 0
    print(f"encoder {MODEL}; MLM {pre_steps} steps on the corpus + fine-tune {ft_steps} "
          f"steps vs scratch {pre_steps + ft_steps} steps; batch {BATCH}, lr {LR}; "
          f"load average {' '.join(load)}")
    print(f"{'seed':>4} {'MLM masked acc':>15} {'pre-trained test acc':>21} "
          f"{'scratch test acc':>17} {'seconds (pre+ft / scratch)':>27}")
    for r in rows:
        mlm = r["mlm_val_accuracy"]
        print(f"{r['seed']:>4} {mlm if mlm is None else f'{mlm:.3f}':>15} "
              f"{r['pretrained_test_accuracy']:>21.3f} {r['scratch_test_accuracy']:>17.3f} "
              f"{r['pretrained_seconds']:>15.1f} / {r['scratch_seconds']:.1f}")
    print(f"test accuracy, mean ± sd over {len(rows)} seeds: pre-trained {pre:.3f} ± "
          f"{sd['pretrained_test_accuracy']:.3f}, scratch {scratch:.3f} ± "
          f"{sd['scratch_test_accuracy']:.3f} ({pre - scratch:+.3f}; pre-training won "
          f"{wins} of {len(rows)} seeds: "
          f"{'it wins' if pre > scratch and wins == len(rows) else 'it does NOT reliably win'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
