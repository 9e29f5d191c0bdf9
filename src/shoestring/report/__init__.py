"""Reports people look at: one self-contained HTML page per run or set of runs
(``shoestring report``), and the team dashboard (``shoestring ui``)."""

from shoestring.report.api import (
                                   ReportConfig,
                                   ReportResult,
                                   render_report,
                                   resolve_report_config,
                                   write_report,
)
from shoestring.report.run_view import RunView, read_run

__all__ = ["ReportConfig", "ReportResult", "RunView", "read_run", "render_report",
           "resolve_report_config", "write_report"]
