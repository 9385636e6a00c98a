"""The learning-rate range test's arithmetic (plain Python): the geometric ramp, the smoothed loss, the divergence
rule, the suggested rate, and the `--set` that gives it back to the experiment."""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.errors import XrunError

SMOOTHING = 0.98    # fastai's: the loss is averaged over about the last 50 steps
STOP_FACTOR = 4.0   # diverged: the smoothed loss is over 4x the best so far (fastai's rule)
HEAD, TAIL = 10, 5  # the suggestion skips the first 1/HEAD of the steps (noise) and the last TAIL (divergence)


@dataclass(frozen=True)
class Trace:
    """What the ramp saw: each step's rate, its loss (that batch's, before the step) and the smoothed loss."""

    rates: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    diverged: bool  # stopped early: the smoothed loss exceeded STOP_FACTOR x its best (or was not finite)

    @property
    def steps(self) -> int:
        return len(self.losses)


def rates(lowest: float, highest: float, steps: int) -> list[float]:
    """`steps` rates from `lowest` to `highest`, each the one before times the same factor."""
    ratio = highest / lowest
    return [lowest * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(previous_average: float, loss: float, step: int, beta: float = SMOOTHING) -> tuple[float, float]:
    """The running average after `loss` (step counts from 0) and its bias-corrected value, as Adam corrects its
    moments: early steps are not pulled towards the average's starting zero."""
    average = beta * previous_average + (1 - beta) * loss
    return average, average / (1 - beta ** (step + 1))


def has_diverged(smoothed: float, best: float, factor: float = STOP_FACTOR) -> bool:
    return not math.isfinite(smoothed) or smoothed > factor * best


def valley(rates: list[float] | tuple, losses: list[float] | tuple) -> int:
    """fastai's `valley`: the index of the rate 1/2 of the way (in steps) along the longest decreasing run of the
    loss, a rate that still lowers the loss well below the one where it turns up again."""
    n = len(losses)
    run = [1] * n  # the longest decreasing subsequence ending at each step
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end, start = i, i - run[i]
    third = (end - start) / 3  # fastai counts the run from the step before it (-1 for a run from the first)
    return max(0, start + int(third) + int(third / 2))


def suggestion(trace: Trace) -> tuple[float, float]:
    """(the valley's rate, the rate at the smoothed loss's minimum / 10), both over the steps that count: without
    the first tenth and the last few (fastai's window)."""
    first, last = trace.steps // HEAD, trace.steps - TAIL
    if last - first < 3:
        raise XrunError(f"the loss diverged after {trace.steps} steps, too soon to suggest a rate",
                        hint="start the ramp lower (--min) or give it more steps (--steps)")
    window_rates, window_losses = trace.rates[first:last], trace.smoothed[first:last]
    at_valley = window_rates[valley(window_rates, window_losses)]
    lowest = min(range(len(window_losses)), key=window_losses.__getitem__)
    return at_valley, window_rates[lowest] / 10


# Where a schedule's peak rate is, by its type (PiecewiseConstantDecay has none: it is replaced by a constant).
_PEAK_RATE = {"ExponentialDecay": "initial_learning_rate", "CosineDecay": "initial_learning_rate"}


def override(schedule_type: str | None, schedule_arguments: dict, rate: float) -> str:
    """The --set that puts `rate` in the experiment: the constant rate, or a schedule's peak (a warm-up's target)."""
    key = _PEAK_RATE.get(schedule_type or "")
    if key and "warmup_target" in schedule_arguments:
        key = "warmup_target"
    path = f"optimizer.learning_rate.{key}" if key else "optimizer.learning_rate"
    return f"{path}={rate:.3g}"
