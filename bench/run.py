"""xrun's performance harness: is the runner as fast as the plain Keras it replaces?

    python bench/run.py            # full run (~15-20 min on 2 CPU cores), writes bench/results.json
    python bench/run.py --quick    # smoke run (< ~3 min), writes bench/results.quick.json
    python bench/run.py --only augment

Four measurements, each against the baseline the seed notebooks used:

  overhead   images/s of xrun training a seed model vs `model.fit` on NumPy arrays, steady-state epochs
  augment    images/s of xrun's tf.data augmentation vs the legacy ImageDataGenerator (seed-002 settings)
  tracking   share of the epoch time spent logging to MLflow (in-run timer, plus an A/B run with logging off)
  startup    wall time of `xrun validate` / `xrun --help` vs `python -c "import tensorflow"`

Timings are only reported, never asserted: the exit status is 0 whatever the numbers, 1 if a measurement crashed.
Paired measurements are interleaved (A, B, A, B, ...) so that load from other processes hits both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import glob
import io
import json
import os
import platform
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
             "tracking_examples": 10000, "tracking_epochs": 3, "tracking_reps": 3,
             "augment_examples": 10000, "augment_batches": 150, "augment_reps": 3,
             "startup_reps": 5, "startup_warmup": True, "log_calls": 30},
    "quick": {"train_examples": 2000, "epochs": 2, "reps": 1,
              "tracking_examples": 2000, "tracking_epochs": 2, "tracking_reps": 1,
              "augment_examples": 2000, "augment_batches": 20, "augment_reps": 1,
              "startup_reps": 3, "startup_warmup": False, "log_calls": 10},
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
    if explicit or os.environ.get("XRUN_DATA_DIR"):
        return explicit or os.environ["XRUN_DATA_DIR"]
    shared = Path("/work/shared/datasets")
    return str(shared) if (shared / "mnist.npz").is_file() else None


# --- timing epochs the same way on both sides -------------------------------------------------------------------

def epoch_clock_class():
    """A Keras callback that stamps the start of each epoch and the end of training.

    Start-to-start intervals give each epoch's wall time including validation and *every* callback's epoch-end work
    (xrun's own epoch_seconds stops before its tracking callback runs), measured identically for xrun and Keras.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.marks.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.marks.append(time.perf_counter())

        def seconds(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:])]

    return EpochClock


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
def instrumented_xrun(tracking_mode: str = "on"):
    """Run xrun with an epoch clock, and a timer (or a no-op) around its per-epoch MLflow logging.

    tracking_mode: "on" logs as xrun does and times each TrackEpochs.on_epoch_end; "off" keeps the callback but
    skips the MLflow call, so the two runs differ only in the logging.
    """
    from runner import callbacks

    clock = epoch_clock_class()()
    log_seconds: list[float] = []

    class ClockedEpochMetrics(callbacks.EpochMetrics):
        # EpochMetrics is created once per fit by xrun; riding on it puts the clock into xrun's callback list.
        def on_epoch_begin(self, epoch, logs=None):
            clock.on_epoch_begin(epoch)
            clock.train_examples = self.train_examples
            super().on_epoch_begin(epoch, logs)

        def on_train_end(self, logs=None):
            clock.on_train_end(logs)

    class TimedTrackEpochs(callbacks.TrackEpochs):
        def on_epoch_end(self, epoch, logs=None):
            started = time.perf_counter()
            if tracking_mode == "on":
                super().on_epoch_end(epoch, logs)
            else:
                self.epochs_done = epoch + 1
            log_seconds.append(time.perf_counter() - started)

    with patched(callbacks, "EpochMetrics", ClockedEpochMetrics), \
            patched(callbacks, "TrackEpochs", TimedTrackEpochs):
        yield clock, log_seconds


def fresh_session() -> None:
    """Each training run starts from the same clean Keras/TF state, whichever side ran before."""
    import keras

    keras.backend.clear_session()
    gc.collect()


# --- 1. runner overhead ----------------------------------------------------------------------------------------

def xrun_training(model: str, examples: int, epochs: int, data: str | None, tracking_mode: str = "on") -> dict:
    """Train experiments/<model>.yaml through run_experiment into a throw-away SQLite store; per-epoch numbers."""
    from rich.console import Console

    from runner import tracking, train
    from runner.spec import load_spec

    fresh_session()
    spec = load_spec(ROOT / "experiments" / f"{model}.yaml",
                     [f"data.limit={examples}", f"training.epochs={epochs}",
                      "tracking.log_model=false", "tracking.log_images=false"])
    with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        # Pre-create the experiment with its artifacts in tmp; MLflow's default would be ./mlruns of the cwd.
        tracking.client(uri).create_experiment(spec.document["tracking"]["experiment"],
                                               artifact_location=Path(tmp, "artifacts").as_uri())
        with instrumented_xrun(tracking_mode) as (clock, log_seconds):
            result = train.run_experiment(spec, tracking_uri=uri, data_dir=data, quiet=True,
                                          console=Console(file=io.StringIO()))
    seconds = clock.seconds()
    return {"epoch_seconds": seconds, "images_per_second": [clock.train_examples / s for s in seconds],
            "logged_images_per_second": list(result.history.get("images_per_second", [])),
            "log_seconds": log_seconds, "test_accuracy": result.test_accuracy}


