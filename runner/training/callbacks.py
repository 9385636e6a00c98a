"""The table of callbacks a YAML may name, and xrun's own: epoch timing, per-epoch tracking, NaN detection and
the terminal display."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from runner.model import registry


@dataclass(frozen=True)
class YamlCallback:
    """One callback a YAML may name: its Keras class and how xrun places the files it writes in the run's folder."""

    name: str
    cls: type
    files: Callable[[dict, Path], dict]  # (arguments, run folder) -> the arguments with xrun's file paths


def _no_files(args: dict, run_dir: Path) -> dict:
    return args


def _checkpoint_file(args: dict, run_dir: Path) -> dict:
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    name = "best.weights.h5" if args["save_weights_only"] else "best.keras"
    return {**args, "filepath": str(run_dir / "checkpoints" / name)}


def _log_file(args: dict, run_dir: Path) -> dict:
    return {**args, "filename": str(run_dir / "history.csv")}


# A Keras callback is a schema entry only (registry.CALLBACKS reads the schema); one that writes a file gets the
# function that places it here (tests/training/test_callbacks.py checks both against the schema).
_FILES = {"ModelCheckpoint": _checkpoint_file, "CSVLogger": _log_file}
CALLBACKS = {name: YamlCallback(name, cls, _FILES.get(name, _no_files)) for name, cls in registry.CALLBACKS.items()}


class EpochMetrics(keras.callbacks.Callback):
    """Adds learning_rate, epoch_seconds and images_per_second to each epoch's logs (so History keeps them).

    learning_rate is the rate the epoch trained with: the optimizer's value at the epoch's first step. With a
    per-epoch schedule that is the epoch's one rate (epoch 1 logs the initial rate); a change made at an epoch's
    end (ReduceLROnPlateau, a staircase step) shows from the next epoch on.
    """

    def __init__(self, train_examples: int):
        super().__init__()
        self.train_examples = train_examples
        self.started = 0.0
        self.learning_rate = float("nan")

    def on_epoch_begin(self, epoch, logs=None):
        self.learning_rate = current_learning_rate(self.model.optimizer)
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        logs["learning_rate"] = self.learning_rate
        logs["epoch_seconds"] = seconds
        logs["images_per_second"] = self.train_examples / seconds if seconds > 0 else 0.0


def current_learning_rate(optimizer) -> float:
    # A schedule's value depends on the step; Keras's `learning_rate` property evaluates it at the current one.
    return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))


class TrackEpochs(keras.callbacks.Callback):
    """Sends each epoch's logs to the tracking run, one batch of metrics per epoch (never per step)."""

    def __init__(self, run):
        super().__init__()
        self.run = run
        self.epochs_done = 0

    def on_epoch_end(self, epoch, logs=None):
        self.run.log_metrics(dict(logs or {}), step=epoch + 1)
        self.epochs_done = epoch + 1


class StopAt(keras.callbacks.Callback):
    """Ends training at the first epoch whose metric reaches the value (`training.stop_at`); `reached_at` is that
    epoch, counted from 1."""

    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = stop_at
        self.reached_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.stop_at.metric)
        if value is None or self.reached_at is not None:
            return
        if (value >= self.stop_at.value) if self.stop_at.above else (value <= self.stop_at.value):
            self.reached_at = epoch + 1
            self.model.stop_training = True


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss and remembers where, so the run can end FAILED."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True


class Display(keras.callbacks.Callback):
    """Live progress bars with metrics in a terminal; one plain line per epoch otherwise (CI logs)."""

    SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy", "val_f1_macro")  # the last: multi-label runs

    def __init__(self, epochs: int, steps_per_epoch: int, console: Console, quiet: bool = False):
        super().__init__()
        self.epochs, self.steps, self.console, self.quiet = epochs, steps_per_epoch, console, quiet
        self.live = console.is_terminal and not quiet
        self.bars: Progress | None = None

    def on_train_begin(self, logs=None):
        if self.live:
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"),
                                 console=self.console, transient=False)
            self.bars.start()
            self.epoch_bar = self.bars.add_task("epochs", total=self.epochs, metrics="")
            self.step_bar = self.bars.add_task("steps ", total=self.steps, metrics="")

    def on_epoch_begin(self, epoch, logs=None):
        if self.bars:
            self.bars.reset(self.step_bar, total=self.steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        if self.bars:
            self.bars.update(self.step_bar, completed=batch + 1, metrics=_metric_text(logs, self.SHOWN[:2]))

    def on_epoch_end(self, epoch, logs=None):
        line = (f"epoch {epoch + 1}/{self.epochs}  {_metric_text(logs, self.SHOWN)}  "
                f"{logs.get('epoch_seconds', 0):.1f}s  {logs.get('images_per_second', 0):,.0f} img/s")
        if self.bars:
            self.bars.update(self.epoch_bar, completed=epoch + 1, metrics=_metric_text(logs, self.SHOWN[2:]))
            self.bars.console.print(line, soft_wrap=True)
        elif not self.quiet:
            self.console.print(line, highlight=False, soft_wrap=True)

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Stop the live bars; also called when training ends by an exception, which Keras does not report to
        callbacks, so the terminal is not left with a running display and a hidden cursor."""
        if self.bars:
            self.bars.stop()
            self.bars = None


def _metric_text(logs, keys) -> str:
    logs = logs or {}
    return "  ".join(f"{k} {float(logs[k]):.4f}" for k in keys if k in logs)
