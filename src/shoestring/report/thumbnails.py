"""Small PNG thumbnails of the image records a data report names by origin.

``data prepare`` names each record by its origin: ``NAME#i`` for the i-th
image of an IDX file (``idx:DIR``), or a path relative to the folder of an
``images:DIR`` source. A thumbnail is read back from the source if it is still
on disk; otherwise the report shows the origin alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

THUMB_PX = 64


class Thumbnailer:
    """Origin → PNG bytes (or None), for one prepared source; IDX files parsed once."""

    def __init__(self, source: str | None) -> None:
        scheme, _, rest = (source or "").partition(":")
        self.scheme = scheme
        self.root = Path(rest.split("#", 1)[0]) if rest else None
        self._idx: dict[str, np.ndarray | None] = {}

    def png(self, origin: str) -> bytes | None:
        if self.root is None or not self.root.is_dir():
            return None
        if self.scheme == "idx" and "#" in origin:
            name, _, index = origin.rpartition("#")
            images = self._idx_images(name)
            if images is None or not index.isdigit() or int(index) >= len(images):
                return None
            return _to_png(images[int(index)])
        if self.scheme == "images":
            path = (self.root / origin).resolve()
            if not path.is_file() or self.root.resolve() not in path.parents:
                return None
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as im:
                    return _to_png(np.asarray(im.convert("RGB")))
            except (OSError, UnidentifiedImageError):
                return None
        return None

    def _idx_images(self, name: str) -> np.ndarray | None:
        if name not in self._idx:
            from shoestring.data.idx import parse_idx
            from shoestring.errors import ShoestringError

            path = self.root / name
            try:
                data = path.read_bytes()
                if path.suffix == ".gz":
                    import gzip

                    data = gzip.decompress(data)
                self._idx[name] = parse_idx(data, str(path))
            except (OSError, ShoestringError, ValueError):
                self._idx[name] = None
        return self._idx[name]


def _to_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    im = Image.fromarray(arr)
    im.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