def seed_model(model: str):
    """The Keras model the seed notebook wrote by hand (model1); other models are taken from xrun's compiler.

    Either way it must have exactly the parameters of the model xrun builds from the YAML, or the race is unfair.
    """
    import keras

    from runner.compiler import build_model
    from runner.spec import load_spec

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


def keras_training(model: str, examples: int, epochs: int, data: str | None) -> dict:
    """The seed notebook's loop: float arrays, one-hot labels, model.fit with the test set as validation."""
    import keras
    import numpy as np

    from runner.data import load_dataset

    fresh_session()
    keras.utils.set_random_seed(0)
    mnist = load_dataset("mnist", data)
    x_train = mnist.x_train[:examples].astype("float32")[..., None] / 255.0
    x_test = mnist.x_test[:examples].astype("float32")[..., None] / 255.0
    y_train = keras.utils.to_categorical(mnist.y_train[:examples], 10)
    y_test = keras.utils.to_categorical(mnist.y_test[:examples], 10)
    net = seed_model(model)
    net.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7))
    clock = epoch_clock_class()()
    # verbose left at its default as in the notebook; its progress bar goes to a buffer, not the terminal.
    with contextlib.redirect_stdout(io.StringIO()):
        history = net.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, validation_data=(x_test, y_test),
                          callbacks=[clock])
    seconds = clock.seconds()
    return {"epoch_seconds": seconds, "images_per_second": [examples / s for s in seconds],
            "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
            "params": int(net.count_params()), "jit_compile": bool(net.jit_compile)}


def steady(run: dict, key: str = "images_per_second") -> list[float]:
    return run[key][1:]  # epoch 1 includes tracing and compilation


def measure_overhead(model: str, sizes: dict, data: str | None) -> list[Measurement]:
    n, epochs, reps = sizes["train_examples"], sizes["epochs"], sizes["reps"]
    xrun_runs, keras_runs = [], []
    for _ in range(reps):  # interleaved: xrun, keras, xrun, keras
        xrun_runs.append(xrun_training(model, n, epochs, data))
        keras_runs.append(keras_training(model, n, epochs, data))
    xs = [v for r in xrun_runs for v in steady(r)]
    ks = [v for r in keras_runs for v in steady(r)]
    pair_ratios = [median(steady(a)) / median(steady(b)) for a, b in zip(xrun_runs, keras_runs)]
    ratio = median(xs) / median(ks)
    return [Measurement(
        "overhead", f"training {model}: xrun vs model.fit(NumPy) ({n} ex x {epochs} ep, x{reps})", "img/s",
        median(xs), median(ks), ratio, "xrun/keras", ">= 1.0", ratio >= 1.0,
        spread=f"pairs {spread(pair_ratios, '{:.2f}')}; epochs xrun {spread(xs, '{:.0f}')}, "
               f"keras {spread(ks, '{:.0f}')}",
        samples={"xrun": xrun_runs, "keras": keras_runs, "pair_ratios": pair_ratios},
        notes="steady-state epochs only (epoch 1 dropped); epoch = start to start, incl. validation and callbacks")]


# --- 2. augmentation pipeline ----------------------------------------------------------------------------------

def xrun_augment_rate(x, y, batches: int) -> float:
    from runner import pipeline

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

    from runner.data import load_dataset

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
    from runner import tracking

    epoch_logs = {"loss": 0.1, "accuracy": 0.97, "val_loss": 0.05, "val_accuracy": 0.98, "learning_rate": 1.0,
                  "epoch_seconds": 10.0, "images_per_second": 2000.0}
    with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        tracking.client(uri).create_experiment("bench", artifact_location=Path(tmp, "artifacts").as_uri())
        run = tracking.Run(uri, "bench", "log-metrics")
        out = []
        for step in range(calls):
            started = time.perf_counter()
            run.log_metrics(epoch_logs, step=step + 1)
            out.append((time.perf_counter() - started) * 1000)
        run.end("FINISHED")
        shutil.rmtree(run.artifact_dir, ignore_errors=True)  # the Run made it; run_experiment would remove it
    return out


