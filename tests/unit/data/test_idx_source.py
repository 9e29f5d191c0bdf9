import gzip
import struct

import numpy as np
import pytest
from idx_files import idx_bytes, write_idx_dir

from shoestring.data.idx import parse_idx
from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import DataError


def test_parse_roundtrip():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(arr)), arr)


def test_wrong_magic_names_file_and_bytes():
    with pytest.raises(DataError, match=r"x\.idx. has wrong magic bytes 3c68746d"):
        parse_idx(b"<html>not idx</html>", "x.idx")


def test_truncated_file_is_reported_with_sizes():
    data = idx_bytes(np.zeros((10, 4, 4), np.uint8))[:-5]
    with pytest.raises(DataError, match=r"truncated.*160 data bytes.*155"):
        parse_idx(data, "t.idx")


def test_truncated_header_and_empty():
    with pytest.raises(DataError, match="empty"):
        parse_idx(b"", "e.idx")
    with pytest.raises(DataError, match="truncated header"):
        parse_idx(bytes([0, 0, 8, 3]) + struct.pack(">i", 5), "h.idx")


def test_trailing_bytes_are_an_error():
    with pytest.raises(DataError, match="beyond its declared shape"):
        parse_idx(idx_bytes(np.zeros((2, 2), np.uint8)) + b"xx", "x.idx")


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_dir(tmp_path, gz):
    d = write_idx_dir(tmp_path / "d", n_train=50, n_test=20, gz=gz)
    ds = load_dataset(f"idx:{d}")
    assert ds.input_shape == (1, 8, 8)
    assert len(ds.train) == 50 and len(ds.test) == 20
    assert ds.num_outputs == 4
    assert ds.raw_scale == pytest.approx(1 / 255)


def test_image_label_count_mismatch(tmp_path):
    d = write_idx_dir(tmp_path / "d", n_train=50, n_test=20, gz=False)
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(49, np.uint8)))
    with pytest.raises(DataError, match="50 images.*49 labels"):
        load_dataset(f"idx:{d}")


def test_corrupt_gzip_is_reported(tmp_path):
    d = write_idx_dir(tmp_path / "d", n_train=50, n_test=20, gz=True)
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(DataError, match="cannot read IDX file.*t10k-images"):
        load_dataset(f"idx:{d}")


def test_missing_files_and_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no 'train-images-idx3-ubyte'"):
        load_dataset(f"idx:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"idx:{tmp_path / 'nope'}")


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", SourceOptions(fashion_mnist_dir=tmp_path / "none"))
    assert "apt-get install dataset-fashion-mnist" in err.value.hint


def test_fashion_mnist_alias_uses_given_dir(tmp_path):
    d = write_idx_dir(tmp_path / "fm", n_train=30, n_test=10)
    ds = load_dataset("fashion-mnist", SourceOptions(fashion_mnist_dir=d))
    assert ds.name == "fashion-mnist" and len(ds.train) == 30


def test_unknown_source_lists_choices():
    with pytest.raises(DataError) as err:
        load_dataset("mnist-please")
    assert "digits" in err.value.hint and "csv" in err.value.hint


def test_digits_split_is_stratified_and_seeded():
    a = load_dataset("digits", SourceOptions(seed=1))
    b = load_dataset("digits", SourceOptions(seed=1))
    assert len(a.train) + len(a.test) == 1797
    assert np.array_equal(a.test.y.numpy(), b.test.y.numpy())
    counts = np.bincount(a.test.y.numpy(), minlength=10)
    assert counts.min() >= 30  # every class on the test side
    assert gzip  # keep import used
