"""shoestring compress against the hand-made baselines, in the same run.

Parts (``--parts mlp,gpt,distill``):

- ``mlp``: the seed MLP (784→128→64→10, Adam 1e-3, batch 128, 10 epochs) on
  Fashion-MNIST, compressed with the defaults. Beside it, the same float32
  model quantized by hand with ``torch.ao.quantization.quantize_dynamic`` and
  with onnxruntime's ``quantize_dynamic`` (export + quantize, as a user would).
  Every model is timed in interleaved rounds, in-process, 1 thread (the
  server's default), at batch 1 and 32; sizes are the serialized weights.
- ``gpt``: gpt-nano trained on the Shakespeare text, compressed with the
  language-model defaults: size, greedy tokens/s at batch 1, validation loss.
- ``distill``: the MLP distilled into a student of at most a quarter of its
  parameters, against the same student trained from scratch for the same steps.

Usage: python bench/compress_bench.py [--parts mlp,gpt,distill] [--quick] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from shoestring.compress import CompressConfig, Distill, compress
from shoestring.compress.measure import forward_call, time_interleaved
from shoestring.models.onnx_module import OnnxModule
from shoestring.models.run_folder import load_run
from shoestring.train.api import train
from shoestring.train.config import resolve_config

SHAKESPEARE = Path("/work/shared/data/shakespeare.txt")


def header(title: str) -> None:
    print(f"\n== {title} (load average {open('/proc/loadavg').read().split()[0]}) ==")


def train_mlp(work: Path, epochs: int) -> Path:
    out = work / "fmnist"
    if not (out / "model.safetensors").exists():
        train(resolve_config({"data": {"source": "fashion-mnist"}, "model": {"name": "seed-mlp"},
                              "train": {"epochs": epochs, "batch_size": 128,
                                        "optimizer": "adam", "lr": 1e-3, "seed": 0},
                              "out": str(out)}), ledger=None)
    return out


def by_hand(run_dir: Path, example: torch.Tensor) -> dict[str, tuple[torch.nn.Module, int]]:
    """The float32 model quantized the two usual ways, with their serialized sizes."""
    model = load_run(run_dir).model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantization is deprecated
        ao = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        buf = io.BytesIO()
        torch.save(ao.state_dict(), buf)
        from onnxruntime.quantization import QuantType, quantize_dynamic
        with tempfile.TemporaryDirectory() as d:
            src, dst = Path(d) / "m.onnx", Path(d) / "q.onnx"
            torch.onnx.export(model, (example.repeat(2, 1, 1, 1),), str(src), dynamo=True,
                              input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            data = dst.read_bytes()
    ort = OnnxModule.from_bytes(data, family="mlp")
    return {"torch.ao quantize_dynamic": (ao, buf.getbuffer().nbytes),
            "onnxruntime quantize_dynamic": (ort, len(data))}


def accuracy(module, x, y) -> float:
    with torch.inference_mode():
        out = module(x)
    return float((out.argmax(1) == y).float().mean())


def part_mlp(work: Path, quick: bool) -> Path:
    header("MLP: seed recipe on Fashion-MNIST, compressed with the defaults")
    run = train_mlp(work, 2 if quick else 10)
    out = work / "fmnist-small"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = compress(CompressConfig(run=run, out=out, measure_seconds=0.3 if quick else 1.0),
                      ledger=None, workspace=work)
    print(f"compress took {time.perf_counter() - t0:.1f} s; chose {result.chosen}")
    for r in result.table["candidates"]:
        lat = r["latency"]
        print(f"  {r['name']:<26} {r['size_bytes'] / 1024:8.1f} KiB  p50@1 "
              f"{lat['1']['p50_ms']:.4f} ms  p50@32 {lat['32']['p50_ms']:.4f} ms  "
              f"acc {r['metric']:.4f}  drop {r['metric_drop']:+.2f}  {'; '.join(r['flags'])}")
    if result.chosen is None:
        return run
    # The chosen model against float32 and the by-hand baselines, timed together.
    from shoestring.compress.workload import load_workload

    w = load_workload(run, None, work)
    parent = load_run(run)
    models = {"float32 (torch)": (parent.model, parent.folder.weights.stat().st_size),
              f"shoestring: {result.chosen}": (load_run(out).model,
                                               (out / "model.safetensors").stat().st_size)}
    models.update(by_hand(run, w.example_inputs(1)))
    xs, ys = _test_split(w)
    torch.set_num_threads(1)
    lat = {}
    for b in (1, 32):
        x = w.example_inputs(b)
        lat[b] = time_interleaved({n: forward_call(m, x) for n, (m, _) in models.items()},
                                  1.0 if quick else 4.0, b)
    base = models["float32 (torch)"][1]
    print(f"\n  {'model':<32} {'KiB':>8} {'×smaller':>9} {'p50@1 ms':>9} {'p95@1 ms':>9} "
          f"{'×faster@1':>9} {'p50@32 ms':>10} {'p95@32 ms':>10} {'accuracy':>9}")
    f1 = lat[1]["float32 (torch)"].p50_ms
    for name, (m, size) in models.items():
        print(f"  {name:<32} {size / 1024:8.1f} {base / size:9.2f} {lat[1][name].p50_ms:9.4f} "
              f"{lat[1][name].p95_ms:9.4f} {f1 / lat[1][name].p50_ms:9.2f} "
              f"{lat[32][name].p50_ms:10.4f} {lat[32][name].p95_ms:10.4f} "
              f"{accuracy(m, xs, ys):9.4f}")
    row = next(r for r in result.table["candidates"] if r["chosen"])
    print(f"\n  aims: ≥3.5× smaller: {row['size_ratio']:.2f}×; ≥1.5× lower p50 at batch 1: "
          f"{f1 / lat[1]['shoestring: ' + result.chosen].p50_ms:.2f}×; ≤0.5 points lost: "
          f"{row['metric_drop']:+.2f}")
    return run


def _test_split(w):
    from shoestring.data.sources import SourceOptions, load_dataset

    card = w.card
    ds = load_dataset(card.data.source, SourceOptions(seed=w.train_config.train.seed))
    return card.preprocessing.to_preprocessing().apply(ds.test.x), ds.test.y.long()


def part_gpt(work: Path, quick: bool) -> None:
    header("GPT: gpt-nano on Shakespeare, compressed with the language-model defaults")
    run = work / "lm"
    if not (run / "model.safetensors").exists():
        train(resolve_config({"model": {"name": "gpt-nano"}, "data": {
            "source": f"text:{SHAKESPEARE}", "tokenizer": "char"},
            "train": {"max_steps": 200 if quick else 2000, "batch_size": 32, "lr": 1e-3,
                      "schedule": "cosine", "warmup_steps": 50}, "out": str(run)}),
            ledger=None, workspace=work)
    out = work / "lm-small"
    shutil.rmtree(out, ignore_errors=True)
    result = compress(CompressConfig(run=run, out=out, max_drop=2.0, batch_sizes=(1, 8),
                                     measure_seconds=0.5 if quick else 2.0),
                      ledger=None, workspace=work)
    print(f"chose {result.chosen} (val_loss within 2%)")
    for r in result.table["candidates"]:
        print(f"  {r['name']:<18} {r['size_bytes'] / 1024:8.1f} KiB  ×{r['size_ratio']:.2f} "
              f"smaller  {r['tokens_per_second']:7.0f} tok/s  p50@1 "
              f"{r['latency']['1']['p50_ms']:.3f} ms  val_loss {r['metric']:.4f} "
              f"({r['metric_drop']:+.2f}%)  {'; '.join(r['flags'])}")


def part_distill(work: Path, quick: bool) -> None:
    header("Distillation: the seed MLP into a quarter-size student vs the student from scratch")
    run = train_mlp(work, 2 if quick else 10)
    steps = 940 if quick else 4690  # as many as the teacher trained (469 per epoch)
    out = work / "fmnist-student"
    shutil.rmtree(out, ignore_errors=True)
    result = compress(CompressConfig(run=run, out=out, methods=(Distill(steps=steps),),
                                     max_drop=100.0, measure_seconds=0.2),
                      ledger=None, workspace=work)
    rows = {r["name"]: r for r in result.table["candidates"]}
    student = rows["distill"]
    from shoestring.compress.distill import auto_student
    from shoestring.models.run_folder import read_card

    over = auto_student(read_card(run).architecture.model_dump(), "seed-mlp")
    scratch = train(resolve_config({"data": {"source": "fashion-mnist"}, "model": over,
                                    "train": {"max_steps": steps, "epochs": 1000,
                                              "batch_size": 128, "optimizer": "adam",
                                              "lr": 1e-3, "seed": 0},
                                    "out": str(work / "student-scratch")}), ledger=None)
    teacher = rows["float32"]
    print(f"  teacher   {teacher['params']:>7,} params  test_accuracy {teacher['metric']:.4f}")
    print(f"  distilled {student['params']:>7,} params "
          f"({student['params'] / teacher['params']:.0%})  test_accuracy "
          f"{student['metric']:.4f}  ({steps} steps, T={student['trained']['temperature']}, "
          f"alpha={student['trained']['alpha']})")
    print(f"  scratch   {student['params']:>7,} params  test_accuracy "
          f"{scratch.summary['test_accuracy']:.4f}  ({steps} steps, hidden {over['hidden']})")
    shutil.rmtree(work / "student-scratch", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="mlp,gpt,distill")
    ap.add_argument("--quick", action="store_true", help="fewer epochs/steps, shorter timing")
    ap.add_argument("--work", type=Path, default=None, help="keep runs here (default: temp)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="shoestring-compress-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SHOESTRING_DB", f"sqlite:///{work / 'ledger.db'}")
    parts = {"mlp": part_mlp, "gpt": part_gpt, "distill": part_distill}
    for name in args.parts.split(","):
        parts[name](work, args.quick)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
