"""ONNX export (torch's dynamo exporter) and onnxruntime's own quantizers, bytes in, bytes out.

- dynamic int8: ``onnxruntime.quantization.quantize_dynamic`` (MatMulInteger /
  DynamicQuantizeLinear; weights per channel, activations per call);
- static int8: ``quantize_static`` in QDQ format, activation ranges from a
  calibration reader fed with training examples;
- weight-only 8/4 bits: ``MatMulNBitsQuantizer`` (blockwise, symmetric), the
  CPU kernels onnxruntime ships for LLM weights.

Layers are named by their ONNX node; :func:`quantizable_layers` gives each
node's torch module path too (from the exporter's ``namespace`` metadata), so
the sensitivity pass and the candidates table speak of ``net.1`` rather than
``node_MatMul_7``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shoestring.errors import ShoestringError
from shoestring.models.onnx_module import INPUT, OUTPUT

# Ops whose weights int8 quantization stores as int8 (and which dominate the time).
WEIGHT_OPS = ("MatMul", "Gemm", "Conv")


class _Logits(nn.Module):
    """GPTs return ``(logits, loss)``; the graph returns logits only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


@contextlib.contextmanager
def _quiet():
    """The exporter and the quantizers print progress and advice to stdout and the root
    logger; a library must not write to the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor, *, tokens: bool) -> bytes:
    """``model`` as an ONNX graph with a dynamic batch (and sequence, for token inputs)."""
    batch = torch.export.Dim("batch")
    dims = {0: batch}
    if tokens:
        block = int(model.config.block_size)
        dims[1] = torch.export.Dim("seq", min=1, max=block)
        # The exporter specialises a size-1 dimension; trace with a longer one.
        example = example[:, :1].repeat(2, min(block, 8))
    elif example.shape[0] < 2:
        example = example.repeat(2, *([1] * (example.dim() - 1)))
    model = _Logits(model).eval()
    try:
        with _quiet():
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                        input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=(dims,), optimize=True)
            return _strip(program.model_proto).SerializeToString()
    except Exception as exc:  # the exporter raises many error types
        raise ShoestringError(f"cannot export the model to ONNX: {str(exc).splitlines()[0]}",
                              hint="leave the ONNX methods out (--methods prune or distill) "
                              "and report the model family") from None


# Node metadata worth its bytes: the module path (the sensitivity pass names layers by it).
KEEP_METADATA = ("pkg.torch.onnx.name_scopes",)


def _strip(proto):
    """Drop the exporter's per-node stack traces and FX dumps: for a small model they
    outweigh the int8 weights, and a served graph does not need them."""
    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if p.key in KEEP_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return proto


@dataclass(frozen=True)
class Layer:
    node: str      # the ONNX node name (what the quantizers exclude by)
    module: str    # the torch module path it came from ('' if unknown)
    op: str


def quantizable_layers(data: bytes) -> list[Layer]:
    """Every node with a weight int8 quantization would convert, in graph order."""
    import onnx

    proto = onnx.load_from_string(data)
    inits = {i.name for i in proto.graph.initializer}
    layers = []
    for node in proto.graph.node:
        if node.op_type in WEIGHT_OPS and any(i in inits for i in node.input):
            meta = {p.key: p.value for p in node.metadata_props}
            layers.append(Layer(node.name, _module_path(meta), node.op_type))
    return layers


def _module_path(meta: dict[str, str]) -> str:
    # The exporter records the scopes of each node, e.g. ['', 'model', 'model.net',
    # 'model.net.1', 'linear']: the module path, then the op ("model." is _Logits).
    import ast

    try:
        scopes = [s for s in ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]")) if s]
    except (ValueError, SyntaxError):
        return ""
    return scopes[-2].removeprefix("model.") if len(scopes) >= 2 else ""


def _names(exclude: Iterable[str]) -> list[str]:
    """Node names to exclude, including the MatMul a quantizer splits a Gemm into (it
    names it ``<gemm>_MatMul`` and matches the exclusion list after the split)."""
    return [n for name in exclude for n in (name, f"{name}_MatMul")]


def _roundtrip(data: bytes, fn) -> bytes:
    with tempfile.TemporaryDirectory(prefix="shoestring-quant-") as d:
        src, dst = Path(d) / "in.onnx", Path(d) / "out.onnx"
        src.write_bytes(data)
        with _quiet():
            fn(src, dst)
        return dst.read_bytes()


def quantize_dynamic(data: bytes, *, exclude: Iterable[str] = (), per_channel: bool = True
                     ) -> bytes:
    """Dynamic int8 (signed weights, unsigned per-call activations: onnxruntime's default
    on x86, where the u8·s8 VNNI/AVX-512 kernels apply)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as q

    return _roundtrip(data, lambda src, dst: q(
        src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
        nodes_to_exclude=_names(exclude), op_types_to_quantize=["MatMul", "Gemm"]))


def quantize_static(data: bytes, batches: list[torch.Tensor], *, exclude: Iterable[str] = (),
                    per_channel: bool = True, calibrate: str = "minmax") -> bytes:
    """Static int8 in QDQ format with activation ranges from ``batches``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
    )
    from onnxruntime.quantization import quantize_static as q

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{INPUT: b.numpy()} for b in batches])

        def get_next(self):
            return next(self.it, None)

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate]
    return _roundtrip(data, lambda src, dst: q(
        src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=method, nodes_to_exclude=_names(exclude),
        op_types_to_quantize=list(WEIGHT_OPS)))


def quantize_weight_only(data: bytes, *, bits: int, block_size: int,
                         exclude: Iterable[str] = ()) -> bytes:
    """Blockwise symmetric ``bits``-bit weights for every MatMul (MatMulNBits)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    proto = onnx.load_from_string(data)
    with _quiet():
        quant = MatMulNBitsQuantizer(proto, bits=bits, block_size=block_size,
                                     is_symmetric=True, nodes_to_exclude=_names(exclude))
        quant.process()
    return quant.model.model.SerializeToString()
