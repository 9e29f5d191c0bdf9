"""Per-layer sensitivity: which layers int8 hurts, measured one at a time.

For each quantizable layer, the graph is quantized with *only that layer* in
int8 and scored on a fixed sample of the training split; its drop against
the float graph on the same sample (a paired comparison) is the layer's
sensitivity. A layer whose drop alone exceeds ``share × max_drop`` stays in
float32 in the candidate (the approach of NNCF's and Intel Neural
Compressor's accuracy-aware tuning, here automatic and measured rather than
a list the user edits). The training split keeps the held-out examples for
the final score only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shoestring.compress.onnx_quant import Layer, quantizable_layers
from shoestring.compress.table import metric_drop


@dataclass(frozen=True)
class LayerSensitivity:
    layer: Layer
    drop: float       # in the metric's drop unit; positive is worse
    kept_float: bool

    def to_json(self) -> dict:
        return {"node": self.layer.node, "module": self.layer.module,
                "drop": round(self.drop, 4), "kept_float": self.kept_float}


def sensitivity(graph: bytes, quantize: Callable[[Iterable[str]], bytes],
                score: Callable[[bytes], float], *, higher_is_better: bool, threshold: float,
                on_layer: Callable[[Layer], None] | None = None) -> list[LayerSensitivity]:
    """Each layer's drop when it alone is quantized (``quantize(exclude)`` gives a graph
    with every node in ``exclude`` left in float; ``score`` scores a graph)."""
    layers = quantizable_layers(graph)
    if not layers:
        return []
    base = score(graph)
    out = []
    for layer in layers:
        if on_layer is not None:
            on_layer(layer)
        others = [o.node for o in layers if o is not layer]
        drop = metric_drop(base, score(quantize(others)), higher_is_better)
        out.append(LayerSensitivity(layer, drop, drop > threshold))
    return out
