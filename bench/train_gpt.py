"""Issue-3 workload: gpt (4 layers, 4 heads, 128 wide, block 64) on Shakespeare, char-level.

Shoestring's engine against a plain hand-written PyTorch loop training the
same architecture on the same tokens (nanoGPT-style random windows, AdamW,
batch 12), same number of steps, in the same run. Both evaluate on 20
validation batches at the end. Prints tokens/s of each and the ratio, and the
validation loss and wall time of the Shoestring run.

Usage: python bench/train_gpt.py [--steps 2000] [--corpus ../shared/data/shakespeare.txt]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from shoestring.data.text import default_cache_dir, load_text_data
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.train.api import train
from shoestring.train.config import resolve_config

BATCH, BLOCK, LR = 12, 64, 1e-3


def plain_loop(corpus: Path, steps: int, cache: Path) -> tuple[float, float]:
    """The baseline: what a user writes by hand (tokens come from the same cache)."""
    data = load_text_data(f"text:{corpus}", tokenizer="char", cache_dir=cache)
    train_tokens = torch.from_numpy(data.train._tokens().astype("int64"))
    val_tokens = torch.from_numpy(data.val._tokens().astype("int64"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=BLOCK,
                          vocab_size=data.vocab_size, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=LR)

    def batch(tokens):
        ix = torch.randint(len(tokens) - BLOCK - 1, (BATCH,))
        x = torch.stack([tokens[i:i + BLOCK] for i in ix])
        y = torch.stack([tokens[i + 1:i + 1 + BLOCK] for i in ix])
        return x, y

    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        x, y = batch(train_tokens)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        val = sum(model(*batch(val_tokens))[1].item() for _ in range(20)) / 20
    return time.perf_counter() - t0, val


def shoestring_run(corpus: Path, steps: int, out: Path) -> tuple[float, dict]:
    cfg = resolve_config({
        "model": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": BLOCK},
        "data": {"source": f"text:{corpus}", "tokenizer": "char"},
        "train": {"batch_size": BATCH, "max_steps": steps, "lr": LR, "optimizer": "adamw",
                  "seed": 0},
        "out": str(out)})
    t0 = time.perf_counter()
    result = train(cfg, workspace=out.parent)
    return time.perf_counter() - t0, result.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--corpus", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared/data/shakespeare.txt")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ss-gpt-"))
    tokens = args.steps * BATCH * BLOCK
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.steps} steps")
    plain_t, plain_val = plain_loop(args.corpus, args.steps, default_cache_dir(tmp))
    print(f"plain PyTorch loop  {plain_t:8.1f} s  {tokens / plain_t:9,.0f} tokens/s  "
          f"val_loss {plain_val:.3f}")
    ours_t, s = shoestring_run(args.corpus, args.steps, tmp / "run")
    print(f"shoestring train    {s['train_seconds']:8.1f} s  {s['tokens_per_second']:9,.0f} "
          f"tokens/s  val_loss {s['val_loss']:.3f}  (whole call {ours_t:.1f} s, "
          f"precision {s['precision']}, MFU {s['mfu']})")
    print(f"throughput ratio shoestring/plain = {s['tokens_per_second'] * plain_t / tokens:.3f} "
          "(goal >= 1.0)")


if __name__ == "__main__":
    main()
