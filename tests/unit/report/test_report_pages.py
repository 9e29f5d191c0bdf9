"""The report page from hand-made run folders: sections, bad input, downsampling."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st
from report_runs import add_audit, add_compress_table, write_prepared, write_run

from shoestring.errors import ShoestringError
from shoestring.report import ReportConfig, read_run, render_report, write_report
from shoestring.report.downsample import min_max_buckets


class _Tags(HTMLParser):
    """Counts tags and collects every URL-bearing attribute (src, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.urls: list[str] = []
        self.plots: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])
        if tag == "figure" and a.get("class") == "plot":
            self.plots.append(a["data-plot"])


def parse(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


def test_a_finished_run_has_curves_time_breakdown_plan_and_config(tmp_path):
    run = write_run(tmp_path / "r1", steps=40)
    text = render_report([read_run(run)])
    tags = parse(text)
    assert {"training-loss-by-step", "training-loss-by-cost", "training-accuracy-by-step",
            "training-time"} <= set(tags.plots)
    assert tags.tags["svg"] == len(tags.plots)
    assert "cost, $ (at $1.2/hour)" in text
    assert "prediction vs what was measured" in text and "seconds per step" in text
    assert 'price_per_hour = 1.2' in text                      # the resolved config
    # nothing is fetched: every URL is an in-page anchor or inline data
    assert all(u.startswith(("#", "data:")) for u in tags.urls), tags.urls
    assert "default-src 'none'" in text
    assert "partial" not in text.lower().split("<footer")[0].split("</header>")[0]


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShoestringError, match="not a Shoestring run folder") as e:
        read_run(tmp_path / "empty")
    assert "--out" in e.value.hint
    with pytest.raises(ShoestringError, match="is not a folder"):
        read_run(tmp_path / "missing")


def test_a_run_still_training_is_reported_as_partial(tmp_path):
    run = read_run(write_run(tmp_path / "live", steps=20, finished=False))
    assert run.partial and run.status == "partial"
    text = render_report([run])
    assert "partial: no summary.json yet" in text and "last evaluation at step 20" in text
    assert "training-loss-by-step" in parse(text).plots       # what exists is shown


def test_a_corrupt_metrics_line_is_skipped_and_said(tmp_path):
    run = read_run(write_run(tmp_path / "crashed", steps=10, corrupt_line=4))
    assert run.metrics.skipped == [4]
    assert len(run.metrics.records) == 10
    assert "skipped 1 unreadable line(s) (line 4)" in render_report([run])


def test_several_runs_are_overlaid_and_compared(tmp_path):
    a = write_run(tmp_path / "a", steps=30)
    b = write_run(tmp_path / "b", steps=60, price=2.0)
    result = write_report(ReportConfig(runs=[a, b], out=tmp_path / "out" / "r.html"))
    text = result.path.read_text()
    plots = parse(text).plots
    assert "compare-loss-by-step" in plots and "compare-loss-by-cost" in plots
    assert "run1-training-loss-by-step" in plots and "run2-training-loss-by-step" in plots
    assert result.sections[0] == "2 runs compared"
    # both runs in the comparison table, and both in the overlaid plot's legend
    compare = text.split('id="compare"')[1].split("</section>")[0]
    assert compare.count("<tr>") >= 3 and "a: train loss" in compare and "b: val loss" in compare
    svg_ids = re.findall(r'id="([^"]+)"', text)
    assert len(svg_ids) == len(set(svg_ids)), "duplicate element ids across inlined plots"


def test_compression_and_audit_sections_appear_when_their_files_exist(tmp_path):
    parent = write_run(tmp_path / "parent")
    small = write_run(tmp_path / "small")
    add_compress_table(small, parent)
    add_audit(small)
    text = render_report([read_run(small)])
    plots = parse(text).plots
    assert "compression-pareto-latency" in plots and "compression-pareto-size" in plots
    assert '<tr class="chosen"><td>dynamic-int8</td>' in text
    assert "Fairness by group, 95% bootstrap intervals" in text
    assert "0.91 [0.88, 0.94]" in text and "too small to judge" in text
    assert "data:image/png;base64," in text and "Model card: seed-mlp" in text
    plain = render_report([read_run(parent)])
    assert 'id="compression"' not in plain and 'id="audit"' not in plain


def test_data_section_for_a_run_trained_on_a_prepared_folder(tmp_path):
    prepared = write_prepared(tmp_path / "data")
    run = read_run(write_run(tmp_path / "r", source=f"prepared:{prepared}"))
    assert run.data_report is not None
    text = render_report([run])
    assert {"data-drops", "data-splits"} <= set(parse(text).plots)
    assert "labelled 1, looks like 3" in text
    # thumbnails of the duplicate cluster (3) and the label issue (1), read from the IDX source
    section = text.split('id="data"')[1].split("</section>")[0]
    assert section.count("data:image/png;base64,") == 4


def test_write_report_refuses_a_folder_as_out_and_a_run_given_twice(tmp_path):
    run = write_run(tmp_path / "r")
    with pytest.raises(ShoestringError, match="is a folder"):
        write_report(ReportConfig(runs=[run], out=tmp_path))
    with pytest.raises(ShoestringError, match="given twice"):
        write_report(ReportConfig(runs=[run, run], out=tmp_path / "x.html"))


def test_a_long_run_is_downsampled_with_its_extremes(tmp_path):
    run = write_run(tmp_path / "long", steps=10_000)
    text = render_report([read_run(run)])
    svg = text.split('data-plot="training-loss-by-step"')[1].split("</svg>")[0]
    # 250 buckets of 4 points at most per line: the curve is not 10,000 points
    longest = max(len(d.split(" L ")) for d in re.findall(r' d="(M [^"]+)"', svg))
    assert longest <= 1000
    assert len(text) < 600_000


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=3000),
       st.integers(1, 50))
def test_min_max_buckets_keeps_ends_and_extremes(ys, buckets):
    xs = list(range(len(ys)))
    kx, ky = min_max_buckets(xs, ys, buckets)
    assert len(kx) <= max(4 * buckets, len(ys)) and len(kx) == len(ky)
    assert kx == sorted(set(kx))                        # in order, no repeats
    assert kx[0] == 0 and kx[-1] == len(ys) - 1
    assert min(ky) == min(ys) and max(ky) == max(ys)
    assert all(ys[x] == y for x, y in zip(kx, ky))
