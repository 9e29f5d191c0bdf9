"""The hardware catalog: validated TOML, user files, peak FLOP/s lookups, stale prices."""

from __future__ import annotations

from datetime import date

import pytest

from shoestring.errors import ConfigError, ShoestringError
from shoestring.plan.catalog import default_catalog, load_catalog, peak_flops

REQUIRED = ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "l4", "t4", "a10g", "rtx-3090",
            "rtx-4090", "cpu-local")


def test_shipped_catalog_has_the_required_devices_with_dated_prices():
    cat = default_catalog()
    names = {d.name for d in cat.device}
    assert set(REQUIRED) <= names
    assert any(d.kind == "cpu" for d in cat.device)
    for name in REQUIRED:
        prices = cat.prices_for(name)
        assert prices, name
        assert all(p.source and p.date for p in prices)
    assert any(p.spot is not None for p in cat.price)


def test_peaks_are_dense_tensor_core_rates_not_fp32():
    h100 = default_catalog().get("h100-sxm")
    assert h100.peak("bf16") == 989.4e12          # dense, half the sparse 1979
    assert h100.peak("fp32") == 67e12
    assert default_catalog().get("a100-80gb").peak("bf16") == 312e12


def test_peak_flops_by_driver_name_and_fallbacks():
    assert peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert peak_flops("Tesla T4", "bf16") == 65e12       # no bf16: its fp16 rate
    assert peak_flops("cpu", "fp32") == 174e9
    assert peak_flops("cpu", "bf16") == 47e9
    assert peak_flops("l4", "tf32") == 30.3e12            # no tf32 listed: fp32
    with pytest.raises(ShoestringError, match="unknown device"):
        peak_flops("Voodoo 2", "bf16")
    with pytest.raises(ShoestringError, match="unknown dtype"):
        peak_flops("h100-sxm", "int4")


USER = """
[[device]]
name = "my-gpu"
label = "Lab GPU"
kind = "gpu"
memory_gib = 48
bandwidth_gbs = 900
peak_tflops = { fp32 = 40.0, bf16 = 200.0 }
efficiency = 0.4
source = "datasheet"

[[price]]
device = "my-gpu"
cloud = "lab"
instance = "box"
gpus = 1
on_demand = 0.5
date = 2026-01-01
source = "our invoice"
"""


def test_user_catalog_adds_devices_and_prices(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(USER)
    cat = load_catalog([f])
    assert cat.get("my-gpu").peak("bf16") == 200e12
    assert [p.cloud for p in cat.prices_for("my-gpu")] == ["lab"]
    assert cat.get("h100-sxm")  # the shipped rows stay


def test_user_device_replaces_a_shipped_one(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(USER.replace('name = "my-gpu"', 'name = "l4"').replace(
        'device = "my-gpu"', 'device = "l4"'))
    assert load_catalog([f]).get("l4").memory_gib == 48


def test_every_catalog_problem_is_reported_at_once(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(USER.replace("memory_gib = 48", "memory_gib = -1")
                 .replace("on_demand = 0.5", "on_demand = -2")
                 .replace("efficiency = 0.4", "efficiency = 4"))
    with pytest.raises(ConfigError) as info:
        load_catalog([f])
    text = str(info.value)
    assert "memory_gib" in text and "on_demand" in text and "efficiency" in text
    assert "3 problems" in text


def test_catalog_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read catalog file"):
        load_catalog([tmp_path / "missing.toml"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[[device]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_catalog([bad])
    orphan = tmp_path / "orphan.toml"
    orphan.write_text('[[price]]\ndevice = "nope"\ncloud = "x"\ninstance = "y"\ngpus = 1\n'
                      'on_demand = 1.0\ndate = 2026-01-01\nsource = "s"\n')
    with pytest.raises(ConfigError, match="unknown devices: nope"):
        load_catalog([orphan])


def test_stale_prices_are_found_and_local_rows_never_are():
    cat = default_catalog()
    assert cat.stale_prices(date(2025, 1, 20)) == []
    later = cat.stale_prices(date(2025, 6, 1))
    assert later and all(p.cloud != "local" for p in later)
    assert all((date(2025, 6, 1) - p.date).days > 90 for p in later)
