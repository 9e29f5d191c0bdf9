"""Training-time augmentation of image batches: a pure function of (batch, step).

``build_augmentation("crop,rotate=10,flip", (1, 28, 28), seed)`` returns
``fn(x, global_step)`` that the training engine applies to each batch. The
random draws come from a generator seeded by ``(seed, global_step)`` only, so a
resumed run sees exactly the batches it would have seen. Every operation is
vectorized over the batch: one ``affine_grid``/``grid_sample`` for the
geometric part, masked tensor ops for the photometric part.

Spec: comma-separated operations, each optionally ``name=value``:

* ``crop[=PX]`` (alias ``shift``): random translation by whole pixels up to
  ``PX`` each way, padding with zeros: the classic pad-and-random-crop
  (default: 1/8 of the image side, i.e. 4 px on 32 px images as in the ResNet
  CIFAR recipe of He et al. 2016).
* ``rotate[=DEG]``: uniform rotation in [-DEG, DEG] (default 10).
* ``scale[=F]``: uniform zoom in [1-F, 1+F] (default 0.1).
* ``flip[=P]``: horizontal flip with probability P (default 0.5). Only where
  mirror images keep their label: clothes yes, digits and text no, so it is
  never implied by another option.
* ``trivial``: TrivialAugment (Müller and Hutter, ICCV 2021): for each image,
  one operation drawn uniformly from the 14 of the paper's "wide" space, at a
  magnitude drawn uniformly from 31 bins. Parameter-free. Photometric
  operations act on values rescaled to [0, 1] by the batch's range, so they
  work on scaled or standardized inputs alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from shoestring.errors import ConfigError

Augmentation = Callable[[torch.Tensor, int], torch.Tensor]

# TrivialAugment "wide" magnitude ranges (paper, Table 5; torchvision
# TrivialAugmentWide): shear 0.99, translate 32 px of a 32 px image (here: the
# image side), rotate 135 degrees, enhance factors 1 ± 0.99, posterize 8..2
# bits, solarize threshold 1..0.
TA_BINS = 31
TA_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
          "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
          "autocontrast", "equalize")
_GEOMETRIC = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate"}
# PIL ImageFilter.SMOOTH, the kernel ImageEnhance.Sharpness blends against.
_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0


@dataclass(frozen=True)
class AugmentSpec:
    shift: float = 0.0      # pixels
    rotate: float = 0.0     # degrees
    scale: float = 0.0      # fraction
    flip: float = 0.0       # probability
    trivial: bool = False


def parse_augment(spec: str, side: int) -> AugmentSpec:
    """``"crop=3,flip"`` → ``AugmentSpec(shift=3, flip=0.5)``; every problem reported at once."""
    defaults = {"crop": max(1, round(side / 8)), "shift": max(1, round(side / 8)),
                "rotate": 10.0, "scale": 0.1, "flip": 0.5}
    values: dict[str, float] = {}
    trivial, problems = False, []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        name, _, raw = token.partition("=")
        name = name.strip().lower()
        if name == "trivial":
            if raw:
                problems.append("augment: 'trivial' takes no value (it is parameter-free)")
            trivial = True
            continue
        if name not in defaults:
            problems.append(f"augment: unknown operation {name!r} "
                            "(known: crop, shift, rotate, scale, flip, trivial)")
            continue
        try:
            value = float(raw) if raw else float(defaults[name])
        except ValueError:
            problems.append(f"augment: {name}={raw!r} is not a number")
            continue
        limits = {"flip": (0.0, 1.0), "scale": (0.0, 0.9), "rotate": (0.0, 180.0)}
        lo, hi = limits.get(name, (0.0, float(side)))
        if not lo <= value <= hi:
            problems.append(f"augment: {name}={value:g} is outside [{lo:g}, {hi:g}]")
            continue
        values["shift" if name == "crop" else name] = value
    if problems:
        raise ConfigError(problems, hint="e.g. --augment crop,rotate=10,flip or --augment trivial")
    return AugmentSpec(trivial=trivial, **values)


def _generator(seed: int, step: int) -> torch.Generator:
    # splitmix64 of (seed, step): nearby steps get unrelated streams.
    z = (seed * 0x9E3779B97F4A7C15 + step + 0x632BE59BD9B4E019) & (2 ** 64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2 ** 64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2 ** 64 - 1)
    return torch.Generator().manual_seed((z ^ (z >> 31)) & (2 ** 63 - 1))


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _warp(x: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` [n,C,H,W] with pixel-space maps ``input = a @ output + t``."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    # Pixel space to affine_grid's normalized [-1, 1] space (align_corners=False).
    theta[:, 0, 0] = a[:, 0, 0]
    theta[:, 0, 1] = a[:, 0, 1] * h / w
    theta[:, 1, 0] = a[:, 1, 0] * w / h
    theta[:, 1, 1] = a[:, 1, 1]
    theta[:, 0, 2] = t[:, 0] * 2.0 / w
    theta[:, 1, 2] = t[:, 1] * 2.0 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotation(deg: torch.Tensor) -> torch.Tensor:
    r = deg * math.pi / 180.0
    c, s = torch.cos(r), torch.sin(r)
    return torch.stack((torch.stack((c, -s), 1), torch.stack((s, c), 1)), 1)


def _geometric(x: torch.Tensor, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    a = torch.eye(2).repeat(n, 1, 1)
    if spec.rotate:
        a = _rotation(_uniform(gen, n, -spec.rotate, spec.rotate))
    if spec.scale:
        a = a / _uniform(gen, n, 1.0 - spec.scale, 1.0 + spec.scale)[:, None, None]
    if spec.flip:
        mirror = torch.where(torch.rand(n, generator=gen) < spec.flip, -1.0, 1.0)
        a[:, :, 0] = a[:, :, 0] * mirror[:, None]
    t = torch.zeros(n, 2)
    if spec.shift:
        k = int(spec.shift)
        t = torch.randint(-k, k + 1, (n, 2), generator=gen).float()
    return _warp(x, a, t)


def _blend(base: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: ``base + f·(x - base)`` per image, clipped to [0, 1]."""
    return (base + f[:, None, None, None] * (x - base)).clamp(0.0, 1.0)


