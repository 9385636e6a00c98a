"""xrun's performance harness: is the runner as fast as the plain Keras it replaces?

    python bench/run.py            # full run (~15 min on 2 busy CPU cores), writes bench/results.json
    python bench/run.py --quick    # smoke run (< ~3 min), writes bench/results.quick.json
    python bench/run.py --only augment

Four measurements, each against the baseline the seed notebooks used:

  overhead   images/s of xrun training a seed model vs `model.fit` on NumPy arrays, steady-state epochs
             (with the median step and the validation pass, and a what-if: xrun without op determinism)
  augment    images/s of xrun's tf.data augmentation vs the legacy ImageDataGenerator (seed-002 settings)
  tracking   share of the epoch time spent logging to MLflow (in-run timer; on/off epochs; one log_metrics call)
  startup    wall time of `xrun validate` / `xrun --help` vs `python -c "import tensorflow"` (and a what-if:
             validate with a faster schema check)

Timings are only reported, never asserted: the exit status is 0 whatever the numbers, 1 if a measurement crashed.
Paired measurements are interleaved so that load from other processes hits both sides alike: the training sides
run in separate processes that take turns epoch by epoch (TakeTurns), the others alternate A, B, A, B.
xrun is instrumented by monkeypatching (its callbacks, settings_for, the schema validator), never edited.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import io
import json
import multiprocessing
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ITEMS = ("overhead", "augment", "tracking", "startup")

# Seed 002's ImageDataGenerator settings (experiments/seed002_method1.yaml).
AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1, "height_shift_range": 0.1, "shear_range": 0.2,
                "zoom_range": 0.1, "fill_mode": "nearest", "gaussian_noise": 0.05}
BATCH = 128

# Sizes per mode. Training runs: examples x epochs x repetitions per side; epoch 1 (tracing) is never counted.
SIZES = {
    "full": {"train_examples": 20000, "epochs": 4, "reps": 3,
             "tracking_examples": 10000, "tracking_epochs": 7, "tracking_reps": 2,
             "augment_examples": 10000, "augment_batches": 150, "augment_reps": 3,
             "startup_reps": 5, "startup_warmup": True, "log_calls": 30},
    "quick": {"train_examples": 2000, "epochs": 2, "reps": 1,
              "tracking_examples": 2000, "tracking_epochs": 3, "tracking_reps": 1,
              "augment_examples": 2000, "augment_batches": 20, "augment_reps": 1,
              "startup_reps": 3, "startup_warmup": False, "log_calls": 10},
    # Only to exercise the code (bench/gpu.sh --smoke, its test): the numbers mean nothing at this size.
    "smoke": {"train_examples": 256, "epochs": 2, "reps": 1,
              "tracking_examples": 256, "tracking_epochs": 2, "tracking_reps": 1,
              "augment_examples": 256, "augment_batches": 2, "augment_reps": 1,
              "startup_reps": 1, "startup_warmup": False, "log_calls": 2},
}


@dataclass
class Measurement:
    """One row of the table; `samples` keeps every raw number it was computed from."""

    name: str
    what: str
    unit: str
    xrun: float
    baseline: float
    ratio: float
    ratio_label: str
    target: str
    passed: bool | None          # None: informational, no target
    spread: str = ""
    samples: dict = field(default_factory=dict)
    notes: str = ""


# --- helpers ---------------------------------------------------------------------------------------------------

def median(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values, fmt: str = "{:.3g}") -> str:
    """'min..max' of a list, to show how far the noise of a shared machine moves a number."""
    return f"{fmt.format(min(values))}..{fmt.format(max(values))}" if values else ""


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("tensorflow", "keras", "mlflow", "xrun"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": affinity, "platform": platform.platform(),
            "python": platform.python_version(), **versions,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def data_dir(explicit: str | None) -> str | None:
    """--data-dir, else $XRUN_DATA_DIR, else None: the loader's own verified sources (Keras cache, PyPI mirror)."""
    return explicit or os.environ.get("XRUN_DATA_DIR") or None


# --- timing epochs: side by side, in turns --------------------------------------------------------------------

