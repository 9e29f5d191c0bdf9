"""A run whose model is an ONNX graph run by onnxruntime (the ``onnx`` transform).

``shoestring compress`` writes int8 models as ONNX graphs quantized by
onnxruntime's own quantizer, because onnxruntime has maintained int8 CPU
kernels (MLAS) while torch's eager int8 path is deprecated. The serialized
graph is kept in the run folder's ``model.safetensors`` as one ``uint8``
tensor named ``onnx_model`` (safetensors: no pickle; the graph is protobuf,
parsed by onnxruntime), so :func:`~shoestring.models.run_folder.load_run`
rebuilds it like any run: build the module from the card, apply the ``onnx``
transform (which swaps the module for an :class:`OnnxModule` of the recorded
byte length), load the weights.

The module takes the same inputs and returns the same outputs as the module
it replaced: ``logits`` for classifiers and regressors, ``(logits, loss)``
for GPT language models (with ``last_only`` and ``config``, so
:func:`~shoestring.models.generate.generate` and serving use it unchanged).
The onnxruntime session is created on the first call with
``torch.get_num_threads()`` intra-op threads, so it runs with the thread
count the server (or the benchmark) set, like a torch module would.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shoestring.errors import ShoestringError

KIND = "onnx"
STATE_KEY = "onnx_model"
INPUT = "input"
OUTPUT = "logits"


class OnnxModule(nn.Module):
    """An onnxruntime session behind a torch module interface (inference only)."""

    def __init__(self, nbytes: int, *, family: str, config: Any = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        super().__init__()
        self.register_buffer(STATE_KEY, torch.zeros(int(nbytes), dtype=torch.uint8))
        self.family = family
        self.config = config  # a GPT's GPTConfig: generate() reads block_size from it
        self.providers = providers
        self._session = None
        self._threads = 0
        self._lock = threading.Lock()
        self.register_load_state_dict_post_hook(lambda module, keys: module.reset_session())

    @classmethod
    def from_bytes(cls, data: bytes, *, family: str, config: Any = None) -> OnnxModule:
        m = cls(len(data), family=family, config=config)
        m.onnx_model.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        m.reset_session()
        return m.eval()

    def onnx_bytes(self) -> bytes:
        return self.onnx_model.numpy().tobytes()

    def reset_session(self) -> None:
        self._session = None

    def session(self):
        """The onnxruntime session, (re)built when the torch thread count changed."""
        threads = torch.get_num_threads()
        if self._session is None or threads != self._threads:
            with self._lock:
                if self._session is None or threads != self._threads:
                    self._session = _make_session(self.onnx_bytes(), threads, self.providers)
                    self._threads = threads
        return self._session

    def run(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy()
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        out = self.session().run([OUTPUT], {INPUT: arr})[0]
        return torch.from_numpy(out)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *,
                last_only: bool = False):
        if self.family != "gpt":
            return self.run(x)
        logits = self.run(x)
        if last_only:
            logits = logits[:, -1:]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)),
                                   targets.reshape(-1), ignore_index=-1)
        return logits, loss


def _make_session(data: bytes, threads: int, providers: tuple[str, ...]):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # a declared dependency; say so if it was removed
        raise ShoestringError("this run's model is an ONNX graph and onnxruntime is not "
                              "installed", hint="pip install onnxruntime") from exc
    so = ort.SessionOptions()
    # Like torch.set_num_threads: the serving thread count, and no second pool.
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: no warnings on stderr of a server
    try:
        return ort.InferenceSession(data, so, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own error types
        raise ShoestringError(f"onnxruntime cannot load this run's graph: {exc}",
                              hint="the weights file is damaged, or was written by a newer "
                              "onnxruntime; upgrade onnxruntime or restore the run") from None


def onnx(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The ``onnx`` transform: replace the built module by an :class:`OnnxModule` whose
    graph (``config["nbytes"]`` bytes) the run's weights file holds."""
    nbytes = config.get("nbytes")
    if not isinstance(nbytes, int) or nbytes < 1:
        raise ShoestringError(f"onnx transform: bad byte length {nbytes!r}",
                              hint="the model card is damaged; restore it")
    return OnnxModule(nbytes, family=str(config.get("family", "")),
                      config=getattr(module, "config", None)).eval()