def _gray(u: torch.Tensor) -> torch.Tensor:
    if u.shape[1] != 3:
        return u.mean(dim=1, keepdim=True)
    # ITU-R BT.601 luma weights, as PIL's convert("L").
    w = torch.tensor([0.299, 0.587, 0.114], dtype=u.dtype)[None, :, None, None]
    return (u * w).sum(dim=1, keepdim=True)


def _equalize(u: torch.Tensor) -> torch.Tensor:
    """Histogram equalization per image and channel on 256 levels."""
    n, c, h, w = u.shape
    q = (u * 255).round().long().clamp(0, 255).reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float32))
    cdf = hist.cumsum(1)
    first = torch.where(hist > 0, cdf, torch.full_like(cdf, float(h * w))).amin(1, keepdim=True)
    denom = (h * w - first).clamp_min(1.0)
    lut = ((cdf - first) / denom * 255).round().clamp(0, 255)
    flat = torch.where(h * w - first > 0, lut.gather(1, q), q.float())
    return (flat / 255.0).reshape(n, c, h, w)


def _photometric(name: str, u: torch.Tensor, level: torch.Tensor, sign: torch.Tensor
                 ) -> torch.Tensor:
    factor = 1.0 + 0.99 * level * sign
    if name == "brightness":
        return _blend(torch.zeros_like(u), u, factor)
    if name == "color":
        return _blend(_gray(u).expand_as(u), u, factor) if u.shape[1] == 3 else u
    if name == "contrast":
        return _blend(_gray(u).mean(dim=(1, 2, 3), keepdim=True).expand_as(u), u, factor)
    if name == "sharpness":
        c = u.shape[1]
        kernel = _SMOOTH.to(u.dtype).expand(c, 1, 3, 3)
        smooth = F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
        return _blend(smooth, u, factor)
    if name == "posterize":
        bits = (8 - (level * 6).round()).long()  # 8..2 bits
        drop = (2 ** (8 - bits)).to(u.dtype)[:, None, None, None]
        return torch.floor((u * 255).round() / drop) * drop / 255.0
    if name == "solarize":
        threshold = (1.0 - level)[:, None, None, None]
        return torch.where(u >= threshold, 1.0 - u, u)
    if name == "autocontrast":
        lo = u.amin(dim=(2, 3), keepdim=True)
        hi = u.amax(dim=(2, 3), keepdim=True)
        return torch.where(hi > lo, (u - lo) / (hi - lo).clamp_min(1e-12), u)
    if name == "equalize":
        return _equalize(u)
    return u


