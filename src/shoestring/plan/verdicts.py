"""Plain answers to "does it fit on one card?", one line per card class.

"Can I LoRA llama-3-8b on one 24 GB GPU?" deserves "fits on one 24 GB card:
yes" (or "no: needs 27.4 GiB"), not a ranking that happens to start with two
GPUs. Catalog GPUs are grouped by the memory printed on the box (a T4's 15 GiB
usable is a 16 GB card, an H100's 79.6 GiB an 80 GB one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoestring.plan.catalog import Device
from shoestring.plan.memory import GIB
from shoestring.plan.search import Fit

# Memory sizes GPUs are sold with, in GB as printed on the box.
CARD_SIZES_GB = (8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 141, 180, 192)


def card_class_gb(device: Device) -> int:
    """The nominal size of ``device``: the smallest sold size holding its usable memory.

    >>> from shoestring.plan.catalog import default_catalog
    >>> [card_class_gb(default_catalog().get(n)) for n in ("t4", "l4", "h100-sxm")]
    [16, 24, 80]
    """
    return next((s for s in CARD_SIZES_GB if device.memory_gib <= s), round(device.memory_gib))


@dataclass(frozen=True)
class CardVerdict:
    """Whether the asked-for job fits on one card of a class, and how (or how much it needs)."""

    class_gb: int
    fits: bool
    devices: tuple[str, ...]          # devices of the class where it fits
    best_device: str
    fit: Fit                          # the best single-device fit (or the closest miss)
    needs_bytes: int                  # per-device peak of the best fit, or the smallest miss

    def line(self) -> str:
        f = self.fit
        if self.fits:
            s = f.setup
            how = f"{s.finetune} " if s.finetune != "full" else ""
            how += f"micro-batch {s.micro_batch}" if s.mode == "train" else f"batch {s.micro_batch}"
            if s.checkpointing != "none":
                how += ", activation checkpointing"
            return (f"fits on one {self.class_gb} GB card: yes ({', '.join(self.devices)}; "
                    f"{how}; {self.needs_bytes / GIB:.1f} GiB)")
        miss = f"needs {self.needs_bytes / GIB:.1f} GiB" if self.needs_bytes else "does not fit"
        extra = ""
        if f.hint:
            extra = f"; {f.hint}"
        elif f.fits and f.substituted and f.setup is not None:
            extra = f"; {f.setup.finetune} would fit on {self.best_device}"
        return f"fits on one {self.class_gb} GB card: no ({miss}{extra})"

    def to_dict(self) -> dict[str, Any]:
        return {"class_gb": self.class_gb, "fits": self.fits, "devices": list(self.devices),
                "best_device": self.best_device, "needs_bytes": self.needs_bytes,
                "line": self.line()}


def _need(fit: Fit) -> int:
    if fit.fits and not fit.substituted and fit.memory is not None:
        return fit.memory.total
    if fit.asked_needs_bytes:
        return fit.asked_needs_bytes
    return fit.memory.total if fit.memory is not None else 0


def single_device_verdicts(single: dict[str, tuple[Device, Fit]]) -> list[CardVerdict]:
    """One verdict per card class, smallest class first, from each GPU's one-device fit."""
    by_class: dict[int, list[tuple[Device, Fit]]] = {}
    for device, fit in single.values():
        if device.kind == "gpu":
            by_class.setdefault(card_class_gb(device), []).append((device, fit))
    out = []
    for gb in sorted(by_class):
        rows = by_class[gb]
        good = [(d, f) for d, f in rows if f.fits and not f.substituted]
        if good:
            d, f = min(good, key=lambda r: r[1].hours)
            out.append(CardVerdict(gb, True, tuple(sorted(x.name for x, _ in good)), d.name, f,
                                   _need(f)))
            continue
        d, f = min(rows, key=lambda r: (not r[1].fits, _need(r[1]) or float("inf")))
        out.append(CardVerdict(gb, False, (), d.name, f, _need(f)))
    return out