class TakeTurns:
    """Trainings in separate processes that run one epoch at a time, in turn: A1 B1 A2 B2 ...

    On a machine shared with other work the load changes from one minute to the next, so two runs one after the
    other can differ by 50% for no reason of their own; adjacent epochs see nearly the same load, so the ratio of
    paired epochs is far steadier. A side waits (blocked, using no CPU) while another trains. Separate processes,
    because TensorFlow's switches are process-wide (xrun turns on op determinism, under which the notebook's
    unseeded shuffle cannot even run) and each side should start as a fresh program would.
    """

    def __init__(self, ctx, sides: list[str], timeout: float = 1800.0):
        self.sides, self.timeout = list(sides), timeout
        self.cond = ctx.Condition()
        self.turn = ctx.Value("i", 0, lock=False)          # guarded by cond
        self.done = ctx.Array("b", len(sides), lock=False)  # guarded by cond
        self.ready = ctx.Array("b", len(sides), lock=False)  # guarded by cond

    def start_together(self, side: str) -> None:
        """Wait until every side is ready to train: no timed epoch may overlap another side's set-up (TensorFlow
        import, data loading, compile), which takes seconds of CPU."""
        with self.cond:
            self.ready[self.sides.index(side)] = 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: all(r or d for r, d in zip(self.ready, self.done)), self.timeout)

    def wait(self, side: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.sides[self.turn.value] == side, self.timeout):
                raise RuntimeError(f"{side}: no other side handed over within {self.timeout:.0f}s")

    def hand_over(self) -> None:
        with self.cond:
            self._advance()
            self.cond.notify_all()

    def finish(self, side: str) -> None:
        """`side` trains no more (done, or crashed): the others stop waiting for it. Idempotent."""
        with self.cond:
            self.done[self.sides.index(side)] = 1
            if self.sides[self.turn.value] == side:
                self._advance()
            self.cond.notify_all()

    def wait_all_done(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: all(self.done), self.timeout)

    def _advance(self) -> None:
        for step in range(1, len(self.sides) + 1):
            i = (self.turn.value + step) % len(self.sides)
            if not self.done[i]:
                self.turn.value = i
                return


def turn_clock(turns: TakeTurns, side: str):
    """A Keras callback that times each epoch of `side`, start to start, and takes turns at epoch boundaries.

    An epoch runs from its on_epoch_begin to the next one (the last: to on_train_end), so it includes validation
    and *every* callback's epoch-end work (xrun's own epoch_seconds stops before its tracking callback runs).
    """
    import keras

    class TurnClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []       # per epoch
            self.step_ms: list[float] = []       # per epoch: the median training step, in ms
            self.val_seconds: list[float] = []   # per epoch: the validation pass
            self.start_seconds: list[float] = []  # per epoch: from its start to its first step (iterator set-up)
            self.started: float | None = None
            self.train_examples: int | None = None
            self._steps: list[float] = []
            self._step_started = self._val_started = self._val = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            if self._stop():
                turns.hand_over()
            elif not self.seconds:
                turns.start_together(side)
            turns.wait(side)
            self._steps, self._val = [], 0.0
            self.started = time.perf_counter()

        # The median step is robust to bursts of load that hit a few seconds of an epoch; the epoch time is not.
        def on_train_batch_begin(self, batch, logs=None):
            self._step_started = time.perf_counter()
            if not self._steps:
                self.start_seconds.append(self._step_started - self.started)

        def on_train_batch_end(self, batch, logs=None):
            self._steps.append(time.perf_counter() - self._step_started)

        # fit() runs validation through the same callbacks, between the last step and on_epoch_end.
        def on_test_begin(self, logs=None):
            self._val_started = time.perf_counter()

        def on_test_end(self, logs=None):
            self._val += time.perf_counter() - self._val_started

        def on_train_end(self, logs=None):
            self._stop()
            turns.finish(side)
            turns.wait_all_done()  # post-training work (xrun's evaluate, plots) must not overlap a timed epoch

        def numbers(self) -> dict:
            return {"epoch_seconds": self.seconds,
                    "images_per_second": [self.train_examples / s for s in self.seconds],
                    "step_ms": self.step_ms, "val_seconds": self.val_seconds, "start_seconds": self.start_seconds}

        def _stop(self) -> bool:
            if self.started is None:
                return False
            self.seconds.append(time.perf_counter() - self.started)
            self.step_ms.append(1000 * median(self._steps))
            self.val_seconds.append(self._val)
            self.started = None
            return True

    return TurnClock()


