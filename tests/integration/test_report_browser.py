"""Reports opened in a real headless Chromium (Debian's ``chromium``, driven over the
DevTools protocol): no console errors, every plot drawn and non-empty, no request
leaving the machine, and a screenshot of each page type written.

Screenshots go to ``$SHOESTRING_SCREENSHOTS`` when set (``docs/img`` is made that
way), else to the test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chromium_cdp import Chromium, PageVisit, find_chromium
from report_runs import add_audit, add_compress_table, write_prepared, write_run

from shoestring.report import ReportConfig, write_report

LOCAL = ("file://", "data:", "about:", "http://127.0.0.1", "http://localhost")


@pytest.fixture(scope="module")
def browser():
    binary, why = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests need chromium under CI: {why}")
        pytest.skip(why)
    with Chromium(binary) as b:
        yield b


@pytest.fixture
def shots(tmp_path) -> Path:
    return Path(os.environ.get("SHOESTRING_SCREENSHOTS") or tmp_path / "shots")


def check_page(visit: PageVisit, expected_plots: set[str], shot: Path) -> None:
    assert visit.errors() == [], visit.errors()
    assert visit.requests and all(u.startswith(LOCAL) for u in visit.requests), visit.requests
    names = {p["name"] for p in visit.plots}
    assert expected_plots <= names, expected_plots - names
    for p in visit.plots:
        # drawn: a real size on screen, axis text, and marks (lines, bars or points)
        assert p["width"] > 200 and p["height"] > 100, p
        assert p["texts"] >= 3 and p["marks"] >= 1 and p["paths"] >= 3, p
        assert p["caption"], p
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_run_report_in_chromium(browser, digits_run_dir, tmp_path, shots):
    out = write_report(ReportConfig(runs=[digits_run_dir], out=tmp_path / "run.html")).path
    visit = browser.open(out.as_uri(), screenshot=shots / "report-run.png")
    check_page(visit, {"training-loss-by-step", "training-loss-by-cost", "training-time"},
               shots / "report-run.png")
    assert visit.title.startswith("Shoestring report")


def test_every_section_and_several_runs_in_chromium(browser, digits_run_dir, tmp_path, shots):
    prepared = write_prepared(tmp_path / "data")
    small = write_run(tmp_path / "fixture-run", steps=3000, source=f"prepared:{prepared}")
    add_compress_table(small, digits_run_dir)
    add_audit(small)
    out = write_report(ReportConfig(runs=[digits_run_dir, small],
                                    out=tmp_path / "all.html")).path
    visit = browser.open(out.as_uri(), screenshot=shots / "report-sections.png")
    check_page(visit, {"compare-loss-by-step", "compare-loss-by-cost",
                       "run2-data-drops", "run2-compression-pareto-latency",
                       "run2-compression-pareto-size"}, shots / "report-sections.png")
    # the inline images (thumbnails, heatmaps) are the only other requests: data: URIs
    assert any(u.startswith("data:image/png") for u in visit.requests)


def test_a_partial_run_with_a_corrupt_line_in_chromium(browser, tmp_path, shots):
    run = write_run(tmp_path / "live", steps=50, finished=False, corrupt_line=7)
    out = write_report(ReportConfig(runs=[run], out=tmp_path / "partial.html")).path
    visit = browser.open(out.as_uri(), screenshot=shots / "report-partial.png")
    check_page(visit, {"training-loss-by-step"}, shots / "report-partial.png")


def test_the_checks_catch_a_page_that_fetches_or_errs(browser, tmp_path):
    """The same checks fail on a page that loads a remote stylesheet and throws."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" '
                   'href="https://fonts.example.invalid/x.css"></head><body>'
                   "<script>undefinedFunction()</script></body></html>")
    visit = browser.open(bad.as_uri())
    assert any(u.startswith("https://fonts.example.invalid") for u in visit.requests)
    assert any("undefinedFunction" in e for e in visit.errors()), visit.errors()
