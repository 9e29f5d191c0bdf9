"""check_fits from a notebook (docs/plan.md): training loads the data, the planner judges."""

from __future__ import annotations

import pytest

from shoestring.errors import ShoestringError
from shoestring.plan import check_fits as plan_check_fits
from shoestring.train.config import resolve_config
from shoestring.train.preflight import check_fits


def test_check_fits_loads_the_data_to_learn_the_shape(tmp_path):
    cfg = resolve_config({"data": {"source": "digits"}})
    assert check_fits(cfg, device="cpu", available_bytes=2 ** 34, workspace=tmp_path).fits
    tight = check_fits(cfg, device="cpu", available_bytes=1000, workspace=tmp_path)
    assert not tight.fits and tight.suggestion


def test_the_planner_alone_asks_for_the_architecture():
    with pytest.raises(ShoestringError, match="architecture") as err:
        plan_check_fits(resolve_config({"data": {"source": "digits"}}))
    assert "shoestring.train.preflight.check_fits" in err.value.hint