def side_main(turns: TakeTurns, side: str, kind: str, kwargs: dict, results) -> None:
    """A side's process: train with a turn clock, send back ("ok", numbers) or ("error", traceback)."""
    try:
        from runner.training.settings import import_tensorflow

        import_tensorflow()  # quietly, as xrun does
        clock = turn_clock(turns, side)
        with contextlib.redirect_stdout(io.StringIO()):  # Keras's progress bar, as if in a notebook cell
            results.put((side, "ok", SIDES[kind](clock=clock, **kwargs)))
    except BaseException:  # noqa: BLE001 - reported by the parent
        results.put((side, "error", traceback.format_exc()))
    finally:
        turns.finish(side)


def in_turns(sides: dict[str, tuple[str, dict]], timeout: float = 1800.0) -> dict:
    """Run {side: (kind, kwargs)} in processes that take turns, epoch by epoch; returns {side: numbers}."""
    ctx = multiprocessing.get_context("spawn")
    turns, results = TakeTurns(ctx, list(sides), timeout), ctx.Queue()
    procs = {side: ctx.Process(target=side_main, args=(turns, side, kind, kwargs, results), name=f"bench-{side}")
             for side, (kind, kwargs) in sides.items()}
    for proc in procs.values():
        proc.start()
    out, failures, deadline, silent = {}, {}, time.monotonic() + timeout, set()
    while len(out) + len(failures) < len(procs):
        try:
            side, status, payload = results.get(timeout=5)
        except queue.Empty:
            # A process that died without a word (killed, out of memory) for two polls in a row has failed.
            dead = {s for s, p in procs.items() if not p.is_alive() and s not in out and s not in failures}
            for s in dead & silent:
                failures[s] = f"process exited with code {procs[s].exitcode} and no report"
                turns.finish(s)
            silent = dead
            if time.monotonic() > deadline:
                for proc in procs.values():
                    proc.terminate()  # only the processes this bench started
                raise RuntimeError(f"sides still running after {timeout:.0f}s")
            continue
        (out if status == "ok" else failures)[side] = payload
    for proc in procs.values():
        proc.join(timeout=60)
    if failures:
        raise RuntimeError("\n".join(f"the {s} side failed:\n{tb}" for s, tb in failures.items()))
    return out


@contextlib.contextmanager
def patched(owner, name: str, value):
    """Temporarily replace owner.name (the bench instruments xrun without editing it)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield original
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def instrumented_xrun(clock, log: str = "all"):
    """Put `clock` first in xrun's callback list, and time its per-epoch MLflow logging.

    log: "all" logs every epoch as xrun does; "alternate" logs epochs 1, 3, 5, ... (0-based 0, 2, 4) and skips the
    others, for the on/off comparison. Yields the list of (epoch, seconds in TrackEpochs.on_epoch_end, logged).
    """
    from runner.training import callbacks

    log_seconds: list[tuple[int, float, bool]] = []

    class ClockedEpochMetrics(callbacks.EpochMetrics):
        # xrun puts EpochMetrics first in its callbacks; riding on it, the clock waits for its turn before xrun's
        # own epoch timer starts (run_experiment's extra_callbacks come later in the list).
        def on_epoch_begin(self, epoch, logs=None):
            clock.train_examples = self.train_examples
            clock.on_epoch_begin(epoch, logs)
            super().on_epoch_begin(epoch, logs)

        def on_train_batch_begin(self, batch, logs=None):
            clock.on_train_batch_begin(batch, logs)

        def on_train_batch_end(self, batch, logs=None):
            clock.on_train_batch_end(batch, logs)

        def on_test_begin(self, logs=None):
            clock.on_test_begin(logs)

        def on_test_end(self, logs=None):
            clock.on_test_end(logs)

        def on_train_end(self, logs=None):
            clock.on_train_end(logs)

    class TimedTrackEpochs(callbacks.TrackEpochs):
        def on_epoch_end(self, epoch, logs=None):
            started, logged = time.perf_counter(), log == "all" or epoch % 2 == 0
            if logged:
                super().on_epoch_end(epoch, logs)
            else:
                self.epochs_done = epoch + 1
            log_seconds.append((epoch, time.perf_counter() - started, logged))

    with patched(callbacks, "EpochMetrics", ClockedEpochMetrics), \
            patched(callbacks, "TrackEpochs", TimedTrackEpochs):
        yield log_seconds


@contextlib.contextmanager
def without_op_determinism(enabled: bool):
    """What-if: xrun's settings with deterministic=False (xrun turns TF op determinism on for CPU runs)."""
    if not enabled:
        yield
        return
    import dataclasses

    from runner import run as train

    original = train.settings_for
    with patched(train, "settings_for", lambda training: dataclasses.replace(original(training),
                                                                              deterministic=False)):
        yield


