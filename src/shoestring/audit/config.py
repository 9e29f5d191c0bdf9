"""The typed configuration of ``shoestring audit``.

One :class:`AuditConfig` is the Python API (``shoestring.audit(config)``), the
TOML schema (saved as ``audit/config.toml`` beside the results) and the CLI
flags. :func:`resolve_audit_config` validates everything at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shoestring.config import StrictConfig, validate_config

Mitigation = Literal["none", "thresholds", "reweight"]


class AuditConfig(StrictConfig):
    """Everything ``shoestring audit RUN`` needs."""

    run: Path = Field(..., description="the run folder to audit")
    data: str | None = Field(None, description="data source to audit on (default: the run's)")
    group: list[str] | None = Field(
        None, description="group columns to compare (default: those the run was trained "
        "with, or its prepared folder's)")
    explain: int = Field(16, ge=0, description="test examples to explain (0: no explanations)")
    out: Path | None = Field(None, description="where to write (default: RUN/audit)")
    strict: bool = Field(False, description="fail when the model card states something the "
                         "artifacts do not support")
    seed: int = Field(0, description="seeds bootstrap, sampling and explanation baselines")
    reruns: int = Field(3, ge=2, le=10, description="explanation reruns (other seeds) for the "
                        "stability score")
    time_budget: float = Field(120.0, gt=0, description="seconds the explanations may take; "
                               "methods and sample counts are chosen to fit")
    n_boot: int = Field(300, ge=50, le=10_000, description="bootstrap resamples for the "
                        "confidence intervals")
    min_group: int = Field(30, ge=1, description="groups with fewer test examples are too "
                           "small to judge: reported with a warning")
    mitigate: Mitigation = Field(
        "none", description="thresholds: per-group decision thresholds (post-processing, "
        "Fairlearn ThresholdOptimizer); reweight: retrain with group-balanced sampling")
    constraint: Literal["equalized_odds", "demographic_parity"] = Field(
        "equalized_odds", description="the fairness constraint per-group thresholds satisfy")
    max_examples: int = Field(20_000, ge=100, description="audit at most this many examples "
                              "(a seeded sample of larger splits)")
    memory_budget: float | None = Field(
        None, gt=0, description="GiB integrated gradients may use per batch (default: a "
        "quarter of the free memory)")

    def resolved_out(self) -> Path:
        return self.out if self.out is not None else Path(self.run) / "audit"


def resolve_audit_config(values: dict[str, Any]) -> AuditConfig:
    """Validate ``values`` (``None`` means 'not given') into an :class:`AuditConfig`.

    >>> resolve_audit_config({"run": "runs/x", "explain": 4}).resolved_out().as_posix()
    'runs/x/audit'
    """
    clean = {k: v for k, v in values.items() if v is not None}
    return validate_config(AuditConfig, clean, hint="see 'shoestring audit --help'")
