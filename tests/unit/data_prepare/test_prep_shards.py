"""Shards: checksums verified on read, deterministic bounded streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shoestring.data.prepare.shards import ShardSet, ShardWriter, write_index
from shoestring.errors import DataError


def build(tmp_path, n=1000, shard_bytes=4096):
    x = np.arange(n * 16, dtype=np.uint8).reshape(n, 1, 4, 4)
    y = np.arange(n, dtype=np.int64)
    w = ShardWriter(tmp_path, "train", "image", shard_bytes)
    for lo in range(0, n, 128):
        w.add_arrays(x[lo:lo + 128], y[lo:lo + 128])
    write_index(tmp_path, "image", {"train": w.close()},
                {"x": {"dtype": "uint8", "shape": [1, 4, 4]}, "y": {"dtype": "int64"}})
    return x, y


def test_split_round_trips_across_many_shards(tmp_path):
    x, y = build(tmp_path)
    s = ShardSet(tmp_path)
    assert len(s.index["splits"]["train"]["shards"]) == 1000 * 16 // 4096 + 1
    gx, gy = s.load("train")
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)


def test_tampered_shard_is_an_error(tmp_path):
    build(tmp_path)
    shard = tmp_path / json.loads((tmp_path / "index.json").read_text())["splits"]["train"][
        "shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its SHA-256"):
        ShardSet(tmp_path).load("train")


def test_missing_index_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="index.json") as err:
        ShardSet(tmp_path)
    assert "prepare" in err.value.hint


def test_streaming_is_a_deterministic_permutation(tmp_path):
    _, y = build(tmp_path)
    s = ShardSet(tmp_path)
    epoch0 = np.concatenate([b[1] for b in s.iter_batches("train", 100, seed=3, epoch=0)])
    again = np.concatenate([b[1] for b in s.iter_batches("train", 100, seed=3, epoch=0)])
    epoch1 = np.concatenate([b[1] for b in s.iter_batches("train", 100, seed=3, epoch=1)])
    np.testing.assert_array_equal(epoch0, again)
    assert sorted(epoch0.tolist()) == y.tolist()
    assert not np.array_equal(epoch0, epoch1)
    sizes = [len(b[1]) for b in s.iter_batches("train", 100, seed=3, epoch=0)]
    assert sizes == [100] * 10
