"""When to stop: epochs, wall-time and dollar budgets, and metric targets.

Pure functions over numbers; the engine passes in the clock readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoestring.errors import ShoestringError

# Metrics where larger is better; every other metric (losses, errors) is
# better when smaller.
HIGHER_IS_BETTER = ("accuracy", "f1", "auc", "r2")


@dataclass(frozen=True)
class Target:
    """Stop once ``metric`` reaches ``value`` on the held-out split."""

    metric: str
    value: float

    @property
    def higher_is_better(self) -> bool:
        return any(self.metric.endswith(s) for s in HIGHER_IS_BETTER)

    def reached(self, metrics: dict[str, float]) -> bool:
        if self.metric not in metrics:
            return False
        got = metrics[self.metric]
        return got >= self.value if self.higher_is_better else got <= self.value


def parse_target(text: str) -> Target:
    """``"val_accuracy=0.87"`` → ``Target("val_accuracy", 0.87)``."""
    metric, sep, value = text.partition("=")
    metric = metric.strip()
    if not sep or not metric:
        raise ShoestringError(f"target {text!r} is not METRIC=VALUE",
                              hint="write e.g. --target val_accuracy=0.87")
    try:
        number = float(value)
    except ValueError:
        raise ShoestringError(f"target value {value!r} in {text!r} is not a number",
                              hint="write e.g. --target val_accuracy=0.87") from None
    if not metric.startswith(("test_", "val_")):
        raise ShoestringError(f"target metric {metric!r} is not a held-out metric",
                              hint="use val_accuracy, val_loss or val_mse (checked on the "
                              "validation split)")
    return Target(metric, number)


def on_validation(target: Target) -> Target:
    """The target as checked during training: on the validation split.

    Stopping when a *test* metric crosses a value would select the model on the
    test split, which then no longer estimates unseen data; ``test_X`` targets
    are therefore checked as ``val_X`` and the test split is scored once, at the end.
    """
    if target.metric.startswith("test_"):
        return Target("val_" + target.metric[len("test_"):], target.value)
    return target


def cost_usd(seconds: float, price_per_hour: float) -> float:
    """Dollars spent running ``seconds`` on a machine billed ``price_per_hour``."""
    return seconds / 3600.0 * price_per_hour


@dataclass(frozen=True)
class Budget:
    """Wall-time and dollar limits; ``None`` means unlimited."""

    max_time: float | None = None
    max_cost: float | None = None
    price_per_hour: float = 0.0

    def exhausted(self, elapsed: float) -> str | None:
        """The reason to stop at ``elapsed`` seconds, or ``None`` to go on."""
        if self.max_time is not None and elapsed >= self.max_time:
            return f"time budget of {self.max_time:g} s reached"
        if self.max_cost is not None and self.price_per_hour > 0 and \
                cost_usd(elapsed, self.price_per_hour) >= self.max_cost:
            return f"cost budget of ${self.max_cost:g} reached"
        return None
