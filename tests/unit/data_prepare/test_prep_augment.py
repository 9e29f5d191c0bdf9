"""Augmentation: deterministic in (seed, step), vectorized, validated spec."""

from __future__ import annotations

import pytest
import torch

from shoestring.data.augment import TA_OPS, _photometric, build_augmentation, parse_augment
from shoestring.errors import ConfigError

# Compares floating-point results: run again on AVX2 kernels by `make test`.
pytestmark = pytest.mark.numerics


def batch(n=16, c=1, side=12):
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", ["crop", "rotate=15,scale=0.2", "flip", "trivial",
                                  "trivial,crop=2,flip"])
def test_same_step_same_batch_other_step_other_batch(spec):
    aug = build_augmentation(spec, (1, 12, 12), seed=5)
    x = batch()
    a, b, c = aug(x, 100), aug(x, 100), aug(x, 101)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, batch())  # input untouched


def test_crop_shifts_by_whole_pixels():
    x = torch.zeros(8, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    out = build_augmentation("crop=2", (1, 9, 9), seed=0)(x, 0)
    for img in out:
        assert torch.isclose(img.sum(), torch.tensor(1.0), atol=1e-5)  # one bright pixel moved
        assert img.max() == pytest.approx(1.0, abs=1e-5)


def test_flip_only_mirrors():
    x = batch(n=64)
    out = build_augmentation("flip=1.0", (1, 12, 12), seed=0)(x, 3)
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)


def test_seed_changes_the_draws():
    x = batch()
    assert not torch.equal(build_augmentation("rotate", (1, 12, 12), 0)(x, 1),
                           build_augmentation("rotate", (1, 12, 12), 1)(x, 1))


def test_photometric_ops_stay_in_range_and_change_something():
    u = batch(n=8, c=3)
    level, sign = torch.full((8,), 0.8), torch.ones(8)
    for name in TA_OPS:
        out = _photometric(name, u, level, sign)
        assert out.shape == u.shape
        assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(_photometric("posterize", u, level, sign), u)
    assert not torch.equal(_photometric("equalize", u, level, sign), u)


def test_trivial_works_on_standardized_values():
    x = (batch(n=32) - 0.5) * 4  # values around [-2, 2]
    out = build_augmentation("trivial", (1, 12, 12), 0)(x, 9)
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-5


def test_bad_specs_report_every_problem():
    with pytest.raises(ConfigError) as err:
        parse_augment("crop=abc,blur,flip=2,trivial=3", side=28)
    assert len(err.value.problems) == 4
    with pytest.raises(ConfigError, match="image data"):
        build_augmentation("crop", (20,), 0)
    assert parse_augment("crop", side=28).shift == 4  # 1/8 of the side
