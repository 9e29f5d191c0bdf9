"""``shoestring report`` through the CLI on a real training run, and its bad input."""

from __future__ import annotations

import json

from click.testing import CliRunner
from report_runs import write_run

from shoestring.cli.main import build_cli


def invoke(*args):
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def test_report_of_a_real_run(digits_run_dir, tmp_path):
    out = tmp_path / "reports" / "digits.html"
    r = invoke("report", str(digits_run_dir), "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["path"] == str(out) and info["bytes"] == out.stat().st_size
    assert info["sections"] == ["training"] and info["notes"] == []
    page = out.read_text()
    assert 'data-plot="training-loss-by-step"' in page and "test accuracy" in page


def test_report_says_what_it_skipped_and_fails_clearly_on_a_non_run(tmp_path):
    run = write_run(tmp_path / "crashed", steps=8, corrupt_line=2, finished=False)
    r = invoke("report", str(run), "--out", str(tmp_path / "r.html"))
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable line(s) (line 2)" in r.output and "partial" in r.output
    assert "Report: " in r.output
    (tmp_path / "notarun").mkdir()
    r = invoke("report", str(tmp_path / "notarun"), "--out", str(tmp_path / "x.html"))
    assert r.exit_code == 1
    assert "is not a Shoestring run folder" in r.output and "Hint:" in r.output
    assert not (tmp_path / "x.html").exists()
