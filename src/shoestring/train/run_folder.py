"""The run folder: every file a run leaves, and how they are written.

::

    RUN/
      config.toml          resolved configuration
      run.json             ledger id, so a resumed run updates the same row
      model.json           architecture + preprocessing (models.artifact)
      model.safetensors    final weights
      metrics.jsonl        one JSON line per evaluation
      summary.json         the headline numbers
      checkpoints/         ckpt-*.safetensors + manifest.json
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shoestring.io import atomic_write_bytes


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def run_info(self) -> Path:
        return self.path / "run.json"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, after_step: int) -> None:
        """Drop evaluation lines past ``after_step`` (work a resume will redo)."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= after_step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut short by kill -9
        atomic_write_bytes(self.metrics, "".join(k + "\n" for k in kept).encode())


def default_run_name(model: str, data: str, now: datetime) -> str:
    """``seed-mlp-fashion-mnist-20261128-223800``: readable and sortable."""
    data_part = re.sub(r"[^A-Za-z0-9]+", "-", Path(data.split(":", 1)[-1]).stem or data)
    return f"{model}-{data_part.strip('-')}-{now:%Y%m%d-%H%M%S}"
