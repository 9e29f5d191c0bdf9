"""``shoestring report RUN [RUN ...] --out FILE.html``: one self-contained HTML page.

:func:`render_report` turns run folders into the page (the dashboard serves
the same pages); :func:`write_report` writes it atomically and says what it
holds. Sections appear when their artifacts exist: training (every run),
data (a run trained on ``prepared:DIR``), compression (``compress/``), audit
(``audit/``), and a comparison when there are several runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from shoestring.config import StrictConfig, validate_config
from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes
from shoestring.report import html as h
from shoestring.report.run_view import RunView, read_run


class ReportConfig(StrictConfig):
    """What ``shoestring report`` is asked to do."""

    runs: list[Path] = Field(min_length=1, description="Run folders to report on.")
    out: Path = Field(Path("report.html"),
                      description="The HTML file to write (replaced if it exists).")
    title: str | None = Field(None, description="Page title (default: from the runs).")


def resolve_report_config(values: dict) -> ReportConfig:
    """``values`` (unset ones None) validated into a :class:`ReportConfig`, every problem
    reported at once."""
    clean = {k: v for k, v in values.items() if v is not None}
    return validate_config(ReportConfig, clean, hint="see 'shoestring report --help'")


@dataclass
class ReportResult:
    path: Path
    bytes: int
    seconds: float
    sections: list[str]
    notes: list[str] = field(default_factory=list)


def _anchor(i: int, runs: Sequence[RunView], what: str) -> str:
    return what if len(runs) == 1 else f"run{i + 1}-{what}"


def _title(runs: Sequence[RunView], what: str, prefix: str) -> str:
    return what if len(runs) == 1 else f"{prefix}: {what}"


def build_sections(runs: Sequence[RunView]) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of every section the runs' artifacts allow."""
    from shoestring.report.training import comparison_section, training_section

    sections: list[tuple[str, str, str]] = []
    if len(runs) > 1:
        sections.append(("compare", f"{len(runs)} runs compared", comparison_section(runs)))
    for i, run in enumerate(runs):
        title = _title(runs, "training", run.name)
        sections.append((_anchor(i, runs, "training"), title,
                         training_section(run, _anchor(i, runs, "training"))))
        if run.data_report is not None and run.data_dir is not None:
            from shoestring.report.data_section import data_section

            a = _anchor(i, runs, "data")
            sections.append((a, _title(runs, "data", run.name),
                             data_section(run.data_report, run.data_dir, a)))
        if run.compress is not None:
            from shoestring.report.compress_section import compress_section

            a = _anchor(i, runs, "compression")
            sections.append((a, _title(runs, "compression", run.name),
                             compress_section(run.compress, a)))
        if run.audit is not None:
            from shoestring.report.audit_section import audit_section

            body = audit_section(run.audit, run.summary)
            if body:
                sections.append((_anchor(i, runs, "audit"), _title(runs, "audit", run.name),
                                 body))
    return sections


def render_report(runs: Sequence[RunView], *, title: str | None = None,
                  now: datetime | None = None, csp: str = h.CSP,
                  links: Sequence[tuple[str, str]] = ()) -> str:
    """The HTML page for ``runs`` (already read with :func:`read_run`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:    # the distribution's version: the package facade sits above this layer
        __version__ = version("shoestring")
    except PackageNotFoundError:
        __version__ = "(not installed)"
    now = now or datetime.now(UTC)
    if title is None:
        title = f"Shoestring report: {runs[0].name}" if len(runs) == 1 else \
            f"Shoestring report: {len(runs)} runs"
    partial = [r.name for r in runs if r.partial]
    subtitle = ", ".join(str(r.path) for r in runs) + (
        f" — partial: {', '.join(partial)}" if partial else "")
    return h.page(title, subtitle, build_sections(runs),
                  f"Written by shoestring {__version__} at {now:%Y-%m-%d %H:%M:%S %Z}. "
                  "Self-contained: nothing is fetched when this page is opened.",
                  csp=csp, links=links)


def write_report(config: ReportConfig, *, now: datetime | None = None) -> ReportResult:
    """Read the runs, render the page, write it to ``config.out`` atomically."""
    t0 = time.perf_counter()
    runs = [read_run(p) for p in config.runs]
    names = [str(p) for p in config.runs]
    if len(set(names)) != len(names):
        raise ShoestringError("the same run folder is given twice",
                              hint="list each run folder once")
    out = Path(config.out)
    if out.is_dir():
        raise ShoestringError(f"--out '{out}' is a folder", hint="give a file name, e.g. "
                              f"{out / 'report.html'}")
    text = render_report(runs, title=config.title, now=now)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    atomic_write_bytes(out, data, durable=False)
    notes = [f"{r.name}: {n}" for r in runs for n in r.notes]
    sections = [t for _, t, _ in build_sections_titles(text)]
    return ReportResult(out, len(data), time.perf_counter() - t0, sections, notes)


def build_sections_titles(text: str) -> list[tuple[str, str, str]]:
    """(anchor, title, '') of the sections of a rendered page, from its <section> tags."""
    import re

    return [(a, t, "") for a, t in re.findall(r'<section id="([^"]+)"><h2>([^<]*)</h2>', text)]
