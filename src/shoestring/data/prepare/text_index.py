"""A streaming MinHash-LSH index for text whose working data lives on disk.

``add`` takes documents a chunk at a time; each chunk's shingle sets are
appended to one file and its band hashes to one file per band, then dropped
from memory. Candidate generation reads one band file at a time (8 bytes per
document) and verification reads only the shingle sets of candidate pairs, so
peak memory is set by the chunk size and the number of candidate pairs, not
by the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shoestring.data.prepare.hashing import U64
from shoestring.data.prepare.jaccard import pair_jaccard
from shoestring.data.prepare.lsh import ANCHOR_LIMIT, BandStats, bucket_pairs, unique_pairs
from shoestring.data.prepare.minhash import LshParams, band_hashes, permutations, signatures
from shoestring.data.prepare.shingles import shingle_sets


class TextNearIndex:
    """MinHash signatures, LSH bands and shingle sets of documents, spilled to ``directory``.

    >>> import tempfile
    >>> idx = TextNearIndex(Path(tempfile.mkdtemp()), LshParams(25, 5))
    >>> idx.add(["the quick brown fox jumps over the lazy dog today",
    ...          "the quick brown fox jumps over the lazy dog today!", "something else"])
    >>> pairs = idx.candidate_pairs(); pairs.tolist(), idx.jaccard(pairs).tolist()
    ([[0, 1]], [1.0])
    """

    def __init__(self, directory: Path, params: LshParams, *, ngram: int = 3,
                 num_perm: int = 128, seed: int = 1, anchor_limit: int = ANCHOR_LIMIT) -> None:
        if params.bands * params.rows > num_perm:
            raise ValueError(f"{params.bands} bands x {params.rows} rows exceed {num_perm} "
                             "permutations")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.params, self.ngram, self.anchor_limit = params, ngram, anchor_limit
        self.a, self.b = permutations(num_perm, seed)
        # Held open while documents stream in; closed by close() / the with block.
        self._band_files = [open(self.directory / f"band-{k:03d}.u64", "wb")  # noqa: SIM115
                            for k in range(params.bands)]
        self._shingle_file = open(self.directory / "shingles.u64", "wb")  # noqa: SIM115
        self._counts: list[np.ndarray] = []
        self.n = 0
        self.stats = BandStats()

    def add(self, texts: Sequence[str]) -> None:
        values, offsets = shingle_sets(texts, self.ngram)
        sig = signatures(values, offsets, self.a, self.b)
        bands = band_hashes(sig, self.params.bands, self.params.rows)
        for k, f in enumerate(self._band_files):
            f.write(np.ascontiguousarray(bands[:, k]).tobytes())
        self._shingle_file.write(values.tobytes())
        self._counts.append(np.diff(offsets))
        self.n += len(texts)

    def _finish_writing(self) -> None:
        for f in self._band_files + [self._shingle_file]:
            if not f.closed:
                f.flush()

    def offsets(self) -> np.ndarray:
        counts = np.concatenate(self._counts) if self._counts else np.empty(0, np.int64)
        off = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=off[1:])
        return off

    def candidate_pairs(self, active: np.ndarray | None = None) -> np.ndarray:
        """Pairs sharing a band, among ``active`` documents that have shingles."""
        self._finish_writing()
        counts = np.diff(self.offsets())
        usable = counts > 0 if active is None else (counts > 0) & active[: self.n]
        ids = np.flatnonzero(usable)
        chunks = []
        for f in self._band_files:
            keys = np.fromfile(f.name, dtype=U64, count=self.n)
            chunks.append(bucket_pairs(keys[ids], ids, self.anchor_limit, self.stats))
            del keys
        return unique_pairs(chunks)

    def jaccard(self, pairs: np.ndarray) -> np.ndarray:
        self._finish_writing()
        offsets = self.offsets()
        if offsets[-1] == 0 or len(pairs) == 0:
            return np.zeros(len(pairs))
        values = np.memmap(self._shingle_file.name, dtype=U64, mode="r", shape=(int(offsets[-1]),))
        try:
            return pair_jaccard(values, offsets, pairs)
        finally:
            del values

    def close(self) -> None:
        for f in self._band_files + [self._shingle_file]:
            f.close()

    def __enter__(self) -> TextNearIndex:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()
