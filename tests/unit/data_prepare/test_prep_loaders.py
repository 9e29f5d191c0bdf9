"""New data sources: images:DIR, parquet:PATH and prepared:DIR (with #val)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.prepared import prepared_stats
from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import DataError
from shoestring.train.tensors import fit_preprocessing


def image_tree(root, split_dirs=False):
    rng = np.random.default_rng(0)
    for s in ("train", "test") if split_dirs else ("",):
        for c in ("a", "b"):
            d = root / s / c
            d.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)).save(
                    d / f"{i}.png")
    return root


def test_images_flat_layout_is_split_and_scaled(tmp_path):
    ds = load_dataset(f"images:{image_tree(tmp_path / 'i')}", SourceOptions(test_fraction=0.5))
    assert ds.input_shape == (3, 5, 7) and ds.class_names == ("a", "b")
    assert len(ds.train) == len(ds.test) == 6 and ds.raw_scale == pytest.approx(1 / 255)


def test_images_with_train_test_folders_use_them(tmp_path):
    ds = load_dataset(f"images:{image_tree(tmp_path / 'i', split_dirs=True)}", SourceOptions())
    assert len(ds.train) == len(ds.test) == 12


def test_images_of_mixed_size_name_the_file(tmp_path):
    root = image_tree(tmp_path / "i")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "b" / "odd.png")
    with pytest.raises(DataError, match="odd.png") as err:
        load_dataset(f"images:{root}", SourceOptions())
    assert "data prepare" in err.value.hint


def test_parquet_loader(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x1": [0.0, 1.0, 2.0, 3.0] * 5, "kind": ["p", "q"] * 10}),
                   tmp_path / "t.parquet")
    ds = load_dataset(f"parquet:{tmp_path / 't.parquet'}", SourceOptions(label="kind"))
    assert ds.class_names == ("p", "q") and ds.feature_names == ("x1",)
    pq.write_table(pa.table({"x1": [1.0, None], "y": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match="missing values"):
        load_dataset(f"parquet:{tmp_path / 'n.parquet'}", SourceOptions(label="y"))


def test_prepared_source_and_saved_statistics(tmp_path):
    out = tmp_path / "p"
    prepare(resolve_prepare_config({"source": "digits", "out": out, "label_issues": False}))
    ds = load_dataset(f"prepared:{out}", SourceOptions())
    val = load_dataset(f"prepared:{out}#val", SourceOptions())
    assert ds.input_shape == (64,) and ds.num_outputs == 10
    assert torch.equal(ds.train.x, val.train.x) and len(val.test) != len(ds.test)
    assert torch.equal(load_dataset(f"prepared:{out}#validation", SourceOptions()).test.x,
                       val.test.x)
    # The saved statistics are what 'normalize = standardize' fits on the same split.
    pre, stats = fit_preprocessing(ds, "standardize"), prepared_stats(out)
    np.testing.assert_allclose(pre.mean, stats["mean"], atol=1e-5)
    np.testing.assert_allclose(pre.std, stats["std"], atol=1e-5)
    with pytest.raises(DataError, match="evaluation split"):
        load_dataset(f"prepared:{out}#nope", SourceOptions())
