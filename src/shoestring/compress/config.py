"""Typed configs: one for the ``compress`` command, one small one per method.

Each method is a frozen pydantic model; :func:`shoestring.compress.methods.build`
dispatches on the config's *type* (like torchao's ``quantize_(model, config)``),
so "go to definition" on a config lands on the code that applies it. A
method's command-line name (``dynamic-int8``, ``prune``, ``distill``…) maps to
its default config through :data:`METHODS`; ``a+b`` chains two methods
(``prune+dynamic-int8``: prune and fine-tune, then quantize the result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from shoestring.config import StrictConfig, validate_config
from shoestring.errors import ConfigError


class _Method(StrictConfig):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnnxFloat32(_Method):
    """The float32 model exported to ONNX and run by onnxruntime, unquantized: shows how
    much of a speed-up comes from the runtime alone rather than from int8."""

    name: Literal["onnx-fp32"] = "onnx-fp32"


class DynamicInt8(_Method):
    """Int8 weights (per output channel), activations quantized on the fly per call
    (onnxruntime ``quantize_dynamic``). No calibration data; best for linear-heavy models."""

    name: Literal["dynamic-int8"] = "dynamic-int8"
    per_channel: bool = Field(True, description="one scale per output channel of each weight")
    keep_sensitive: bool = Field(True, description="keep layers the sensitivity pass flags "
                                 "in float32")


class StaticInt8(_Method):
    """Int8 weights and activations, the activation ranges calibrated once on examples of
    the training split (onnxruntime ``quantize_static``, QDQ format)."""

    name: Literal["static-int8"] = "static-int8"
    calibration_examples: int = Field(512, ge=1, description="training examples (or text "
                                      "windows) fed through the model to fix activation ranges")
    calibrate: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how ranges are chosen from the calibration activations")
    per_channel: bool = True
    keep_sensitive: bool = True


class WeightOnly(_Method):
    """Weights stored in ``bits`` (8 or 4) in blocks of ``block_size`` with a scale each,
    dequantized inside the matrix product (onnxruntime ``MatMulNBits`` kernels on CPU);
    activations stay float. For language models, whose generation is memory-bound."""

    name: Literal["weight-only"] = "weight-only"
    bits: Literal[4, 8] = 8
    block_size: int = Field(32, ge=16, description="weights per scale (a power of two)")


class Prune(_Method):
    """Structured pruning: whole hidden neurons (MLP), channels (CNN) or MLP neurons of
    transformer blocks are removed (Torch-Pruning's dependency graph, L2-magnitude
    importance), so the model really is smaller and faster; each ratio is followed by a
    short fine-tune through the training engine."""

    name: Literal["prune"] = "prune"
    ratios: tuple[float, ...] = Field((0.25, 0.5), description="fractions of prunable "
                                      "channels removed; one candidate per ratio")
    finetune_steps: int = Field(300, ge=0, description="optimizer steps of fine-tuning after "
                                "pruning (0: none)")
    lr: float | None = Field(None, gt=0, description="fine-tuning learning rate (default: "
                             "the parent run's lr / 10)")


class Distill(_Method):
    """Knowledge distillation: a smaller student learns from the teacher's softened outputs
    (Hinton et al. 2015, arXiv:1503.02531): ``loss = alpha·T²·KL(teacher_T ‖ student_T) +
    (1 − alpha)·CE(student, labels)``, trained through the training engine's loss hook."""

    name: Literal["distill"] = "distill"
    student: str = Field("auto", description="'auto' (the teacher's architecture at about a "
                         "quarter of its parameters), or a model name such as 'mlp'")
    hidden: tuple[int, ...] | None = Field(None, description="hidden widths of an mlp student")
    temperature: float = Field(4.0, gt=0, description="softmax temperature T (Hinton et al. "
                               "use 1-20; 4 is a common default)")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target term")
    steps: int | None = Field(None, ge=1, description="student optimizer steps (default: as "
                              "many as the teacher trained)")


Method = OnnxFloat32 | DynamicInt8 | StaticInt8 | WeightOnly | Prune | Distill
MethodSpec = Annotated[Method, Field(discriminator="name")]

# Command-line names → default configs. ``weight-only-int4`` is weight-only at 4 bits.
METHODS: dict[str, Method] = {
    "onnx-fp32": OnnxFloat32(),
    "dynamic-int8": DynamicInt8(),
    "static-int8": StaticInt8(),
    "weight-only-int8": WeightOnly(bits=8),
    "weight-only-int4": WeightOnly(bits=4),
    "prune": Prune(),
    "distill": Distill(),
}
# One line per method for --help (the config docstrings say more).
SUMMARIES = {
    "onnx-fp32": "float32 run by onnxruntime: the runtime's speed-up alone",
    "dynamic-int8": "int8 weights, activations quantized per call (no data)",
    "static-int8": "int8 weights and activations, ranges calibrated on training data",
    "weight-only-int8": "8-bit weights in blocks, float activations (language models)",
    "weight-only-int4": "4-bit weights in blocks (MatMulNBits CPU kernels)",
    "prune": "remove 25% and 50% of hidden neurons/channels, then fine-tune",
    "distill": "train a student of ~1/4 the parameters on the teacher's soft targets",
}
# What runs without --methods, per task family.
DEFAULT_METHODS = {
    "examples": ("onnx-fp32", "dynamic-int8", "static-int8", "prune", "prune+dynamic-int8"),
    "language_modeling": ("onnx-fp32", "dynamic-int8", "weight-only-int8", "weight-only-int4"),
}
# Methods that must come first in a chain: they change the float model, the rest export it.
RESHAPING = (Prune, Distill)