# --- 1. runner overhead ----------------------------------------------------------------------------------------

def xrun_training(clock, model: str, examples: int, epochs: int, data: str | None, log: str = "all",
                  nondeterministic: bool = False) -> dict:
    """Train experiments/<model>.yaml through run_experiment into a throw-away SQLite store; per-epoch numbers."""
    from rich.console import Console

    from runner import run as train
    from runner.language.spec import load_spec
    from runner.records import store

    spec = load_spec(ROOT / "experiments" / f"{model}.yaml",
                     [f"data.limit={examples}", f"training.epochs={epochs}",
                      "tracking.log_model=false", "tracking.log_images=false"])
    with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        # Pre-create the experiment with its artifacts in tmp; MLflow's default would be ./mlruns of the cwd.
        store.client(uri).create_experiment(spec.document["tracking"]["experiment"],
                                               artifact_location=Path(tmp, "artifacts").as_uri())
        with instrumented_xrun(clock, log) as log_seconds, without_op_determinism(nondeterministic):
            result = train.run_experiment(spec, tracking_uri=uri, data_dir=data, quiet=True,
                                          console=Console(file=io.StringIO()))
    return {**clock.numbers(), "logged_images_per_second": list(result.history.get("images_per_second", [])),
            "log_seconds": log_seconds, "test_accuracy": result.test_accuracy}


def seed_model(model: str):
    """The Keras model the seed notebook wrote by hand (model1); other models are taken from xrun's compiler.

    Either way it must have exactly the parameters of the model xrun builds from the YAML, or the race is unfair.
    """
    import keras

    from runner.language.spec import load_spec
    from runner.model.compiler import build_model

    xrun_model = build_model(load_spec(ROOT / "experiments" / f"{model}.yaml"))
    if model != "model1":
        return xrun_model
    L = keras.layers
    net = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 5, activation="relu", kernel_initializer="he_normal"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 5, activation="relu", kernel_initializer="he_normal"),
        L.MaxPooling2D(2),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(512, activation="relu", kernel_initializer="he_normal"),
        L.BatchNormalization(),
        L.Dropout(0.5),
        L.Dense(128, activation="relu", kernel_initializer="he_normal"),
        L.BatchNormalization(),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ])
    if net.count_params() != xrun_model.count_params():
        raise RuntimeError(f"hand-written model1 has {net.count_params()} parameters, xrun's "
                           f"{xrun_model.count_params()}: experiments/model1.yaml changed?")
    return net


def keras_training(clock, model: str, examples: int, epochs: int, data: str | None) -> dict:
    """The seed notebook's loop: float arrays, one-hot labels, model.fit with the test set as validation."""
    import keras

    from runner.training.data import load_dataset

    mnist = load_dataset("mnist", data)
    x_train = mnist.x_train[:examples].astype("float32")[..., None] / 255.0
    x_test = mnist.x_test[:examples].astype("float32")[..., None] / 255.0
    y_train = keras.utils.to_categorical(mnist.y_train[:examples], 10)
    y_test = keras.utils.to_categorical(mnist.y_test[:examples], 10)
    net = seed_model(model)
    net.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7))
    # verbose is left at its default, as in the notebook (side_main sends the progress bar to a buffer).
    history = net.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, validation_data=(x_test, y_test),
                      callbacks=[clock])
    clock.train_examples = examples
    return {**clock.numbers(), "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
            "params": int(net.count_params()), "jit_compile": bool(net.jit_compile)}


