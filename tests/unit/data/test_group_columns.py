"""Group columns (``--group``) travel through csv:, parquet: and prepared: beside each split,
row for row, and are never features."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import ShoestringError


def _rows(n=120, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n).round(4)
    b = rng.normal(size=n).round(4)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    return a, b, sex, (a > 0).astype(int)


def _write_csv(path, n=120):
    a, b, sex, y = _rows(n)
    with open(path, "w") as f:
        f.write("a,sex,b,y\n")
        for i in range(n):
            cell = "" if i == 3 else sex[i]  # an empty cell is the group "(missing)"
            f.write(f"{a[i]},{cell},{b[i]},{y[i]}\n")
    return a, b, np.array(["(missing)" if i == 3 else s for i, s in enumerate(sex)]), y


def _check_aligned(ds, a, b, sex):
    """Each split's group values are those of its own rows (matched through its features)."""
    of = {(round(float(av), 4), round(float(bv), 4)): s for av, bv, s in zip(a, b, sex)}
    for split in (ds.train, ds.test):
        assert split.x.shape[1] == 2  # a and b: the group column is not a feature
        assert set(split.groups) == {"sex"} and len(split.groups["sex"]) == len(split)
        for row, s in zip(split.x.tolist(), split.groups["sex"]):
            assert of[(round(row[0], 4), round(row[1], 4))] == s


def test_csv_sets_group_columns_aside(tmp_path):
    a, b, sex, _ = _write_csv(tmp_path / "t.csv")
    ds = load_dataset(f"csv:{tmp_path / 't.csv'}",
                      SourceOptions(label="y", groups=("sex",), test_fraction=0.25))
    assert ds.feature_names == ("a", "b")
    _check_aligned(ds, a, b, sex)
    assert "(missing)" in ds.train.groups["sex"] + ds.test.groups["sex"]


def test_csv_without_groups_has_none(tmp_path):
    _write_csv(tmp_path / "t.csv")
    (tmp_path / "n.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n"
                                                        for i in range(40)))
    ds = load_dataset(f"csv:{tmp_path / 'n.csv'}", SourceOptions(label="y"))
    assert ds.train.groups is None


def test_parquet_sets_group_columns_aside(tmp_path):
    a, b, sex, y = _rows()
    pq.write_table(pa.table({"a": a, "sex": sex, "b": b, "y": y}), tmp_path / "t.parquet")
    ds = load_dataset(f"parquet:{tmp_path / 't.parquet'}",
                      SourceOptions(label="y", groups=("sex",), test_fraction=0.25))
    _check_aligned(ds, a, b, sex)


def test_prepared_keeps_group_columns_for_train_and_audit(tmp_path):
    a, b, sex, _ = _write_csv(tmp_path / "t.csv", n=200)
    prepare(resolve_prepare_config({"source": f"csv:{tmp_path / 't.csv'}",
                                    "out": tmp_path / "prep", "label_field": "y",
                                    "group": ["sex"]}))
    ds = load_dataset(f"prepared:{tmp_path / 'prep'}", SourceOptions(groups=("sex",)))
    _check_aligned(ds, a, b, sex)
    with pytest.raises(ShoestringError, match="has no group column") as e:
        load_dataset(f"prepared:{tmp_path / 'prep'}", SourceOptions(groups=("age",)))
    assert "prepared with group columns: sex" in e.value.hint


@pytest.mark.parametrize("groups, message", [
    (("sexe",), "group column(s) 'sexe' not found"),
    (("y",), "both the label and a group column"),
    (("sex", "sex"), "group columns repeat"),
])
def test_bad_group_columns(tmp_path, groups, message):
    _write_csv(tmp_path / "t.csv")
    with pytest.raises(ShoestringError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(f"csv:{tmp_path / 't.csv'}", SourceOptions(label="y", groups=groups))