METRICS = {
    # metric: (higher is better, unit of --max-drop)
    "test_accuracy": (True, "points"),
    "test_loss": (False, "percent"),
    "test_mse": (False, "percent"),
    "val_loss": (False, "percent"),
}


class CompressConfig(StrictConfig):
    """Everything ``shoestring compress`` needs; every field is also a flag."""

    run: Path = Field(description="the run folder to compress")
    out: Path = Field(description="the new run folder (must not exist)")
    max_drop: float = Field(0.5, ge=0, description="largest metric loss allowed: accuracy "
                            "points for accuracies, percent for losses")
    metric: str | None = Field(None, description="test_accuracy, test_loss, test_mse or "
                               "val_loss (default: the run's headline metric)")
    target: Literal["cpu", "cuda"] = Field("cpu", description="where the model will serve")
    batch_sizes: tuple[int, ...] = Field((1, 32), description="batch sizes to time")
    threads: int = Field(1, ge=1, description="inference threads (the server's --threads)")
    methods: tuple[str | MethodSpec | tuple[MethodSpec, ...], ...] | None = Field(
        None, description="method names (a+b chains them), method configs, or tuples of "
        "configs (chains); default: a set per task")
    teacher: Path | None = Field(None, description="distillation teacher run (default: RUN "
                                 "itself); with it, RUN's architecture is the student")
    measure_seconds: float = Field(0.6, gt=0, description="timing per candidate and batch "
                                   "size, split over interleaved rounds")
    sensitivity_share: float = Field(0.5, gt=0, description="a layer whose int8 version alone "
                                     "costs more than this share of --max-drop stays float32")
    seed: int = 0
    encrypt: bool = Field(False, description="encrypt every file of the new run folder "
                          "(AES-256-GCM; key from --key-file or $SHOESTRING_ENCRYPTION_KEY); "
                          "always on when RUN is encrypted")


def resolve_compress_config(values: dict[str, Any]) -> CompressConfig:
    """``values`` (unset ones None) validated into a :class:`CompressConfig`, every problem
    reported at once."""
    clean = {k: v for k, v in values.items() if v is not None}
    return validate_config(CompressConfig, clean, hint="see 'shoestring compress --help'")


def _chain(item, problems: list[str]) -> tuple[Method, ...] | None:
    if isinstance(item, str):
        parts = [p.strip() for p in item.split("+")]
        unknown = [p for p in parts if p not in METHODS]
        if unknown:
            problems.append(f"unknown method {', '.join(map(repr, unknown))} in {item!r} "
                            f"(known: {', '.join(METHODS)})")
            return None
        return tuple(METHODS[p] for p in parts)
    return tuple(item) if isinstance(item, tuple) else (item,)


def chain_name(chain: tuple[Method, ...]) -> str:
    return "+".join(m.name for m in chain)


def parse_methods(items, family: str) -> tuple[list[tuple[Method, ...]], list[str]]:
    """Method names (``"prune+dynamic-int8"``), configs, or tuples of configs → chains of
    method configs, and the problems found."""
    if items is None:
        items = DEFAULT_METHODS["language_modeling" if family == "gpt" else "examples"]
    chains, problems = [], []
    if not items:
        problems.append("the method list is empty")
    for item in items:
        chain = _chain(item, problems)
        if chain is None:
            continue
        if not chain:
            problems.append("an empty chain of methods")
        elif any(isinstance(m, RESHAPING) for m in chain[1:]):
            problems.append(f"{chain_name(chain)!r}: prune and distill change the float model, "
                            "so they come first in a chain (e.g. prune+dynamic-int8)")
        elif sum(not isinstance(m, RESHAPING) for m in chain) > 1 or \
                sum(isinstance(m, RESHAPING) for m in chain) > 1:
            problems.append(f"{chain_name(chain)!r}: at most one of prune/distill and one export "
                            "method (onnx-fp32, dynamic-int8, static-int8, weight-only-*) per "
                            "chain")
        else:
            chains.append(chain)
    return chains, problems


def check(config: CompressConfig) -> list[str]:
    """Problems of the config alone (the run and the data are checked when loaded)."""
    problems = []
    if not config.batch_sizes or any(b < 1 for b in config.batch_sizes):
        problems.append(f"batch sizes must be at least 1, got {list(config.batch_sizes)}")
    if config.metric is not None and config.metric not in METRICS:
        problems.append(f"unknown metric {config.metric!r} (known: {', '.join(METRICS)})")
    if config.out.exists() and (not config.out.is_dir() or any(config.out.iterdir())):
        problems.append(f"output folder '{config.out}' already exists")
    if config.out.resolve() == config.run.resolve():
        problems.append("--out must be a new folder, not the run itself")
    return problems


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems, hint="see 'shoestring compress --help'; --out must be a "
                          "new folder, --methods a comma-separated list of known methods")
