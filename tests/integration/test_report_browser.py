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


@pytest.fixture
def dashboard(tmp_path):
    """``shoestring ui`` as a real server process on 127.0.0.1, over a filled ledger."""
    import socket
    import subprocess
    import sys
    import time

    import httpx
    from dashboard_ledger import fill_ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runs = [write_run(tmp_path / "runs" / n, steps=n_steps, price=1.2)
            for n, n_steps in (("small-lr", 200), ("large-lr", 400))]
    made = fill_ledger(url, runs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("shoestring")
    proc = subprocess.Popen([str(exe), "--db", url, "ui", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"shoestring ui did not start: {proc.stdout.read()!r}")
            time.sleep(0.2)
        yield base, made
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_dashboard_in_chromium(browser, dashboard, shots):
    from dashboard_ledger import PERIOD

    base, made = dashboard
    a, b = made["run_ids"]
    pages = {"ui-runs.png": ("/", set()),
             "ui-serving.png": (f"/serving?month={PERIOD}", {"serving-units-per-day"}),
             "ui-compare.png": (f"/compare?id={a}&id={b}", {"compare-loss-by-step"}),
             "ui-run.png": (f"/runs/{a}", {"training-loss-by-step", "training-time"})}
    for shot, (path, plots) in pages.items():
        visit = browser.open(base + path, screenshot=shots / shot)
        assert visit.status == 200, (path, visit.status)
        check_page(visit, plots, shots / shot)
