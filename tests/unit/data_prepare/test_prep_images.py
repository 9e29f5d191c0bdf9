"""Images: PNG/JPEG folders and IDX files, with planted bad files and duplicates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from planted_images import base_images, leaky_idx, near_copy

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.prepare.phash import hamming, phash
from shoestring.data.prepare.shards import ShardSet
from shoestring.data.sources import SourceOptions, load_dataset


def make_folder(root, n_per_class: int = 20):
    imgs = base_images(2 * n_per_class + 1)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(imgs[c * n_per_class + i]).save(root / name / f"{i:03d}.png")
    # Planted: 2 exact copies (other file names, one as lossless WebP), 3 near copies,
    # 1 corrupt file, 1 text file, 1 image of another size, 1 RGB image (converted).
    Image.fromarray(imgs[0]).save(root / "cat" / "copy_a.png")
    Image.fromarray(imgs[1]).save(root / "cat" / "copy_b.webp", lossless=True)
    for k in range(3):
        Image.fromarray(near_copy(imgs[20 + k], seed=k)).save(root / "dog" / f"near_{k}.png")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated garbage")
    (root / "dog" / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "dog" / "big.png")
    rgb = np.stack([imgs[-1]] * 3, axis=-1)
    Image.fromarray(rgb, mode="RGB").save(root / "cat" / "zz_rgb.png")
    return root


def test_image_folder_planted_problems(tmp_path):
    root = make_folder(tmp_path / "imgs")
    cfg = resolve_prepare_config({"source": f"images:{root}", "out": tmp_path / "o",
                                  "label_issues": False})
    r = prepare(cfg).report
    assert r["input"] == 40 + 2 + 3 + 4
    assert r["invalid_reasons"] == {"bad_shape": 1, "unreadable_image": 2}
    assert r["converted_image_mode"] == 2  # the RGB PNG and the WebP (stored as RGB)
    assert r["dropped"]["exact_duplicate"] == 2
    assert r["dropped"]["near_duplicate"] == 3
    assert r["kept"] == 41
    quarantine = [json.loads(line) for line in (cfg.out / "quarantine.jsonl").read_text()
                  .splitlines()]
    assert {q["origin"] for q in quarantine} == {"cat/broken.png", "dog/notes.txt",
                                                 "dog/big.png"}
    shards = ShardSet(cfg.out / "shards")
    assert shards.index["x"] == {"dtype": "uint8", "shape": [1, 32, 32]}
    assert shards.index["class_names"] == ["cat", "dog"]


def test_near_copies_are_close_in_phash_and_strangers_are_not():
    imgs = base_images(50)[:, None]
    h = phash(imgs)
    copies = phash(np.stack([near_copy(i[0], seed=s) for s, i in enumerate(imgs)])[:, None])
    assert hamming(h, copies).max() <= 4
    strangers = hamming(h[:, None], h[None, :])[np.triu_indices(50, 1)]
    assert strangers.min() > 4


def test_idx_given_split_keeps_test_and_drops_train_copies(tmp_path):
    d = leaky_idx(tmp_path / "idx", exact=5, near=4)
    cfg = resolve_prepare_config({"source": f"idx:{d}", "out": tmp_path / "o",
                                  "label_issues": False, "val_fraction": 0.2})
    r = prepare(cfg).report
    assert r["split_mode"] == "given"
    assert r["dropped"]["exact_duplicate"] == 5 and r["dropped"]["near_duplicate"] == 4
    assert r["splits"]["test"] == 60  # the test copy of every pair is the one kept
    assert r["splits"]["train"] + r["splits"]["val"] == 300 - 9
    assert r["duplicates_across_splits"] == 0
    ds = load_dataset(f"prepared:{cfg.out}", SourceOptions())
    assert ds.raw_scale == pytest.approx(1 / 255) and ds.input_shape == (1, 32, 32)
    train = {bytes(x.numpy().tobytes()) for x in ds.train.x}
    assert not any(bytes(x.numpy().tobytes()) in train for x in ds.test.x)


def test_keep_duplicates_drops_only_leaking_train_records(tmp_path):
    d = leaky_idx(tmp_path / "idx", exact=3, near=2)
    cfg = resolve_prepare_config({"source": f"idx:{d}", "out": tmp_path / "o",
                                  "label_issues": False, "keep_duplicates": True})
    r = prepare(cfg).report
    assert r["dropped"]["exact_duplicate"] == r["dropped"]["near_duplicate"] == 0
    assert r["dropped"]["test_overlap"] == 5
    assert r["duplicates_across_splits"] == 0