SIDES = {"xrun": xrun_training, "keras": keras_training}  # what a side process can run, by name


def steady(run: dict, key: str = "images_per_second") -> list[float]:
    return run[key][1:]  # epoch 1 includes tracing and compilation


def measure_overhead(model: str, sizes: dict, data: str | None) -> list[Measurement]:
    """Plain Keras, xrun, and xrun without op determinism (a what-if) train side by side, one epoch each in turn."""
    n, epochs = sizes["train_examples"], sizes["epochs"]
    args = {"model": model, "examples": n, "epochs": epochs, "data": data}
    runs = {"keras": [], "xrun": [], "whatif": []}
    for _ in range(sizes["reps"]):
        done = in_turns({"keras": ("keras", args), "xrun": ("xrun", args),
                         "whatif": ("xrun", {**args, "nondeterministic": True})})
        for side, numbers in done.items():
            runs[side].append(numbers)
    rate = {side: [v for r in side_runs for v in steady(r)] for side, side_runs in runs.items()}
    step = {side: [v for r in side_runs for v in steady(r, "step_ms")] for side, side_runs in runs.items()}
    val = {side: [v for r in side_runs for v in steady(r, "val_seconds")] for side, side_runs in runs.items()}
    start = {side: [v for r in side_runs for v in steady(r, "start_seconds")] for side, side_runs in runs.items()}
    # Epoch k of one side against epoch k of the side that ran just before or after it (speed ratios: > 1 = faster).
    pairs = {side: [a / b for a, b in zip(rate[side], rate["keras"])] for side in ("xrun", "whatif")}
    step_pairs = {side: [b / a for a, b in zip(step[side], step["keras"])] for side in ("xrun", "whatif")}
    vs_xrun = [a / b for a, b in zip(rate["whatif"], rate["xrun"])]
    step_vs_xrun = [b / a for a, b in zip(step["whatif"], step["xrun"])]
    shape = f"{n} ex x {epochs} ep, x{sizes['reps']}, in turns"
    notes = ("ratio = median over adjacent epoch pairs; steady-state epochs only (epoch 1 dropped); "
             "epoch = start to start, incl. validation and callbacks")
    return [
        Measurement("overhead", f"training {model}: xrun vs model.fit(NumPy) ({shape})", "img/s",
                    median(rate["xrun"]), median(rate["keras"]), median(pairs["xrun"]), "xrun/keras", ">= 1.0",
                    median(pairs["xrun"]) >= 1.0,
                    spread=f"pairs {spread(pairs['xrun'], '{:.2f}')}; epochs xrun {spread(rate['xrun'], '{:.0f}')}, "
                           f"keras {spread(rate['keras'], '{:.0f}')}",
                    samples={"xrun": runs["xrun"], "keras": runs["keras"], "pair_ratios": pairs["xrun"]},
                    notes=notes),
        Measurement("overhead_step", "the same, median training step (robust to bursts of load)", "ms/step",
                    median(step["xrun"]), median(step["keras"]), median(step_pairs["xrun"]), "keras/xrun", "info",
                    None, spread=f"pairs {spread(step_pairs['xrun'], '{:.2f}')}",
                    samples={"pair_ratios": step_pairs["xrun"]},
                    notes="ratio > 1: xrun's step is faster; per-step medians of each steady epoch"),
        Measurement("overhead_val", "the same, validation pass per epoch", "s/epoch",
                    median(val["xrun"]), median(val["keras"]),
                    median([b / a for a, b in zip(val["xrun"], val["keras"])]), "keras/xrun", "info", None,
                    spread=f"xrun {spread(val['xrun'], '{:.2f}')}, keras {spread(val['keras'], '{:.2f}')}",
                    samples={"xrun": val["xrun"], "keras": val["keras"]},
                    notes="ratio > 1: xrun validates faster"),
        Measurement("overhead_start", "the same, epoch start to first step (input iterator set-up)", "s/epoch",
                    median(start["xrun"]), median(start["keras"]), float("nan"), "", "info", None,
                    spread=f"xrun {spread(start['xrun'], '{:.3f}')}, keras {spread(start['keras'], '{:.3f}')}",
                    samples={"xrun": start["xrun"], "keras": start["keras"]},
                    notes="Keras re-shuffles and re-slices NumPy input at every epoch; xrun's tf.data stream repeats"),
        Measurement("overhead_nondet", "what-if: xrun with op determinism off vs model.fit(NumPy)", "img/s",
                    median(rate["whatif"]), median(rate["keras"]), median(pairs["whatif"]), "xrun/keras", "info",
                    None, spread=f"pairs {spread(pairs['whatif'], '{:.2f}')}; vs xrun as is: epochs "
                                 f"{median(vs_xrun):.2f} ({spread(vs_xrun, '{:.2f}')}), steps "
                                 f"{median(step_vs_xrun):.2f} ({spread(step_vs_xrun, '{:.2f}')})",
                    samples={"xrun_nondeterministic": runs["whatif"], "pair_ratios": pairs["whatif"],
                             "step_pair_ratios": step_pairs["whatif"], "pair_ratios_vs_xrun": vs_xrun,
                             "step_pair_ratios_vs_xrun": step_vs_xrun},
                    notes="runner.train.settings_for monkeypatched to return deterministic=False"),
    ]


