from decimal import Decimal

import pytest

from shoestring.errors import ConfigError
from shoestring.serve.plans import Plan, load_plans


def test_default_plans_ship_free_pro_enterprise():
    plans = load_plans()
    assert set(plans) == {"free", "pro", "enterprise"}
    assert plans["free"].price_per_1000_units_usd == 0
    assert plans["enterprise"].monthly_quota_units is None  # unlimited
    assert all(p.allows("any-model") for p in plans.values())


def test_a_user_file_replaces_the_defaults(tmp_path):
    f = tmp_path / "plans.toml"
    f.write_text('[startup]\nrequests_per_second = 5\nburst = 5\nmonthly_quota_units = 10\n'
                 'price_per_1000_units_usd = 1.25\nmodels = ["digits"]\n')
    plans = load_plans(f)
    assert list(plans) == ["startup"]
    p = plans["startup"]
    assert p.allows("digits") and not p.allows("other")
    assert p.cost_nano_usd(1) == 1_250_000  # $1.25 / 1000 = $0.00125


def test_every_problem_of_a_plans_file_is_reported_at_once(tmp_path):
    f = tmp_path / "plans.toml"
    f.write_text('[a]\nrequests_per_second = -1\nburst = 0\nprice_per_1000_units_usd = 1\n'
                 '[b]\nrequests_per_second = 1\nburst = 1\nprice_per_1000_units_usd = 1\n'
                 'typo_field = 3\n')
    with pytest.raises(ConfigError) as err:
        load_plans(f)
    text = str(err.value)
    assert "[a] requests_per_second" in text and "[a] burst" in text
    assert "[b] typo_field" in text


def test_missing_and_broken_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read plans file"):
        load_plans(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_plans(bad)


def test_costs_are_exact_integers():
    p = Plan("p", 1.0, 1, None, Decimal("0.1"))
    # 0.1 is not exact in binary floating point; in nano-dollars it is.
    assert sum(p.cost_nano_usd(1) for _ in range(1000)) == p.cost_nano_usd(1000) == 100_000_000
