"""Planning: memory, compute, time and dollars of a job before a cent is spent.

>>> from shoestring.plan import plan, resolve_plan_config
>>> result = plan(resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9}))
>>> result.params
124439808

See docs/plan.md. ``peak_flops(device, dtype)`` gives a device's peak FLOP/s
for MFU meters; ``check_fits(train_config)`` backs ``shoestring train --plan-first``.
"""

from shoestring.plan.api import PlanResult, plan, plan_with_ledger
from shoestring.plan.catalog import load_catalog, peak_flops
from shoestring.plan.config import PlanConfig, resolve_plan_config
from shoestring.plan.preflight import PlanVerdict, check_fits

__all__ = ["PlanConfig", "PlanResult", "PlanVerdict", "check_fits", "load_catalog",
           "peak_flops", "plan", "plan_with_ledger", "resolve_plan_config"]