# --- 2. augmentation pipeline ----------------------------------------------------------------------------------

def xrun_augment_rate(x, y, batches: int) -> float:
    from runner.training import pipeline

    ds = pipeline.train_dataset(x, y, batch_size=BATCH, shuffle=True, seed=0, augmentation=AUGMENTATION,
                                one_hot_classes=10)
    it = iter(ds)
    for _ in range(3):  # trace the map functions and fill the shuffle buffer before the clock starts
        next(it)
    started = time.perf_counter()
    images = 0
    for _ in range(batches):
        xb, _yb = next(it)
        images += int(xb.shape[0])
    return images / (time.perf_counter() - started)


def idg_flow(x_float, y_onehot):
    """Seed 002's generator: the same transforms, Gaussian noise as its preprocessing_function."""
    import numpy as np

    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError:  # older Keras / tf.keras
        from tensorflow.keras.preprocessing.image import ImageDataGenerator

    rng = np.random.default_rng(0)
    settings = {k: v for k, v in AUGMENTATION.items() if k != "gaussian_noise"}
    generator = ImageDataGenerator(
        **settings, preprocessing_function=lambda image: image + rng.normal(0.0, AUGMENTATION["gaussian_noise"],
                                                                            image.shape))
    return generator.flow(x_float, y_onehot, batch_size=BATCH, shuffle=True, seed=0)


def idg_rate(x_float, y_onehot, batches: int) -> float:
    flow = idg_flow(x_float, y_onehot)
    next(flow)  # the same one-batch warm-up courtesy as the tf.data side
    started = time.perf_counter()
    images = 0
    for _ in range(batches):
        xb, _yb = next(flow)
        images += len(xb)
    return images / (time.perf_counter() - started)


def measure_augment(sizes: dict, data: str | None) -> list[Measurement]:
    import keras

    from runner.training.data import load_dataset

    mnist = load_dataset("mnist", data)
    n, batches = sizes["augment_examples"], sizes["augment_batches"]
    x, y = mnist.x_train[:n], mnist.y_train[:n]
    x_float = x.astype("float32")[..., None] / 255.0
    y_onehot = keras.utils.to_categorical(y, 10)
    xs, ids = [], []
    for _ in range(sizes["augment_reps"]):
        xs.append(xrun_augment_rate(x, y, batches))
        ids.append(idg_rate(x_float, y_onehot, batches))
    ratio = median(xs) / median(ids)
    pair_ratios = [a / b for a, b in zip(xs, ids)]
    return [Measurement(
        "augment", f"seed-002 augmentation: tf.data vs ImageDataGenerator ({batches} x {BATCH} img, x{len(xs)})",
        "img/s", median(xs), median(ids), ratio, "xrun/IDG", ">= 3", ratio >= 3.0,
        spread=f"pairs {spread(pair_ratios, '{:.1f}')}",
        samples={"xrun": xs, "image_data_generator": ids, "pair_ratios": pair_ratios, "examples": n},
        notes="xrun: runner.pipeline.train_dataset (shuffle, batch, prepare, augment, prefetch); "
              "IDG: .flow on float arrays, noise via preprocessing_function")]


