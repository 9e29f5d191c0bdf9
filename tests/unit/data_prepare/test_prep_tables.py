"""Tables (CSV and Parquet): validation with origins, exact duplicates, label flips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.prepare.shards import ShardSet
from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import ConfigError

N_FLIPS = 6


def blobs(n: int = 480, seed: int = 0):
    """Three well-separated Gaussian blobs in 4-D, labels a/b/c, and ``N_FLIPS`` planted
    label flips on unambiguous rows (within one unit of their blob's centre; confident
    learning is not meant to catch flips of borderline points)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[0, 0, 0, 0], [8, 8, 0, 0], [0, 8, 8, 8]], float)
    x = centers[y] + rng.normal(0, 0.7, (n, 4))
    labels = np.array(["a", "b", "c"])[y]
    typical = np.flatnonzero(np.linalg.norm(x - centers[y], axis=1) < 1.0)
    flipped = np.sort(rng.choice(typical[typical >= 10], N_FLIPS, replace=False))
    for i in flipped:
        labels[i] = {"a": "b", "b": "c", "c": "a"}[labels[i]]
    return x, labels, flipped


def write_csv(path, x, labels, extra_lines=()):
    lines = ["f1,f2,f3,f4,note,label"]
    lines += [",".join(f"{v:.6f}" for v in row) + f",row {i},{lab}"
              for i, (row, lab) in enumerate(zip(x, labels))]
    lines += list(extra_lines)
    path.write_text("\n".join(lines) + "\n")


BAD_LINES = ("1,2,3,1e39,x,a", "1,nan,3,4,x,a", "1,2,three,4,x,a", "1,2,3,x,a", "1,2,3,4,x,", "1,2,3,400,x,b",
             "1,2,3,4,x,zebra")


def test_csv_validation_dedup_and_label_flips(tmp_path):
    x, labels, flipped = blobs()
    # rows 0-9 duplicated at the end (exact), plus the bad rows
    dup_lines = [",".join(f"{v:.6f}" for v in x[i]) + f",copy {i},{labels[i]}" for i in range(10)]
    write_csv(tmp_path / "t.csv", x, labels, dup_lines + list(BAD_LINES))
    cfg = resolve_prepare_config({
        "source": f"csv:{tmp_path / 't.csv'}", "out": tmp_path / "o", "label_field": "label",
        "ranges": {"f4": (-100, 100)}, "labels": ["a", "b", "c"]})
    r = prepare(cfg).report
    assert r["input"] == 480 + 10 + len(BAD_LINES)
    assert r["invalid_reasons"] == {"bad_row_length": 1, "missing_label": 1, "non_finite": 2,
                                    "not_a_number": 1, "out_of_range": 1, "unknown_label": 1}
    assert r["dropped"]["exact_duplicate"] == 10
    assert r["task"] == "classification" and r["classes"] == ["a", "b", "c"]
    issues = [json.loads(line) for line in (cfg.out / "label_issues.jsonl").read_text()
              .splitlines()]
    found = sorted(int(i["origin"].split(":")[1]) - 2 for i in issues)  # line -> row
    assert found == flipped.tolist()
    assert all(i["given"] != i["suggested"] for i in issues)
    assert r["dropped"]["label_issue"] == 0  # reported only
    quarantine = (cfg.out / "quarantine.jsonl").read_text()
    assert "t.csv:492" in quarantine  # first bad line: header + 480 + 10 + 1
    assert r["input"] == r["kept"] + sum(r["dropped"].values())


def test_label_issues_are_removed_on_request(tmp_path):
    x, labels, _ = blobs(seed=1)
    write_csv(tmp_path / "t.csv", x, labels)
    cfg = resolve_prepare_config({"source": f"csv:{tmp_path / 't.csv'}", "out": tmp_path / "o",
                                  "label_field": "label", "drop_label_issues": True})
    r = prepare(cfg).report
    assert r["dropped"]["label_issue"] == N_FLIPS == r["label_issues"]["found"]
    assert r["kept"] == 480 - N_FLIPS


def test_unknown_range_column_is_a_config_error(tmp_path):
    x, labels, _ = blobs(n=40)
    write_csv(tmp_path / "t.csv", x, labels)
    cfg = resolve_prepare_config({"source": f"csv:{tmp_path / 't.csv'}", "out": tmp_path / "o",
                                  "label_field": "label", "ranges": {"nope": (0, 1)}})
    with pytest.raises(ConfigError, match="ranges.nope"):
        prepare(cfg)


def test_parquet_nulls_nans_and_regression(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 200
    f1 = rng.normal(size=n)
    target = 3 * f1 + rng.normal(0, 0.1, n)
    f1_list = f1.tolist()
    f1_list[3] = None
    f1_list[4] = float("nan")
    tgt = target.tolist()
    tgt[5] = None
    table = pa.table({"f1": f1_list, "city": ["x@y.co" if i == 7 else "paris" for i in range(n)],
                      "price": tgt})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=64)
    cfg = resolve_prepare_config({"source": f"parquet:{tmp_path / 't.parquet'}",
                                  "out": tmp_path / "o", "label_field": "price",
                                  "chunk_records": 50})
    r = prepare(cfg).report
    assert r["invalid_reasons"] == {"missing_label": 1, "missing_value": 1, "non_finite": 1}
    assert r["task"] == "regression" and r["label_issues"]["found"] == 0
    assert r["pii"] == {"email": 1}  # text columns are scanned, not kept
    shards = ShardSet(cfg.out / "shards")
    assert shards.index["feature_names"] == ["f1"]
    ds = load_dataset(f"prepared:{cfg.out}", SourceOptions())
    assert ds.task.value == "regression" and ds.input_shape == (1,)
    assert len(ds.train) + len(ds.test) + shards.records("val") == r["kept"] == 197
