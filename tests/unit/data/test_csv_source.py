import pytest

from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import DataError
from shoestring.types import Task


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_classification_with_text_labels(tmp_path):
    rows = "\n".join(f"{i},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(40))
    p = write(tmp_path, "a,b,label\n" + rows + "\n")
    ds = load_dataset(f"csv:{p}", SourceOptions(target="label"))
    assert ds.task is Task.classification
    assert ds.class_names == ("cat", "dog")
    assert ds.feature_names == ("a", "b")
    assert len(ds.train) + len(ds.test) == 40


def test_regression_is_inferred_from_real_valued_target(tmp_path):
    rows = "\n".join(f"{i},{i * 0.5 + 0.25}" for i in range(30))
    ds = load_dataset(f"csv:{write(tmp_path, 'x,y' + chr(10) + rows)}", SourceOptions(target="y"))
    assert ds.task is Task.regression and ds.num_outputs == 1


def test_non_numeric_cell_names_line_and_column(tmp_path):
    p = write(tmp_path, "a,b,y\n1,2,0\n3,oops,1\n")
    with pytest.raises(DataError, match=r"t\.csv:3: column 'b' has non-numeric value 'oops'"):
        load_dataset(f"csv:{p}", SourceOptions(target="y"))


def test_nan_feature_is_rejected(tmp_path):
    p = write(tmp_path, "a,y\n1,0\nnan,1\n")
    with pytest.raises(DataError, match=r":3: column 'a'"):
        load_dataset(f"csv:{p}", SourceOptions(target="y"))


def test_missing_target_column_lists_columns(tmp_path):
    p = write(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(DataError) as err:
        load_dataset(f"csv:{p}", SourceOptions(target="label"))
    assert "'label' not found" in err.value.message and "a, b" in err.value.hint


def test_target_required(tmp_path):
    p = write(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match="needs a target column"):
        load_dataset(f"csv:{p}")


@pytest.mark.parametrize("text,match", [("", "is empty"), ("a,y\n", "no data rows"),
                                        ("a,y\n1,0\n", "only one data row"),
                                        ("a,y\n1,0\n2\n", r":3: expected 2 fields, found 1"),
                                        ("a,y\n1,0\n2,\n", r":3: target column 'y' is empty")])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_dataset(f"csv:{write(tmp_path, text)}", SourceOptions(target="y"))


def test_not_utf8(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(f"csv:{p}", SourceOptions(target="y"))