# --- 3. tracking overhead --------------------------------------------------------------------------------------

def log_metrics_ms(calls: int) -> list[float]:
    """One epoch's worth of metrics, logged to a fresh SQLite store, call by call."""
    from runner.records import store

    epoch_logs = {"loss": 0.1, "accuracy": 0.97, "val_loss": 0.05, "val_accuracy": 0.98, "learning_rate": 1.0,
                  "epoch_seconds": 10.0, "images_per_second": 2000.0}
    with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        store.client(uri).create_experiment("bench", artifact_location=Path(tmp, "artifacts").as_uri())
        run = store.Run(uri, "bench", "log-metrics")
        out = []
        for step in range(calls):
            started = time.perf_counter()
            run.log_metrics(epoch_logs, step=step + 1)
            out.append((time.perf_counter() - started) * 1000)
        run.end("FINISHED")
        shutil.rmtree(run.artifact_dir, ignore_errors=True)  # the Run made it; run_experiment would remove it
    return out


def measure_tracking(model: str, sizes: dict, data: str | None) -> list[Measurement]:
    """Logging on even epochs, off on odd ones, in the same run: paired neighbours for the on/off comparison."""
    n, epochs = sizes["tracking_examples"], sizes["tracking_epochs"]
    args = {"model": model, "examples": n, "epochs": epochs, "data": data, "log": "alternate"}
    runs = [in_turns({"xrun": ("xrun", args)})["xrun"] for _ in range(sizes["tracking_reps"])]
    on, off, logging, pairs = [], [], [], []
    for run in runs:
        seconds = run["epoch_seconds"]
        for epoch in range(1, len(seconds) - 1, 2):  # (off, on) neighbours after the first epoch
            off.append(seconds[epoch])
            on.append(seconds[epoch + 1])
            pairs.append(100 * (seconds[epoch + 1] / seconds[epoch] - 1))
        logging += [s for epoch, s, logged in run["log_seconds"] if logged and epoch > 0]
    # In-run: the time TrackEpochs spends per logged epoch, over the epoch it delays. Exact, unlike the A/B below.
    inrun_pct = 100 * median(logging) / median(on)
    calls = log_metrics_ms(sizes["log_calls"])
    return [
        Measurement("tracking", f"MLflow logging per epoch, timed in the run ({n} ex x {epochs} ep)", "s/epoch",
                    median(on), median(on) - median(logging), inrun_pct, "overhead %", "< 2%", inrun_pct < 2.0,
                    spread=f"log {spread([1000 * v for v in logging], '{:.1f}')} ms",
                    samples={"log_seconds": logging, "epoch_seconds_logged": on, "runs": runs},
                    notes="xrun = epoch wall time with logging; baseline = the same minus TrackEpochs.on_epoch_end"),
        Measurement("tracking_ab", "epoch time, logging on vs off (alternate epochs of one run)", "s/epoch",
                    median(on), median(off), median(pairs), "overhead %", "info", None,
                    spread=f"pairs {spread(pairs, '{:+.1f}')}%",
                    samples={"epoch_seconds_on": on, "epoch_seconds_off": off, "pair_overhead_percent": pairs},
                    notes="the machine's noise is far larger than the effect; the in-run row is the measurement"),
        Measurement("log_metrics", "one Run.log_metrics call (7 metrics, SQLite)", "ms",
                    median(calls), float("nan"), float("nan"), "", "info", None,
                    spread=spread(calls, "{:.1f}"), samples={"ms": calls}),
    ]


# --- 4. start-up -----------------------------------------------------------------------------------------------

def xrun_command() -> list[str]:
    script = Path(sys.executable).with_name("xrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner.cli"]


