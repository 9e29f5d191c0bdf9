"""Plans are data: name, rate, monthly quota, price, allowed models.

The defaults ship as ``plans.toml`` next to this module; a user's file given
with ``--plans`` replaces them all (no merging, so what is sold is exactly what
the file says). Every problem in a file is reported at once.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from shoestring.config import StrictConfig, problems_of
from shoestring.errors import ConfigError

# Money is kept in integer nano-dollars so sums are exact; a price with up to
# six decimals per 1,000 units is a whole number of nano-dollars per unit.
from shoestring.ledger.money import NANO_PER_USD

DEFAULT_PLANS = "plans.toml"


class _PlanFields(StrictConfig):
    description: str = Field("", description="shown in listings")
    requests_per_second: float = Field(..., gt=0, description="token-bucket refill rate per key")
    burst: int = Field(..., ge=1, description="token-bucket capacity")
    monthly_quota_units: int | None = Field(None, ge=0, description="units a key may use a month")
    price_per_1000_units_usd: Decimal = Field(..., ge=0, description="price of 1,000 units")
    models: list[str] = Field(["*"], min_length=1, description="allowed model names; '*' = all")


@dataclass(frozen=True)
class Plan:
    """One plan, validated. ``monthly_quota_units`` None means unlimited."""

    name: str
    requests_per_second: float
    burst: int
    monthly_quota_units: int | None
    price_per_1000_units_usd: Decimal
    models: tuple[str, ...] = ("*",)
    description: str = ""

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def cost_nano_usd(self, units: int) -> int:
        """Exact cost of ``units`` in nano-dollars (rounded half-even below a nano-dollar).

        >>> Plan("p", 1, 1, None, Decimal("0.50")).cost_nano_usd(3)  # $0.0015
        1500000
        """
        return int((self.price_per_1000_units_usd * units * NANO_PER_USD / 1000)
                   .to_integral_value())


def parse_plans(raw: dict[str, Any], source: str) -> dict[str, Plan]:
    """Validate a TOML mapping ``{plan name: fields}``; report every problem at once."""
    problems: list[str] = []
    plans: dict[str, Plan] = {}
    if not raw:
        problems.append(f"{source}: no plans defined")
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            problems.append(f"{source}: [{name}] must be a table of fields")
            continue
        try:
            f = _PlanFields.model_validate(fields)
        except ValidationError as exc:
            problems += problems_of(exc, _PlanFields, where=f"{source}: [{name}]")
            continue
        plans[name] = Plan(name=name, requests_per_second=f.requests_per_second, burst=f.burst,
                           monthly_quota_units=f.monthly_quota_units,
                           price_per_1000_units_usd=f.price_per_1000_units_usd,
                           models=tuple(f.models), description=f.description)
    if problems:
        raise ConfigError(problems, hint="see the layout of the default plans in "
                          "shoestring/serve/plans.toml (docs/serve.md)")
    return plans


def load_plans(path: Path | None = None) -> dict[str, Plan]:
    """The plans in ``path``, or the shipped defaults when ``path`` is None."""
    if path is None:
        text = resources.files("shoestring.serve").joinpath(DEFAULT_PLANS).read_text()
        source = "default plans"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError([f"cannot read plans file '{path}': {exc.strerror}"],
                              hint="check the --plans path") from None
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source} is not valid TOML: {exc}"],
                          hint="fix the syntax at the position shown") from None
    return parse_plans(raw, source)
