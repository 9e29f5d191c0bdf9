"""Folders of images as a data source: ``images:DIR``.

Two layouts are understood::

    DIR/<class>/<image>                       one pool, split at load time
    DIR/train/<class>/<image>, DIR/test/...   the folder's own split

Images are PNG, JPEG or anything else Pillow opens; each is converted to one
colour mode (``L`` or ``RGB``) and returned as ``uint8 [C, H, W]``. Every image
must have the same size; ``shoestring data prepare`` quarantines the ones that
do not instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shoestring.data.holdout import stratified_holdout
from shoestring.data.sources import SourceOptions, require_path
from shoestring.errors import DataError
from shoestring.types import Dataset, Task, TensorDataset

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLIT_DIRS = ("train", "test")
# Pillow modes that hold one grey channel; everything else becomes RGB.
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


@dataclass(frozen=True)
class ImageEntry:
    path: Path
    label: str
    split: str | None  # "train", "test" or None


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    entries: tuple[ImageEntry, ...]
    classes: tuple[str, ...]
    has_splits: bool


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(class_dir: Path) -> list[Path]:
    # Every visible file counts, so that a stray non-image is reported, not skipped.
    return sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))


def scan_image_folder(root: Path) -> ImageFolder:
    """List the images of ``root`` with their class and (if the layout has one) split."""
    if not root.is_dir():
        raise DataError(f"'images:' needs a directory, got '{root}'",
                        hint="point at a folder with one subfolder per class")
    top = _class_dirs(root)
    has_splits = bool(top) and {p.name for p in top} <= set(SPLIT_DIRS) | {"val"} and \
        "train" in {p.name for p in top}
    entries: list[ImageEntry] = []
    if has_splits:
        for split_dir in top:
            split = "test" if split_dir.name == "test" else "train"
            for cdir in _class_dirs(split_dir):
                entries += [ImageEntry(f, cdir.name, split) for f in _files(cdir)]
    else:
        for cdir in top:
            entries += [ImageEntry(f, cdir.name, None) for f in _files(cdir)]
    if not entries:
        raise DataError(f"image folder '{root}' has no images in class subfolders",
                        hint="lay it out as DIR/<class>/<image>.png (or DIR/train/<class>/...)")
    classes = tuple(sorted({e.label for e in entries}))
    return ImageFolder(root, tuple(entries), classes, has_splits)


def target_mode(pillow_mode: str) -> str:
    return "L" if pillow_mode in GREY_MODES else "RGB"


def decode_image(path: Path, mode: str | None = None) -> tuple[np.ndarray, str]:
    """``uint8 [C, H, W]`` pixels of ``path`` converted to ``mode`` (default: its own
    grey or RGB), and the file's original Pillow mode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            original = im.mode
            pixels = np.asarray(im.convert(mode or target_mode(original)))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as exc:
        raise DataError(f"cannot decode image '{path}': {exc}",
                        hint="the file is damaged or not an image; remove it or run "
                        "'shoestring data prepare' to quarantine it") from None
    if pixels.ndim == 2:
        pixels = pixels[None]
    else:
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels), original


def load_images(arg: str, options: SourceOptions) -> Dataset:
    """The ``images:DIR`` loader: every image in memory as uint8, labels from folder names."""
    folder = scan_image_folder(require_path(arg, "images"))
    mode = None
    xs, ys, splits = [], [], []
    lookup = {c: i for i, c in enumerate(folder.classes)}
    for e in folder.entries:
        pixels, original = decode_image(e.path, mode)
        mode = mode or target_mode(original)
        if xs and pixels.shape != xs[0].shape:
            raise DataError(
                f"image '{e.path}' is {pixels.shape[2]}x{pixels.shape[1]} with {pixels.shape[0]} "
                f"channel(s), but '{folder.entries[0].path}' is {xs[0].shape[2]}x"
                f"{xs[0].shape[1]} with {xs[0].shape[0]}",
                hint="resize the images to one size, or run 'shoestring data prepare' to "
                "quarantine the odd ones")
        xs.append(pixels)
        ys.append(lookup[e.label])
        splits.append(e.split)
    x = torch.from_numpy(np.stack(xs))
    y = torch.tensor(ys, dtype=torch.int64)
    if folder.has_splits:
        tr = np.array([s != "test" for s in splits])
        train_idx, test_idx = np.flatnonzero(tr), np.flatnonzero(~tr)
        if len(test_idx) == 0:
            raise DataError(f"image folder '{folder.root}' has a train/ but no test/ images",
                            hint="add DIR/test/<class>/ images or use the flat DIR/<class>/ layout")
    else:
        train_idx, test_idx = stratified_holdout(y.numpy(), options.test_fraction, options.seed)
    pick = torch.from_numpy
    return Dataset(
        name=f"images:{folder.root}", task=Task.classification,
        train=TensorDataset(x[pick(train_idx)], y[pick(train_idx)]),
        test=TensorDataset(x[pick(test_idx)], y[pick(test_idx)]),
        input_shape=tuple(x.shape[1:]), num_outputs=len(folder.classes),
        raw_scale=1.0 / 255.0, class_names=folder.classes)