def measure_tracking(model: str, sizes: dict, data: str | None) -> list[Measurement]:
    n, epochs = sizes["tracking_examples"], sizes["tracking_epochs"]
    on_runs, off_runs = [], []
    for _ in range(sizes["tracking_reps"]):  # interleaved: logging on, off, on, off
        on_runs.append(xrun_training(model, n, epochs, data, tracking_mode="on"))
        off_runs.append(xrun_training(model, n, epochs, data, tracking_mode="off"))
    epoch_on = [v for r in on_runs for v in steady(r, "epoch_seconds")]
    epoch_off = [v for r in off_runs for v in steady(r, "epoch_seconds")]
    logging = [v for r in on_runs for v in r["log_seconds"]]
    # In-run: the time TrackEpochs spends per epoch, over the epoch it delays. Exact, unlike the A/B below.
    inrun_pct = 100 * median(logging) / median(epoch_on)
    ab_pct = 100 * (median(epoch_on) / median(epoch_off) - 1)
    pair_ab = [100 * (median(steady(a, "epoch_seconds")) / median(steady(b, "epoch_seconds")) - 1)
               for a, b in zip(on_runs, off_runs)]
    calls = log_metrics_ms(sizes["log_calls"])
    return [
        Measurement("tracking", f"MLflow logging per epoch, timed in the run ({n} ex x {epochs} ep)", "s/epoch",
                    median(epoch_on), median(epoch_on) - median(logging), inrun_pct, "overhead %", "< 2%",
                    inrun_pct < 2.0, spread=f"log {spread([1000 * v for v in logging], '{:.1f}')} ms",
                    samples={"log_seconds": logging, "epoch_seconds_on": epoch_on, "runs_on": on_runs},
                    notes="xrun = epoch wall time with logging; baseline = the same minus TrackEpochs.on_epoch_end"),
        Measurement("tracking_ab", "epoch time, logging on vs off (A/B runs)", "s/epoch",
                    median(epoch_on), median(epoch_off), ab_pct, "overhead %", "info", None,
                    spread=f"pairs {spread(pair_ab, '{:+.1f}')}%",
                    samples={"epoch_seconds_on": epoch_on, "epoch_seconds_off": epoch_off, "runs_off": off_runs,
                             "pair_overhead_percent": pair_ab},
                    notes="noise on a shared machine exceeds the effect; see the in-run row"),
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
                "import_tensorflow": [sys.executable, "-c", "import tensorflow"],
                # What-if: the same validate with the fix proposed in bench/README.md, monkeypatched in.
                "validate_patched": [sys.executable, str(Path(__file__).resolve()), PATCHED_VALIDATE, *files]}
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
            ("help", "`xrun --help`", "< 0.1"),
            ("validate_patched", "what-if: validate with the schema fix (monkeypatched)", "info")):
        ratio = median(times[name]) / tf_s
        rows.append(Measurement(f"startup_{name}", f"{label} vs `python -c 'import tensorflow'`", "s",
                                median(times[name]), tf_s, ratio, "xrun/import", target,
                                ratio < 0.1 if target != "info" else None,
                                spread=f"xrun {spread(times[name], '{:.2f}')}, tf {spread(tf_times, '{:.2f}')}",
                                samples={"xrun": times[name], "import_tensorflow": tf_times}))
    return rows


# --- what-if: a faster `xrun validate`, tried without editing runner/ ------------------------------------------

PATCHED_VALIDATE = "--validate-patched"


def apply_validate_fix() -> None:
    """The change proposed for runner/spec.py and runner/schema.py, applied by monkeypatching.

    1. spec._item_checker: top-level layers were already checked, as part of the document, by schema.check(document);
       only layers expanded from a block (`via` set, parameters substituted) need the per-item check.
    2. schema._validator: `$defs/layer` picks a layer's schema through ~30 `if type == X then $ref` branches, and
       jsonschema evaluates every branch for every layer; a custom keyword jumps straight to `$defs/layers/<type>`.
       The error messages are unchanged (the same sub-schema reports the same errors).
    """
    import copy
    import functools

    import jsonschema

    from runner import schema, spec

    checker = spec._item_checker

    def item_checker(locate):
        check = checker(locate)
        return lambda item, origin, via: check(item, origin, via) if via else None

    def dispatch(validator, refs, instance, _schema):
        if isinstance(instance, dict) and instance.get("type") in refs:
            yield from validator.descend(instance, {"$ref": refs[instance["type"]]})

    Dispatching = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-dispatch": dispatch})

    @functools.lru_cache(maxsize=8)
    def validator(pointer: str):
        root = copy.deepcopy(schema.schema())
        layer = root["$defs"]["layer"]
        layer["x-dispatch"] = {b["if"]["properties"]["type"]["const"]: b["then"]["$ref"] for b in layer.pop("allOf")}
        return Dispatching({"$ref": pointer, "$defs": root["$defs"]} if pointer != "#" else root)

    spec._item_checker = item_checker
    schema._validator = validator


def validate_patched(files: list[str]) -> int:
    apply_validate_fix()
    from runner.cli import main as xrun_main

    return xrun_main(["validate", *files])


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
    if any(n != "startup" for n in names):
        from runner.runtime import import_tensorflow

        import_tensorflow()  # quietly, as xrun does, before anything touches Keras
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
    if argv[:1] == [PATCHED_VALIDATE]:  # the what-if subprocess of the startup item
        return validate_patched(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (CI smoke run)")
    parser.add_argument("--only", choices=ITEMS, action="append", help="run only this item (repeatable)")
    parser.add_argument("--model", default="model1", help="seed experiment to train (default model1)")
    parser.add_argument("--data-dir", help="folder with mnist.npz (default $XRUN_DATA_DIR or the shared copy)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results.json, "
                                                 "bench/results.quick.json with --quick)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    out = args.out or ROOT / "bench" / ("results.quick.json" if args.quick else "results.json")
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
