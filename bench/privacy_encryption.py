"""Encryption at rest, measured: what chunked AES-256-GCM costs beside plaintext.

Parts (each measured for plaintext and encrypted in the same run, ratio printed):

- ``stream``: one file of ``--mb`` MB written and read back through
  ``shoestring.io``'s encrypted-folder path (EncryptingWriter, read_chunks) and
  through plain buffered file I/O: MB/s by wall time and by CPU time
  (user+sys of this process; less disturbed by other load).
- ``run``: ``save_run`` + ``load_run`` of an MLP of ``--params`` million float32
  parameters in a plaintext and an encrypted run folder.
- ``prepared``: ``shoestring data prepare`` of Fashion-MNIST (the Debian
  ``dataset-fashion-mnist`` IDX files; digits if absent or with ``--quick``),
  plaintext and ``--encrypt``, then ``load_prepared`` of each (what
  ``train --data prepared:`` reads).

Usage: python bench/privacy_encryption.py [--quick] [--parts stream,run,prepared]
       [--mb 512] [--params 25] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def header(title: str) -> None:
    print(f"\n== {title} (load average {Path('/proc/loadavg').read_text().split()[0]}) ==",
          flush=True)


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """Best (wall, cpu) seconds of ``repeat`` calls."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def row(what: str, mb: float, plain: tuple[float, float], enc: tuple[float, float]) -> None:
    print(f"{what:<28} plain {mb / plain[0]:8.0f} MB/s wall {mb / max(plain[1], 1e-9):8.0f} "
          f"MB/s cpu | encrypted {mb / enc[0]:8.0f} MB/s wall {mb / max(enc[1], 1e-9):8.0f} "
          f"MB/s cpu | encrypted/plain time {enc[0] / plain[0]:.2f}x wall, "
          f"{enc[1] / max(plain[1], 1e-9):.2f}x cpu", flush=True)


def stream(work: Path, mb: int) -> None:
    from shoestring.crypto.chunked import DEFAULT_CHUNK, EncryptingWriter
    from shoestring.crypto.folder import mark_encrypted
    from shoestring.crypto.keys import load_key
    from shoestring.io import read_chunks

    header(f"stream: {mb} MB, chunks of {DEFAULT_CHUNK >> 10} KiB")
    key = load_key(os.environ)
    plain_dir, enc_dir = work / "plain", work / "enc"
    plain_dir.mkdir(parents=True)
    folder = mark_encrypted(enc_dir, key)
    block = os.urandom(1 << 20)

    def write_plain():
        with open(plain_dir / "big.bin", "wb") as f:
            f.writelines(block for _ in range(mb))

    def write_enc():
        with open(enc_dir / "big.bin", "wb") as f, EncryptingWriter(
                f, key, name="big.bin", folder_id=folder.folder_id) as w:
            for _ in range(mb):
                w.write(block)

    def read(path: Path):
        return lambda: sum(len(c) for c in read_chunks(path))

    row("write", mb, timed(write_plain), timed(write_enc))
    row("read (authenticated)", mb, timed(read(plain_dir / "big.bin")),
        timed(read(enc_dir / "big.bin")))


def run_folder(work: Path, params_m: int) -> None:
    from shoestring.crypto.folder import mark_encrypted
    from shoestring.crypto.keys import load_key
    from shoestring.models.card import Architecture, Inputs, ModelCard, Outputs
    from shoestring.models.registry import build_model
    from shoestring.models.run_folder import load_run, save_run
    from shoestring.types import Task

    width = 1024
    depth = max(1, round(params_m * 1e6 / (width * width)))
    arch = Architecture(family="mlp", params={"in_features": width, "hidden": [width] * depth,
                                              "out_features": 10, "dropout": 0.0,
                                              "activation": "relu"})
    card = ModelCard(architecture=arch, task=Task.classification, inputs=Inputs(shape=[width]),
                     outputs=Outputs(kind="softmax", size=10))
    model = build_model(arch.model_dump())
    n = sum(p.numel() for p in model.parameters())
    mb = n * 4 / 1e6
    header(f"run folder: save_run + load_run of an MLP of {n / 1e6:.1f} M parameters "
           f"({mb:.0f} MB of weights)")
    mark_encrypted(work / "run-enc", load_key(os.environ))
    for name in ("run-plain", "run-enc"):  # warm both (page cache, imports)
        save_run(work / name, model, card)
        load_run(work / name)
    row("save_run", mb, timed(lambda: save_run(work / "run-plain", model, card)),
        timed(lambda: save_run(work / "run-enc", model, card)))
    row("load_run", mb, timed(lambda: load_run(work / "run-plain")),
        timed(lambda: load_run(work / "run-enc")))


def prepared(work: Path, quick: bool) -> None:
    from shoestring.data.prepare.config import resolve_prepare_config
    from shoestring.data.prepare.pipeline import prepare
    from shoestring.data.prepared import load_prepared
    from shoestring.data.sources import SourceOptions

    source = "digits" if quick or not FMNIST.is_dir() else f"idx:{FMNIST}"
    header(f"prepared folder: data prepare and load_prepared of {source}")
    results: dict[bool, tuple] = {}
    for _round in range(2):  # alternate the arms; the first round also warms imports and caches
        for encrypt in (False, True):
            out = work / f"prep-{'enc' if encrypt else 'plain'}"
            cfg = resolve_prepare_config({"source": source, "out": str(out), "encrypt": encrypt,
                                          "label_issues": False, "force": True})
            prep = timed(lambda cfg=cfg: prepare(cfg), repeat=1)
            load = timed(lambda out=out: load_prepared(str(out), SourceOptions()), repeat=3)
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
            old = results.get(encrypt)
            results[encrypt] = (prep, load, size) if old is None else (
                min(old[0], prep), min(old[1], load), size)
    (p0, l0, s0), (p1, l1, s1) = results[False], results[True]
    print(f"{'data prepare':<28} plain {p0[0]:7.2f} s wall {p0[1]:7.2f} s cpu | encrypted "
          f"{p1[0]:7.2f} s wall {p1[1]:7.2f} s cpu | ratio {p1[0] / p0[0]:.2f}x wall, "
          f"{p1[1] / p0[1]:.2f}x cpu")
    row("load_prepared", s0, l0, l1)
    print(f"{'folder size':<28} plain {s0:.1f} MB, encrypted {s1:.1f} MB "
          f"(+{(s1 - s0) / s0 * 100:.2f}%: a 72-byte header and a 16-byte tag per MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, digits: a smoke run")
    ap.add_argument("--parts", default="stream,run,prepared")
    ap.add_argument("--mb", type=int, default=None, help="stream size (default 512; 32 quick)")
    ap.add_argument("--params", type=int, default=None,
                    help="millions of MLP parameters (default 25; 2 quick)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp)")
    args = ap.parse_args()
    from shoestring.crypto.keys import ENV_KEY, ENV_KEY_FILE, new_key_text

    os.environ.pop(ENV_KEY_FILE, None)
    os.environ[ENV_KEY] = new_key_text()  # a throw-away key for the bench's own folders
    work = args.work or Path(tempfile.mkdtemp(prefix="shoestring-encbench-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    try:
        if "stream" in parts:
            stream(work / "stream", args.mb or (32 if args.quick else 512))
        if "run" in parts:
            run_folder(work / "run", args.params or (2 if args.quick else 25))
        if "prepared" in parts:
            prepared(work / "prepared", args.quick)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\nkey: a fresh random key in $SHOESTRING_ENCRYPTION_KEY, never written to disk")


if __name__ == "__main__":
    main()
