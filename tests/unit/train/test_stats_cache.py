"""Feature statistics cached by content: read back bit for bit, never for other data."""

from __future__ import annotations

import torch

from shoestring.data.sources import SourceOptions
from shoestring.train import tensors
from shoestring.train.problem import _stats_cache
from shoestring.train.tensors import prepare_tensors
from shoestring.types import Dataset, Task, TensorDataset


def _images(seed: int, n: int = 64) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 3, (n,), generator=gen)
    return Dataset("imgs", Task.classification, TensorDataset(x, y),
                   TensorDataset(x[:8].clone(), y[:8].clone()), (1, 4, 4), 3,
                   raw_scale=1 / 255)


def test_cached_statistics_equal_computed_ones_and_are_reused(tmp_path, monkeypatch):
    data = _images(0)
    plain = prepare_tensors(data, "standardize", raw_train=True)
    first = prepare_tensors(data, "standardize", raw_train=True, stats_cache=tmp_path)
    assert first.preprocessing == plain.preprocessing
    assert len(list(tmp_path.glob("*.json"))) == 1

    def never(*_):
        raise AssertionError("recomputed despite a cached entry")

    monkeypatch.setattr(tensors, "feature_stats", never)
    again = prepare_tensors(data, "standardize", raw_train=True, stats_cache=tmp_path)
    assert again.preprocessing == plain.preprocessing  # bit for bit, through JSON
    x = data.train.x[:5]
    assert torch.equal(again.train_inputs(x), plain.train_inputs(x))
    monkeypatch.undo()

    other = prepare_tensors(_images(1), "standardize", raw_train=True, stats_cache=tmp_path)
    assert other.preprocessing.mean != plain.preprocessing.mean
    assert len(list(tmp_path.glob("*.json"))) == 2  # other content, other entry
    for entry in tmp_path.glob("*.json"):
        entry.write_text("{damaged")
    redo = prepare_tensors(data, "standardize", raw_train=True, stats_cache=tmp_path)
    assert redo.preprocessing == plain.preprocessing


def test_only_sources_cached_in_plaintext_get_a_statistics_cache(tmp_path):
    options = SourceOptions(cache_dir=tmp_path / "cache" / "arrays")
    assert _stats_cache("fashion-mnist", options) == tmp_path / "cache" / "feature-stats"
    assert _stats_cache("idx:/data/mnist", options) is not None
    for spec in ("prepared:enc", "images:photos", "csv:t.csv", "digits"):
        assert _stats_cache(spec, options) is None
    assert _stats_cache("fashion-mnist", SourceOptions()) is None
