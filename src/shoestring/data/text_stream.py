"""Random training windows read straight from a memory-mapped token file.

A split is a contiguous range of the token file (train: the first 90 %,
val: the rest, by default). A batch is ``batch_size`` windows at random
starts ``i``: inputs ``tokens[i:i+T]`` and targets ``tokens[i+1:i+T+1]``, as in
nanoGPT's ``get_batch``. Only the windows' pages are read, so memory stays
bounded for corpora larger than RAM, and the starts come from a
``torch.Generator``, so a batch is a pure function of the generator's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shoestring.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TokenSplit:
    """Tokens ``[start, stop)`` of a token file, and batches drawn from them."""

    name: str
    path: Path
    dtype: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def _tokens(self) -> np.memmap:
        # Re-opened per batch, as nanoGPT does, so the pages a long run touches
        # are not kept mapped in this process (https://stackoverflow.com/q/45132940).
        return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r",
                         offset=self.start * np.dtype(self.dtype).itemsize, shape=(len(self),))

    def _check(self, block_size: int) -> None:
        if block_size < 1:
            raise DataError(f"block_size must be at least 1, got {block_size}")
        if len(self) < block_size + 1:
            raise DataError(f"the {self.name} split has {len(self)} tokens, too few for one "
                            f"window of block_size {block_size} (needs {block_size + 1})",
                            hint="use more text, a smaller block_size, or another val_fraction")

    def sample_starts(self, batch_size: int, block_size: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch_size`` random window starts (int64), uniform over every full window."""
        self._check(block_size)
        return torch.randint(len(self) - block_size, (batch_size,), generator=generator)

    def windows(self, starts: torch.Tensor, block_size: int) -> Batch:
        """Inputs and next-token targets ``[len(starts), block_size]`` (int64) at ``starts``."""
        self._check(block_size)
        tokens = self._tokens()
        rows = np.stack([tokens[s:s + block_size + 1] for s in starts.tolist()]) \
            if len(starts) else np.empty((0, block_size + 1), dtype=tokens.dtype)
        rows = torch.from_numpy(rows.astype(np.int64))
        return rows[:, :-1], rows[:, 1:]

    def get_batch(self, batch_size: int, block_size: int,
                  generator: torch.Generator | None = None) -> Batch:
        return self.windows(self.sample_starts(batch_size, block_size, generator), block_size)

    def sequential_batches(self, batch_size: int, block_size: int,
                           max_batches: int | None = None) -> Iterator[Batch]:
        """Consecutive non-overlapping windows from the split's start: a fixed evaluation set."""
        self._check(block_size)
        n_windows = (len(self) - 1) // block_size
        starts = torch.arange(n_windows) * block_size
        for b, i in enumerate(range(0, n_windows, batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            yield self.windows(starts[i:i + batch_size], block_size)


@dataclass(frozen=True)
class TokenStream:
    """The train and val splits of one token file."""

    train: TokenSplit
    val: TokenSplit

    @classmethod
    def from_file(cls, path: Path, dtype: str, n_tokens: int, val_fraction: float
                  ) -> TokenStream:
        """Split the last ``val_fraction`` of the tokens off for validation."""
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}",
                            hint="e.g. 0.1 (the last 10% of the tokens)")
        cut = n_tokens - max(int(n_tokens * val_fraction), 1)
        return cls(TokenSplit("train", path, dtype, 0, cut),
                   TokenSplit("val", path, dtype, cut, n_tokens))

    def split(self, name: str) -> TokenSplit:
        if name not in ("train", "val"):
            raise DataError(f"unknown split {name!r}", hint="use 'train' or 'val'")
        return self.train if name == "train" else self.val

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  generator: torch.Generator | None = None) -> Batch:
        """A random batch ``(x, y)`` of ``split``; deterministic given ``generator``'s state."""
        return self.split(split).get_batch(batch_size, block_size, generator)
