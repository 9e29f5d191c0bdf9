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
    ds = load_dataset(f"csv:{p}", SourceOptions(label="label"))
    assert ds.task is Task.classification
    assert ds.class_names == ("cat", "dog")
    assert ds.feature_names == ("a", "b")
    assert len(ds.train) + len(ds.test) == 40 and ds.notes == ()


def test_numeric_labels_are_in_numeric_order(tmp_path):
    rows = "\n".join(f"{i},{[9, 10, 2][i % 3]}" for i in range(30))
    ds = load_dataset(f"csv:{write(tmp_path, 'x,y' + chr(10) + rows)}",
                      SourceOptions(label="y", task="classification"))
    assert ds.class_names == ("2", "9", "10")


def test_regression_is_inferred_from_real_valued_label(tmp_path):
    rows = "\n".join(f"{i},{i * 0.5 + 0.25}" for i in range(30))
    ds = load_dataset(f"csv:{write(tmp_path, 'x,y' + chr(10) + rows)}", SourceOptions(label="y"))
    assert ds.task is Task.regression and ds.num_outputs == 1


def test_the_same_files_as_data_prepare(tmp_path):
    """Text columns are left out and a row that breaks its column's type is skipped, both
    with a note, as `data prepare` does, instead of refusing the file."""
    rows = [f"{i},{i % 7},city{i % 3},{i % 2}" for i in range(40)]
    rows[5] = "5,oops,city2,1"
    rows[9] = "9,nan,city0,1"
    p = write(tmp_path, "a,b,city,y\n" + "\n".join(rows) + "\n")
    ds = load_dataset(f"csv:{p}", SourceOptions(label="y"))
    assert ds.feature_names == ("a", "b") and len(ds.train) + len(ds.test) == 38
    assert any("city" in n and "left out" in n for n in ds.notes)
    assert any("2 row(s) skipped" in n and "t.csv:7" in n for n in ds.notes)


def test_missing_label_column_lists_columns(tmp_path):
    p = write(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(DataError) as err:
        load_dataset(f"csv:{p}", SourceOptions(label="label"))
    assert "'label' not found" in err.value.message and "a, b" in err.value.hint


def test_label_required(tmp_path):
    p = write(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match="needs a label column") as err:
        load_dataset(f"csv:{p}")
    assert "--label COLUMN" in err.value.hint


@pytest.mark.parametrize("text,match", [("", "is empty"), ("a,y\n", "0 usable data row"),
                                        ("a,y\n1,0\n", "1 usable data row"),
                                        ("a,y\n1,0\n2\n", r"t\.csv:3"),
                                        ("a,y\n1,0\n2,\n", r"label column 'y' is empty")])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_dataset(f"csv:{write(tmp_path, text)}", SourceOptions(label="y"))


def test_not_utf8(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(f"csv:{p}", SourceOptions(label="y"))
