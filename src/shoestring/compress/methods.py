"""Applying a method: one function per config type (``build.register``), like torchao's
``quantize_(model, config)``.

A candidate is built by folding its chain of methods over a :class:`Candidate`
that starts as the parent: prune and distill change the float module (and
the card), the export methods turn it into an onnxruntime graph. Each step
records its transform on the card, so ``load_run`` rebuilds the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import singledispatch
from typing import TYPE_CHECKING, Any

from torch import nn

from shoestring.compress import onnx_quant as oq
from shoestring.compress.config import (
    Distill,
    DynamicInt8,
    OnnxFloat32,
    Prune,
    StaticInt8,
    WeightOnly,
)
from shoestring.compress.sensitivity import sensitivity
from shoestring.models.card import ModelCard, TransformRecord
from shoestring.models.onnx_module import KIND as ONNX_KIND
from shoestring.models.onnx_module import OnnxModule

if TYPE_CHECKING:
    from shoestring.compress.session import Session


@dataclass
class Candidate:
    """A model on its way through a chain: the module, the card it will be saved with."""

    name: str
    module: nn.Module
    card: ModelCard
    methods: list[str] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trained: dict[str, Any] = field(default_factory=dict)
    params: int = 0       # of the float module an exported graph came from


def with_transform(c: Candidate, kind: str, config: dict[str, Any], method: str) -> Candidate:
    card = c.card.model_copy(update={"transforms": [*c.card.transforms,
                                                    TransformRecord(kind=kind, config=config)]})
    return replace(c, card=card, methods=[*c.methods, method])


@singledispatch
def build(method, c: Candidate, s: Session) -> list[Candidate]:
    """The candidates ``method`` makes from ``c`` (one, or one per ratio)."""
    raise TypeError(f"no compression method for config type {type(method).__name__}")


def _as_onnx(c: Candidate, graph: bytes, method: str, extra: dict[str, Any]) -> Candidate:
    module = OnnxModule.from_bytes(graph, family=c.card.family,
                                   config=getattr(c.module, "config", None))
    config = {"nbytes": len(graph), "family": c.card.family, "method": method, **extra}
    params = c.params or sum(p.numel() for p in c.module.parameters())
    return with_transform(replace(c, module=module, params=params), ONNX_KIND, config, method)


@build.register(OnnxFloat32)
def _onnx_fp32(method: OnnxFloat32, c: Candidate, s: Session) -> list[Candidate]:
    return [_as_onnx(c, s.float_graph(c), method.name, {})]


def _quantized(c: Candidate, s: Session, name: str, keep_sensitive: bool, quantize
               ) -> Candidate:
    graph = s.float_graph(c)
    kept, report = [], []
    if keep_sensitive:
        result = sensitivity(graph, quantize, s.subset_score, higher_is_better=s.higher_is_better,
                             threshold=s.config.sensitivity_share * s.config.max_drop,
                             on_layer=lambda layer: s.progress(f"{name}: sensitivity of "
                                                               f"{layer.module or layer.node}"))
        kept = [r.layer for r in result if r.kept_float]
        report = [r.to_json() for r in result]
    out = _as_onnx(c, quantize([k.node for k in kept]), name,
                   {"kept_float": [k.module or k.node for k in kept]})
    out.kept_float = [k.module or k.node for k in kept]
    out.sensitivity = report
    return out


@build.register(DynamicInt8)
def _dynamic_int8(method: DynamicInt8, c: Candidate, s: Session) -> list[Candidate]:
    graph = s.float_graph(c)
    return [_quantized(c, s, method.name, method.keep_sensitive, lambda exclude: oq.quantize_dynamic(
        graph, exclude=exclude, per_channel=method.per_channel))]


@build.register(StaticInt8)
def _static_int8(method: StaticInt8, c: Candidate, s: Session) -> list[Candidate]:
    graph = s.float_graph(c)
    batches = s.workload.calibration_inputs(method.calibration_examples)
    return [_quantized(c, s, method.name, method.keep_sensitive, lambda exclude: oq.quantize_static(
        graph, batches, exclude=exclude, per_channel=method.per_channel,
        calibrate=method.calibrate))]


@build.register(WeightOnly)
def _weight_only(method: WeightOnly, c: Candidate, s: Session) -> list[Candidate]:
    graph = s.float_graph(c)
    name = f"weight-only-int{method.bits}"
    out = _as_onnx(c, oq.quantize_weight_only(graph, bits=method.bits,
                                              block_size=method.block_size),
                   name, {"bits": method.bits, "block_size": method.block_size})
    if out.module.onnx_model.numel() >= len(graph) * 0.95:
        out.notes.append("no MatMul with a weight to quantize (linear layers exported as "
                         "Gemm keep float32 weights): weight-only suits transformer LMs")
    return [out]


@build.register(Prune)
def _prune(method: Prune, c: Candidate, s: Session) -> list[Candidate]:
    from shoestring.compress.prune import prune_candidates

    return prune_candidates(method, c, s)


@build.register(Distill)
def _distill(method: Distill, c: Candidate, s: Session) -> list[Candidate]:
    from shoestring.compress.distill import distill_candidate

    return [distill_candidate(method, c, s)]
