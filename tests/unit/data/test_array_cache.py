"""The decoded-array cache: reused while the sources stay, rebuilt when they change
or when an entry is damaged, and never in the way."""

from __future__ import annotations

import os

import numpy as np
import torch
from idx_files import write_idx_dir

from shoestring.data.array_cache import cached_arrays
from shoestring.data.idx import load_idx_dir
from shoestring.data.sources import SourceOptions


def test_idx_data_is_decoded_once_then_mapped(tmp_path):
    src = write_idx_dir(tmp_path / "idx")
    opts = SourceOptions(cache_dir=tmp_path / "cache")
    first = load_idx_dir(str(src), opts)
    (entry,) = (tmp_path / "cache").iterdir()
    second = load_idx_dir(str(src), opts)
    plain = load_idx_dir(str(src), SourceOptions())
    for split in ("train", "test"):
        for a, b in ((first, second), (first, plain)):
            assert torch.equal(getattr(a, split).x, getattr(b, split).x)
            assert torch.equal(getattr(a, split).y, getattr(b, split).y)
    assert sorted(p.name for p in entry.iterdir()) == [
        "meta.json", "test_x.npy", "test_y.npy", "train_x.npy", "train_y.npy"]


def test_a_changed_source_gets_a_new_entry_and_the_old_one_goes(tmp_path):
    calls = []
    src = tmp_path / "a.bin"
    src.write_bytes(b"one")

    def build():
        calls.append(1)
        return {"x": np.frombuffer(src.read_bytes(), dtype=np.uint8).copy()}

    assert cached_arrays(tmp_path / "c", [src], {}, build)["x"].tobytes() == b"one"
    assert cached_arrays(tmp_path / "c", [src], {}, build)["x"].tobytes() == b"one"
    assert len(calls) == 1
    src.write_bytes(b"two!")
    os.utime(src, ns=(1, 1))
    assert cached_arrays(tmp_path / "c", [src], {}, build)["x"].tobytes() == b"two!"
    assert len(calls) == 2 and len(list((tmp_path / "c").iterdir())) == 1
    # Other settings of the same source are another entry.
    cached_arrays(tmp_path / "c", [src], {"scale": 2}, build)
    assert len(calls) == 3


def test_a_damaged_entry_is_rebuilt_not_trained_on(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    build = lambda: {"x": np.arange(1000, dtype=np.int64)}  # noqa: E731
    cached_arrays(tmp_path / "c", [src], {}, build)
    (entry,) = (tmp_path / "c").iterdir()
    raw = bytearray((entry / "x.npy").read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit in the data
    (entry / "x.npy").write_bytes(bytes(raw))
    logs = []
    x = cached_arrays(tmp_path / "c", [src], {}, build, log=logs.append)["x"]
    assert np.array_equal(x, np.arange(1000)) and "failed its checksum" in logs[0]
    assert np.array_equal(cached_arrays(tmp_path / "c", [src], {}, build)["x"], np.arange(1000))


def test_an_unwritable_cache_costs_only_the_saving(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    logs = []
    out = cached_arrays(blocker / "cache", [src], {}, lambda: {"x": np.ones(3)},
                        log=logs.append)
    assert np.array_equal(out["x"], np.ones(3)) and "not written" in logs[0]
