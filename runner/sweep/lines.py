"""How a trial's point is printed on the terminal: numbers that a search drew (a learning rate of 15 digits) to 4
significant digits; the exact values stay in the run's params and tags."""

from __future__ import annotations

import math

from runner.sweep.space import Variant


def shown(variant: Variant) -> str:
    """`optimizer.learning_rate=0.000316227766017 training.batch_size=32` -> `... =0.0003162 ...=32`."""
    return " ".join(_short(text) for text in variant.overrides)


def _short(override: str) -> str:
    key, _, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    brief = format(number, ".4g")
    # A value 4 digits say exactly (0.01, 32, 1.0e-4) is shown as written; only longer ones are shortened.
    return override if not math.isfinite(number) or float(brief) == number else f"{key}={brief}"