def _trivial(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    op = torch.randint(0, len(TA_OPS), (n,), generator=gen)
    level = torch.randint(0, TA_BINS, (n,), generator=gen).float() / (TA_BINS - 1)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    lo, hi = x.amin(), x.amax()
    span = (hi - lo).clamp_min(1e-12)
    u = (x - lo) / span
    out = u.clone()
    geo = torch.zeros(n, dtype=torch.bool)
    a, t = torch.eye(2).repeat(n, 1, 1), torch.zeros(n, 2)
    for k, name in enumerate(TA_OPS):
        m = op == k
        if not m.any() or name == "identity":
            continue
        if name in _GEOMETRIC:
            geo |= m
            mag = level[m] * sign[m]
            if name == "shear_x":
                a[m, 0, 1] = 0.99 * mag
            elif name == "shear_y":
                a[m, 1, 0] = 0.99 * mag
            elif name == "translate_x":
                t[m, 0] = mag * w
            elif name == "translate_y":
                t[m, 1] = mag * h
            else:
                a[m] = _rotation(135.0 * mag)
            continue
        idx = m.nonzero(as_tuple=True)[0]
        out[idx] = _photometric(name, u[idx], level[idx], sign[idx])
    if geo.any():
        idx = geo.nonzero(as_tuple=True)[0]
        out[idx] = _warp(u[idx], a[idx], t[idx])
    return out * span + lo


def build_augmentation(spec: str, input_shape: tuple, seed: int) -> Augmentation:
    """``fn(x, global_step)`` applying ``spec`` to batches of images shaped ``input_shape``.

    >>> aug = build_augmentation("crop=2,flip", (1, 8, 8), seed=0)
    >>> x = torch.rand(4, 1, 8, 8)
    >>> bool(torch.equal(aug(x, 7), aug(x, 7))), bool(torch.equal(aug(x, 7), aug(x, 8)))
    (True, False)
    """
    if len(input_shape) != 3:
        raise ConfigError([(f"augment: needs image data shaped [channels, height, width], got "
                            f"input shape {list(input_shape)}")],
                          hint="drop --augment for tables and text")
    c, h, w = input_shape
    parsed = parse_augment(spec, min(h, w))
    geometric = bool(parsed.shift or parsed.rotate or parsed.scale or parsed.flip)

    def augment(x: torch.Tensor, step: int) -> torch.Tensor:
        gen = _generator(seed, step)
        threads = torch.get_num_threads()
        # Batch-sized tensors are too small for intra-op threads: on this 2-core
        # machine one thread runs 'trivial' in 2.4 ms per 128x28x28 batch, two in
        # 103 ms (thread hand-offs dominate). Results do not depend on it.
        torch.set_num_threads(1)
        try:
            out = x.reshape(x.shape[0], c, h, w).float()
            if parsed.trivial:
                out = _trivial(out, gen)
            if geometric:
                out = _geometric(out, parsed, gen)
        finally:
            torch.set_num_threads(threads)
        return out.reshape(x.shape)

    return augment
