"""What every method sees while candidates are built: the config, the workload, the
progress display, and the float32 ONNX export of each float module (made once, shared by
every export method applied to it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shoestring.compress import onnx_quant as oq
from shoestring.compress.config import CompressConfig
from shoestring.compress.workload import Workload
from shoestring.models.onnx_module import OnnxModule

if TYPE_CHECKING:
    from shoestring.compress.methods import Candidate


class Progress(Protocol):
    """Where ``compress`` reports progress (the CLI draws a bar; the API is silent)."""

    def start(self, total: int, description: str) -> None: ...
    def advance(self, description: str) -> None: ...
    def status(self, message: str) -> None: ...
    def log(self, message: str) -> None: ...
    def stop(self) -> None: ...


class SilentProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, description: str) -> None:
        pass

    def status(self, message: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class Session:
    config: CompressConfig
    workload: Workload
    workdir: Path                          # temporary: candidates and fine-tune runs
    reporter: Progress = field(default_factory=SilentProgress)
    _graphs: dict[int, bytes] = field(default_factory=dict)
    _folders: int = 0

    @property
    def tokenizer(self) -> Any:
        """The parent's tokenizer (text runs), saved beside every candidate."""
        w = self.workload
        return w.parent.tokenizer() if w.card.tokenizer is not None else None

    @property
    def higher_is_better(self) -> bool:
        return self.workload.higher_is_better

    def new_workdir(self, label: str) -> Path:
        """A fresh folder under the session's temporary folder."""
        self._folders += 1
        return self.workdir / f"{self._folders:02d}-{label}"

    def progress(self, message: str) -> None:
        self.reporter.status(message)

    def float_graph(self, c: Candidate) -> bytes:
        """The float32 ONNX export of ``c.module`` (cached per module)."""
        key = id(c.module)
        if key not in self._graphs:
            self.progress(f"{c.name}: exporting to ONNX")
            example = self.workload.example_inputs(2)
            self._graphs[key] = oq.export_onnx(c.module, example, tokens=self.workload.tokens)
        return self._graphs[key]

    def subset_score(self, graph: bytes) -> float:
        """The training-sample score of a graph (the sensitivity pass's yardstick)."""
        module = OnnxModule.from_bytes(graph, family=self.workload.family,
                                       config=getattr(self.workload.parent.model, "config",
                                                      None))
        return self.workload.train_subset_score(module)
