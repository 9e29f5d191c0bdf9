"""Everything a report shows about one run folder, read once and typed.

A report must render whatever a run left, so reading never gives up on a
damaged file: a metrics line cut short by ``kill -9`` is skipped and counted,
a run without ``summary.json`` is *partial* (still training, or stopped
before it finished), and a missing artifact only leaves its section out. Only
a folder that holds none of a run's files is an error.

File names come from :mod:`shoestring.models.run_folder` (the run-folder
contract) and, for the sibling capabilities this layer may not import, from
their documented formats: ``compress/candidates.json`` (docs/compress.md,
``shoestring.compress.candidates/1``) and ``audit/`` (docs/audit.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoestring.data.sources import prepared_folder
from shoestring.errors import ShoestringError
from shoestring.io import read_bytes, read_text
from shoestring.models.run_folder import RunFolder

# Sibling capabilities' documented artifacts (see the module docstring).
COMPRESS_TABLE = Path("compress") / "candidates.json"
AUDIT_DIR = "audit"
# The prepared-data report written by 'shoestring data prepare' (data/prepare/report.py).
DATA_REPORT = "report.json"


@dataclass
class MetricsLog:
    """The evaluation records of ``metrics.jsonl`` and the lines that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)     # 1-based line numbers

    def series(self, key: str, x: str = "step") -> tuple[list[float], list[float]]:
        """(x, y) of every record holding a finite ``key`` and ``x``."""
        xs, ys = [], []
        for r in self.records:
            xv, yv = r.get(x), r.get(key)
            if _finite(xv) and _finite(yv):
                xs.append(float(xv))
                ys.append(float(yv))
        return xs, ys

    def keys(self) -> list[str]:
        """Metric names logged, in first-seen order (``step``-like fields left out)."""
        seen: dict[str, None] = {}
        for r in self.records:
            for k, v in r.items():
                if k not in ("step", "epoch", "elapsed_seconds") and _finite(v):
                    seen.setdefault(k)
        return list(seen)


@dataclass
class RunView:
    """One run folder as the report sees it."""

    path: Path
    name: str
    summary: dict[str, Any] | None
    card: dict[str, Any] | None
    config_text: str | None
    metrics: MetricsLog
    notes: list[str] = field(default_factory=list)          # what the reader must know
    data_report: dict[str, Any] | None = None
    data_dir: Path | None = None
    compress: dict[str, Any] | None = None
    audit: Path | None = None

    @property
    def partial(self) -> bool:
        return self.summary is None

    @property
    def status(self) -> str:
        if self.summary is None:
            return "partial"
        return str(self.summary.get("status", "finished"))

    @property
    def price_per_hour(self) -> float:
        return float((self.summary or {}).get("price_per_hour") or 0.0)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(path: Path) -> MetricsLog:
    """Parse ``metrics.jsonl``; unreadable lines (cut short, not an object) are skipped."""
    log = MetricsLog()
    if not path.exists():
        return log
    for number, raw in enumerate(read_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            log.skipped.append(number)
            continue
        if not isinstance(record, dict):
            log.skipped.append(number)
            continue
        log.records.append(record)
    return log


def _read_json(path: Path, notes: list[str], what: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(read_text(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        notes.append(f"{what} '{path.name}' could not be read ({exc}); left out")
        return None
    if not isinstance(data, dict):
        notes.append(f"{what} '{path.name}' is not a JSON object; left out")
        return None
    return data


def _prepared_dir(source: str | None, run_dir: Path) -> Path | None:
    """The folder of a ``prepared:DIR[#split]`` data source, if it has a report."""
    raw = prepared_folder(source)
    if raw is None:
        return None
    for candidate in (raw, run_dir / raw, run_dir.parent / raw):
        if (candidate / DATA_REPORT).is_file():
            return candidate
    return None


def read_run(directory: Path | str) -> RunView:
    """Read a run folder for a report; raise only if it is not a run folder at all."""
    folder = RunFolder(Path(directory))
    path = folder.path
    if not path.is_dir():
        raise ShoestringError(f"'{path}' is not a folder",
                              hint="pass run folders written by 'shoestring train' "
                              "(their --out), e.g. 'shoestring report runs/fmnist'")
    markers = (folder.card, folder.summary, folder.metrics, folder.config, folder.run_info,
               path / COMPRESS_TABLE)
    if not any(p.exists() for p in markers):
        raise ShoestringError(
            f"'{path}' is not a Shoestring run folder (no model.json, summary.json, "
            "metrics.jsonl, config.toml or compress/candidates.json)",
            hint="pass the --out folder of 'shoestring train' or 'shoestring compress'")
    notes: list[str] = []
    summary = _read_json(folder.summary, notes, "the summary")
    card = _read_json(folder.card, notes, "the model card")
    metrics = read_metrics(folder.metrics)
    if metrics.skipped:
        lines = ", ".join(str(n) for n in metrics.skipped[:5])
        more = f" and {len(metrics.skipped) - 5} more" if len(metrics.skipped) > 5 else ""
        notes.append(f"metrics.jsonl: skipped {len(metrics.skipped)} unreadable line(s) "
                     f"(line {lines}{more}), e.g. cut short by a crash")
    if summary is None:
        last = metrics.records[-1].get("step") if metrics.records else None
        notes.append("partial: no summary.json yet — the run is still training or stopped "
                     "before it finished; showing what exists"
                     + (f" (last evaluation at step {last})" if last is not None else ""))
    elif summary.get("status") not in (None, "finished"):
        notes.append(f"the run ended with status '{summary.get('status')}' "
                     f"({summary.get('stop_reason', 'no reason recorded')})")
    config_text = None
    if folder.config.exists():
        try:
            config_text = read_text(folder.config)
        except (OSError, UnicodeDecodeError) as exc:
            notes.append(f"config.toml could not be read ({exc})")
    compress = _read_json(path / COMPRESS_TABLE, notes, "the compression table")
    source = (summary or {}).get("data") or ((card or {}).get("data") or {}).get("source")
    data_dir = _prepared_dir(source, path)
    data_report = _read_json(data_dir / DATA_REPORT, notes, "the data report") \
        if data_dir else None
    audit = path / AUDIT_DIR
    name = str((summary or {}).get("name") or path.name)
    return RunView(path=path, name=name, summary=summary, card=card, config_text=config_text,
                   metrics=metrics, notes=notes, data_report=data_report, data_dir=data_dir,
                   compress=compress, audit=audit if audit.is_dir() else None)