def wall_time(command: list[str]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return seconds


def measure_startup(sizes: dict) -> list[Measurement]:
    files = sorted(str(Path(p).relative_to(ROOT)) for p in glob.glob(str(ROOT / "experiments" / "*.yaml")))
    commands = {"validate": xrun_command() + ["validate", *files], "help": xrun_command() + ["--help"],
                "import_tensorflow": [sys.executable, "-c", "import tensorflow"]}
    if sizes["startup_warmup"]:
        for command in commands.values():  # warm the page cache for every side alike
            wall_time(command)
    times = {name: [] for name in commands}
    for _ in range(sizes["startup_reps"]):  # interleaved rounds
        for name, command in commands.items():
            times[name].append(wall_time(command))
    tf_s, tf_times = median(times["import_tensorflow"]), times["import_tensorflow"]
    rows = []
    for name, label, target in (
            ("validate", f"`xrun validate experiments/*.yaml` ({len(files)} files)", "< 0.1"),
            ("help", "`xrun --help`", "< 0.1")):
        ratio = median(times[name]) / tf_s
        rows.append(Measurement(f"startup_{name}", f"{label} vs `python -c 'import tensorflow'`", "s",
                                median(times[name]), tf_s, ratio, "xrun/import", target,
                                ratio < 0.1 if target != "info" else None,
                                spread=f"xrun {spread(times[name], '{:.2f}')}, tf {spread(tf_times, '{:.2f}')}",
                                samples={"xrun": times[name], "import_tensorflow": tf_times}))
    return rows


# --- report ----------------------------------------------------------------------------------------------------

def fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def without_nan(value):
    """NaN is not JSON: write null for the numbers a row does not have."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value


def table(rows: list[Measurement]) -> str:
    header = ("item", "xrun", "baseline", "unit", "ratio", "target", "result", "spread")
    lines = [header]
    for m in rows:
        ratio = "-" if m.ratio != m.ratio else (f"{m.ratio:+.2f}%" if m.ratio_label == "overhead %"
                                                 else f"{m.ratio:.3g}")
        result = "info" if m.passed is None else ("PASS" if m.passed else "FAIL")
        lines.append((m.name, fmt(m.xrun), fmt(m.baseline), m.unit, ratio, m.target, result, m.spread))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def run_items(names: list[str], model: str, sizes: dict, data: str | None) -> tuple[list[Measurement], dict]:
    """Each item on its own: one that crashes is reported and the others still run."""
    if "augment" in names:  # the only item that runs TensorFlow in this process (training runs in side processes)
        from runner.training.settings import import_tensorflow

        import_tensorflow()  # quietly, as xrun does
    measure = {"overhead": lambda: measure_overhead(model, sizes, data),
               "augment": lambda: measure_augment(sizes, data),
               "tracking": lambda: measure_tracking(model, sizes, data),
               "startup": lambda: measure_startup(sizes)}
    rows, errors = [], {}
    for name in names:
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(measure[name]())
        except Exception:  # noqa: BLE001 - a crash is a result too: record it and go on
            errors[name] = traceback.format_exc()
            print(errors[name], file=sys.stderr)
        print(f"[bench] {name} took {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return rows, errors


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (CI smoke run)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes that only exercise the code")
    parser.add_argument("--only", choices=ITEMS, action="append", help="run only this item (repeatable)")
    parser.add_argument("--model", default="model1", help="seed experiment to train (default model1)")
    parser.add_argument("--data-dir", help="folder with mnist.npz (default $XRUN_DATA_DIR, else xrun's own sources)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results.json, "
                                                 "bench/results.quick.json with --quick)")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    out = args.out or ROOT / "bench" / ("results.json" if mode == "full" else f"results.{mode}.json")
    names = args.only or list(ITEMS)
    load_before, started = load_average(), time.perf_counter()
    rows, errors = run_items(names, args.model, SIZES[mode], data_dir(args.data_dir))
    machine = machine_info()
    print(f"\n{machine['cpu']}, {machine['cores']} cores; python {machine['python']}, tensorflow "
          f"{machine['tensorflow']}, keras {machine['keras']}, mlflow {machine['mlflow']}, xrun {machine['xrun']}; "
          f"{machine['date']}; load average {load_before} -> {load_average()}; {mode} mode\n")
    print(table(rows))
    for name in errors:
        print(f"\n{name}: CRASHED (traceback above and in {out.name})")
    result = {"mode": mode, "model": args.model, "sizes": SIZES[mode], "machine": machine,
              "load_average": {"start": load_before, "end": load_average()},
              "seconds": round(time.perf_counter() - started, 1),
              "measurements": [asdict(m) for m in rows], "errors": errors}
    out.write_text(json.dumps(without_nan(result), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
