"""The audit folder: every file ``shoestring audit`` writes, named here and nowhere else.

::

    RUN/audit/
      config.toml           the resolved audit configuration
      audit.json            everything below in one document (what --json prints)
      explanations.json     method per model kind, cost per example, stability, completeness
      attributions.jsonl    one line per explained example: its attributions (and tokens)
      surrogate.txt         the global surrogate decision tree, as text
      surrogate.png         the same tree, drawn
      heatmaps/NNN.png      images: input, integrated gradients and occlusion side by side
      fairness.json         per-group metrics with bootstrap intervals, gaps, warnings
      mitigation.json       before/after table of the requested mitigation
      model_card.md         the model card, generated from the artifacts only
      model_card.json       the same card as data (what --strict checks the markdown against)
      reweighted/           --mitigate reweight: the retrained run folder

The ``reports`` capability renders these files; docs/audit.md documents each field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.toml"
AUDIT = "audit.json"
EXPLANATIONS = "explanations.json"
ATTRIBUTIONS = "attributions.jsonl"
SURROGATE_TEXT = "surrogate.txt"
SURROGATE_PNG = "surrogate.png"
HEATMAPS = "heatmaps"
FAIRNESS = "fairness.json"
MITIGATION = "mitigation.json"
CARD_MD = "model_card.md"
CARD_JSON = "model_card.json"
REWEIGHTED = "reweighted"


@dataclass(frozen=True)
class AuditFolder:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
