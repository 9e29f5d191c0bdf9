"""The hardware catalog: devices, their peaks, and dated prices (TOML, validated on load).

The shipped ``hardware.toml`` is read first; files passed by the user add
price rows and add or replace devices by name. Every problem in every file is
reported at once.

Other capabilities ask for a device's peak FLOP/s with :func:`peak_flops`,
e.g. the training throughput meter computing MFU:

>>> peak_flops("NVIDIA H100 80GB HBM3", "bf16")
989400000000000.0
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shoestring.config import problems_of
from shoestring.errors import ConfigError, ShoestringError

CATALOG_FILE = "hardware.toml"
# Prices older than this get a warning: cloud list prices move every few months.
STALE_AFTER_DAYS = 90
DTYPES = ("fp32", "tf32", "bf16", "fp16")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Peaks(_Row):
    """Dense peak TFLOP/s by dtype (tensor cores for tf32/bf16/fp16)."""

    fp32: float = Field(gt=0)
    tf32: float | None = Field(None, gt=0)
    bf16: float | None = Field(None, gt=0)
    fp16: float | None = Field(None, gt=0)


class Device(_Row):
    """One accelerator (or CPU) model."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="catalog key")
    label: str = Field(description="what people call it")
    kind: Literal["gpu", "cpu"]
    aliases: tuple[str, ...] = Field((), description="substrings of driver-reported names")
    memory_gib: float = Field(gt=0, description="usable device memory")
    bandwidth_gbs: float = Field(gt=0, description="memory bandwidth, GB/s")
    interconnect: str = Field("none", description="nvlink3, nvlink4, pcie4, ...")
    interconnect_gbs: float = Field(0.0, ge=0, description="per device, per direction, GB/s")
    max_per_node: int = Field(1, ge=1, description="devices one machine can hold")
    peak_tflops: Peaks
    efficiency: float = Field(gt=0, le=1, description="default achieved fraction of peak")
    context_gib: float = Field(0.5, ge=0, description="runtime memory outside tensors")
    source: str = Field(min_length=1)

    def peak(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``; bf16 falls back to fp16 (T4) and to fp32."""
        if dtype not in DTYPES:
            raise ShoestringError(f"unknown dtype {dtype!r}", hint=f"use one of {DTYPES}")
        tflops = getattr(self.peak_tflops, dtype)
        if tflops is None and dtype == "bf16":
            tflops = self.peak_tflops.fp16
        if tflops is None:
            tflops = self.peak_tflops.fp32
        return tflops * 1e12

    @property
    def supports_bf16(self) -> bool:
        return self.peak_tflops.bf16 is not None


class Price(_Row):
    """What one instance of ``gpus`` devices costs per hour on one cloud, on one date."""

    device: str
    cloud: str
    instance: str
    gpus: int = Field(ge=1)
    on_demand: float = Field(ge=0, description="USD per instance-hour")
    spot: float | None = Field(None, ge=0, description="USD per instance-hour, interruptible")
    date: date
    source: str = Field(min_length=1)


class Catalog(_Row):
    device: tuple[Device, ...] = ()
    price: tuple[Price, ...] = ()

    @model_validator(mode="after")
    def _prices_name_devices(self) -> Catalog:
        names = {d.name for d in self.device}
        unknown = sorted({p.device for p in self.price} - names)
        if unknown:
            raise ValueError(f"price rows name unknown devices: {', '.join(unknown)}")
        return self

    def get(self, name: str) -> Device:
        """The device called ``name`` (catalog key, label or an alias, any case)."""
        wanted = name.strip().lower()
        for d in self.device:
            if wanted in (d.name, d.label.lower()):
                return d
        for d in self.device:
            if any(a.lower() in wanted for a in d.aliases):
                return d
        raise ShoestringError(f"unknown device {name!r}",
                              hint="known: " + ", ".join(d.name for d in self.device)
                              + " (add yours with --catalog FILE)")

    def prices_for(self, device: str) -> list[Price]:
        return [p for p in self.price if p.device == device]

    def stale_prices(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[Price]:
        return [p for p in self.price
                if p.cloud != "local" and (today - p.date).days > max_age_days]


def _problems(exc: ValidationError, where: str) -> list[str]:
    return problems_of(exc, where=where)


def _read(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where} is not valid TOML: {exc}"],
                          hint="fix the syntax at the position shown") from None


def merge_catalogs(base: dict, extra: dict) -> dict:
    """Devices in ``extra`` replace same-named ones in ``base``; price rows add up."""
    names = {d.get("name") for d in extra.get("device", [])}
    devices = [d for d in base.get("device", []) if d.get("name") not in names]
    return {"device": devices + list(extra.get("device", [])),
            "price": list(base.get("price", [])) + list(extra.get("price", []))}


@lru_cache(maxsize=1)
def _shipped_text() -> str:
    return resources.files("shoestring.plan").joinpath(CATALOG_FILE).read_text()


def load_catalog(extra_files: Iterable[Path] = ()) -> Catalog:
    """The shipped catalog plus the user's files, validated together."""
    raw = _read(_shipped_text(), CATALOG_FILE)
    problems: list[str] = []
    for path in extra_files:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            problems.append(f"cannot read catalog file '{path}': {exc.strerror}")
            continue
        extra = _read(text, str(path))
        unknown = sorted(set(extra) - {"device", "price"})
        if unknown:
            problems.append(f"{path}: unknown tables {unknown} (use [[device]] and [[price]])")
        for i, d in enumerate(extra.get("device", [])):
            try:
                Device.model_validate(d)
            except ValidationError as exc:
                problems += _problems(exc, f"{path} device #{i + 1}")
        for i, p in enumerate(extra.get("price", [])):
            try:
                Price.model_validate(p)
            except ValidationError as exc:
                problems += _problems(exc, f"{path} price #{i + 1}")
        raw = merge_catalogs(raw, extra)
    if problems:
        raise ConfigError(problems, hint="fix the catalog rows above (see docs/plan.md)")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, "catalog"),
                          hint="fix the catalog rows above (see docs/plan.md)") from None


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    return load_catalog()


def peak_flops(device_name: str, dtype: str = "bf16") -> float:
    """Peak FLOP/s of ``device_name`` (a catalog name, a label or a driver-reported name).

    ``dtype``: ``fp32``, ``tf32``, ``bf16`` or ``fp16``. Dense tensor-core rates;
    a device without bf16 answers with its fp16 rate, one without either with
    its fp32 rate. ``"cpu"`` is this machine's CPU.

    >>> peak_flops("cpu", "fp32")
    174000000000.0
    """
    return default_catalog().get(device_name).peak(dtype)
