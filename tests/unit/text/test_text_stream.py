"""Random windows from the token map: in range, shifted targets, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoestring.data.text_stream import TokenStream
from shoestring.errors import DataError

N = 1000


@pytest.fixture()
def stream(tmp_path):
    # Token i has value i % 60000, so a window's values reveal where it was read.
    path = tmp_path / "tokens.bin"
    np.arange(N, dtype="<u2").tofile(path)
    return TokenStream.from_file(path, "<u2", N, val_fraction=0.1)


def test_splits_are_the_first_90_and_last_10_percent(stream):
    assert (stream.train.start, stream.train.stop) == (0, 900)
    assert (stream.val.start, stream.val.stop) == (900, 1000)


@pytest.mark.parametrize("split, low, high", [("train", 0, 900), ("val", 900, 1000)])
def test_windows_stay_inside_their_split_and_targets_are_shifted(stream, split, low, high):
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        x, y = stream.get_batch(split, 8, 16, g)
        assert x.shape == y.shape == (8, 16) and x.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 1)
        assert x.min() >= low and y.max() < high


def test_every_window_start_can_be_drawn(stream):
    starts = stream.val.sample_starts(5000, 16, torch.Generator().manual_seed(1))
    assert starts.min() == 0 and starts.max() == 100 - 16 - 1


def test_batches_are_a_function_of_the_generator_state(stream):
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = [stream.get_batch("train", 4, 8, g1) for _ in range(3)]
    b = [stream.get_batch("train", 4, 8, g2) for _ in range(3)]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    g3 = torch.Generator().manual_seed(7)
    stream.get_batch("train", 4, 8, g3)
    state = g3.get_state()  # resuming mid-run gives the same next batch
    g4 = torch.Generator()
    g4.set_state(state)
    assert torch.equal(stream.get_batch("train", 4, 8, g3)[0], stream.get_batch("train", 4, 8, g4)[0])
    assert not torch.equal(a[0][0], a[1][0])


def test_a_global_batch_can_be_sharded_across_ranks(stream):
    starts = stream.train.sample_starts(8, 16, torch.Generator().manual_seed(0))
    whole, _ = stream.train.windows(starts, 16)
    halves = [stream.train.windows(starts[r::2], 16)[0] for r in range(2)]
    assert torch.equal(torch.cat(halves), torch.cat((whole[0::2], whole[1::2])))


def test_sequential_batches_tile_the_split_without_overlap(stream):
    batches = list(stream.val.sequential_batches(batch_size=2, block_size=16))
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (6, 16)  # (100 − 1) // 16 windows
    assert torch.equal(x.flatten(), torch.arange(900, 996))
    assert len(list(stream.val.sequential_batches(2, 16, max_batches=2))) == 2


def test_a_split_too_short_for_one_window_is_a_clear_error(stream):
    with pytest.raises(DataError, match="val split has 100 tokens.*block_size 100.*needs 101"):
        stream.get_batch("val", 2, 100, torch.Generator())
    with pytest.raises(DataError, match="unknown split 'test'"):
        stream.get_batch("test", 2, 8, torch.Generator())
    with pytest.raises(DataError, match="val_fraction"):
        TokenStream.from_file(stream.train.path, "<u2", N, val_fraction=1.0)
