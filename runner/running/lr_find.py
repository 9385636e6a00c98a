"""`xrun lr-find`: the learning-rate range test on a fresh model of an experiment, recorded as an MLflow run."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import keras
from matplotlib.figure import Figure

from runner.language.config import Config, resolve
from runner.language.sections import Optimizer, plain
from runner.language.spec import Spec
from runner.model.compiler import build_model
from runner.records import names, store
from runner.running import inputs, lr_ramp
from runner.running.run import _static_tags
from runner.training import build, pipeline
from runner.training.settings import applied, settings_for


@dataclass(frozen=True)
class Found:
    """A finished range test: the trace, the two suggested rates and the `--set` that uses the first."""

    trace: lr_ramp.Trace
    suggested: float        # fastai's valley of the smoothed loss
    minimum_tenth: float    # the rate at the smoothed loss's minimum, divided by 10
    set_override: str       # e.g. optimizer.learning_rate=0.0012
    run_id: str
    seconds: float


def range_test(model: keras.Model, batches: Iterable, rates: list[float], class_weight: dict | None = None,
               stop_factor: float = lr_ramp.STOP_FACTOR) -> lr_ramp.Trace:
    """One optimizer step per rate on a compiled model, each batch's loss taken before its step; stops at the step
    where the smoothed loss diverges (that step is kept)."""
    losses, smoothed, average, best = [], [], 0.0, math.inf
    for step, (rate, (x, y)) in enumerate(zip(rates, batches)):
        model.optimizer.learning_rate = rate
        loss = float(model.train_on_batch(x, y, class_weight=class_weight, return_dict=True)["loss"])
        average, value = lr_ramp.smooth(average, loss, step)
        losses.append(loss)
        smoothed.append(value)
        if step and lr_ramp.has_diverged(value, best, stop_factor):
            return lr_ramp.Trace(tuple(rates[:step + 1]), tuple(losses), tuple(smoothed), True)
        best = min(best, value)
    return lr_ramp.Trace(tuple(rates[:len(losses)]), tuple(losses), tuple(smoothed), False)


def find(spec: Spec, *, steps: int = 200, lowest: float = 1e-7, highest: float = 10.0, tracking_uri: str | None = None,
         data_dir: str | None = None) -> Found:
    """The range test on a fresh model of `spec` over its training split, recorded in the experiment's MLflow
    experiment; the model is not kept."""
    started = time.perf_counter()
    config = resolve(spec, settings_for(spec.training))
    rates = lr_ramp.rates(lowest, highest, steps)
    with applied(config.settings):
        model = build_model(spec)
        data = inputs.load(config, data_dir, model)
        run = store.Run(store.tracking_uri(tracking_uri), config.tracking.experiment,
                        names.LR_FIND_RUN_NAME.format(name=config.name), config.description,
                        tags={**_static_tags(config), names.LR_FIND: "true"})
        try:
            found = _record(run, config, _test(model, config, data, rates), rates, started)
        except BaseException as exc:
            run.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", f"{type(exc).__name__}: {exc}")
            raise
    run.end("FINISHED")
    return found


def _test(model: keras.Model, config: Config, data: inputs.Inputs, rates: list[float]) -> lr_ramp.Trace:
    training, splits = config.training, data.splits
    section = config.optimizer  # the YAML's optimizer, its rate (or schedule) replaced by the ramp's
    ramped = Optimizer(section.type, {**plain(section.arguments), "learning_rate": rates[0]}, None)
    model.compile(optimizer=build.optimizer(ramped, 1, 1), loss=build.loss(config.loss),
                  jit_compile=config.settings.jit_compile)
    one_hot = len(splits.class_names) if build.wants_one_hot(config.loss) else None
    batches = pipeline.train_dataset(splits.x_train, splits.y_train, batch_size=training.batch_size,
                                     shuffle=training.shuffle, seed=training.seed, augmentation=config.augmentation,
                                     one_hot_classes=one_hot, balanced=training.sampling == "balanced")
    return range_test(model, batches.as_numpy_iterator(), rates, data.class_weight)


def _record(run: store.Run, config: Config, trace: lr_ramp.Trace, rates: list[float], started: float) -> Found:
    suggested, tenth = lr_ramp.suggestion(trace)
    schedule = config.optimizer.schedule
    set_override = lr_ramp.override(schedule and schedule.type, plain(schedule.arguments) if schedule else {},
                                    suggested)
    run.log_params({"lr_find.steps": len(rates), "lr_find.min": rates[0], "lr_find.max": rates[-1],
                    "lr_find.stop_factor": lr_ramp.STOP_FACTOR,
                    "lr_find.smoothing": lr_ramp.SMOOTHING, "lr_find.rule": "valley",
                    **store.flatten(config.resolved())})
    run.log_steps({step: {"lr_find_loss": loss, "lr_find_smoothed_loss": value, "lr_find_rate": rate}
                   for step, (rate, loss, value) in enumerate(zip(trace.rates, trace.losses, trace.smoothed), 1)})
    run.log_metrics({"lr_find_suggestion": suggested, "lr_find_minimum_tenth": tenth})
    run.set_tags({names.LR_FIND_SUGGESTION: f"{suggested:.3g}", names.LR_FIND_SET: set_override,
                  names.LR_FIND_DIVERGED: str(trace.diverged).lower()})
    run.log_text(_csv(trace), names.LR_FIND_CSV)
    run.log_figure(plot(trace, suggested, tenth, config.name), names.LR_FIND_PLOT)
    return Found(trace, suggested, tenth, set_override, run.run_id, time.perf_counter() - started)


def _csv(trace: lr_ramp.Trace) -> str:
    rows = ["step,learning_rate,loss,smoothed_loss"]
    rows += [f"{i},{r!r},{loss!r},{s!r}" for i, (r, loss, s) in
             enumerate(zip(trace.rates, trace.losses, trace.smoothed), 1)]
    return "\n".join(rows) + "\n"


def plot(trace: lr_ramp.Trace, suggested: float, tenth: float, title: str) -> Figure:
    """The loss (raw, faint; smoothed) against the rate on a log axis, with the two suggestions marked."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.subplots()
    ax.plot(trace.rates, trace.losses, color="0.75", linewidth=0.8, label="loss (batch)")
    ax.plot(trace.rates, trace.smoothed, color="C0", linewidth=1.8, label="loss (smoothed)")
    ax.axvline(suggested, color="C3", linestyle="--", label=f"suggested (valley) {suggested:.3g}")
    ax.axvline(tenth, color="C2", linestyle=":", label=f"minimum / 10: {tenth:.3g}")
    finite = [s for s in trace.smoothed if math.isfinite(s)]
    if finite:  # the divergence's last steps would squash the curve that matters
        ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), max(trace.smoothed[0], min(finite)) * 1.5 + 1e-12)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"{title}: learning-rate range test ({trace.steps} steps"
                 f"{', stopped at divergence' if trace.diverged else ''})")
    ax.legend()
    return figure
