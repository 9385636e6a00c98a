"""xrun's performance harness: is the runner as fast as the plain Keras it replaces?

    python bench/run.py            # full run (~11 min on 2 idle CPU cores), writes bench/results.json
    python bench/run.py --quick    # smoke run (~2.5 min), writes bench/results.quick.json
    python bench/run.py --only augment

Six measurements, each against the baseline the seed notebooks used:

  overhead   images/s of xrun training a seed model vs `model.fit` on NumPy arrays, steady-state epochs
             (with the median step and the validation pass, and what-ifs: xrun without op determinism, xrun in
             float32)
  augment    images/s of xrun's tf.data augmentation vs the legacy ImageDataGenerator (seed-002 settings)
  tracking   share of the epoch time spent logging to MLflow (in-run timer; on/off epochs; one log_metrics call)
  startup    wall time of `xrun validate` / `xrun --help` vs `python -c "import tensorflow"`
  utilisation  achieved training FLOP/s of model1 and model8 as a share of the machine's own limit, measured in
             the same process (bench/utilisation.py), and where each step's time goes
  levers     levers a hand-written script does not pull (XLA, steps_per_execution, uint8 input, thread pools,
             oneDNN, op determinism), each against the script's own step, side by side (bench/levers.py)

Timings are only reported, never asserted: the exit status is 0 whatever the numbers, 1 if a measurement crashed.
Paired measurements are interleaved so that load from other processes hits both sides alike: the training sides
run in separate processes that take turns epoch by epoch (TakeTurns), the others alternate A, B, A, B.
xrun is instrumented by monkeypatching (its callbacks, settings_for, the schema validator), never edited.

This file holds the measurements and the command line; the process harness they share (Measurement, TakeTurns
and the side processes, the patching, the table and JSON) is bench/harness.py.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from harness import (
    Measurement,
    in_turns,
    instrumented_xrun,
    load_average,
    machine_info,
    median,
    spread,
    table,
    with_settings,
    without_nan,
    xrun_command,
)

ROOT = Path(__file__).resolve().parent.parent
ITEMS = ("overhead", "augment", "tracking", "startup", "utilisation", "levers")

# Seed 002's ImageDataGenerator settings (experiments/seed002_method1.yaml).
AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1, "height_shift_range": 0.1, "shear_range": 0.2,
                "zoom_range": 0.1, "fill_mode": "nearest", "gaussian_noise": 0.05}
BATCH = 128

# Sizes per mode. Training runs: examples x epochs x repetitions per side; epoch 1 (tracing) is never counted.
SIZES = {
    "full": {"train_examples": 20000, "epochs": 4, "reps": 3,
             "tracking_examples": 10000, "tracking_epochs": 7, "tracking_reps": 2,
             "augment_examples": 10000, "augment_batches": 150, "augment_reps": 3,
             "startup_reps": 5, "startup_warmup": True, "log_calls": 30,
             "utilisation": [("model1", 8192, 3), ("model8", 2048, 3)],
             "levers": ["--models", "model1", "model8", "--rounds", "8", "--chunk", "8"]},
    "quick": {"train_examples": 2000, "epochs": 2, "reps": 1,
              "tracking_examples": 2000, "tracking_epochs": 3, "tracking_reps": 1,
              "augment_examples": 2000, "augment_batches": 20, "augment_reps": 1,
              "startup_reps": 3, "startup_warmup": False, "log_calls": 10,
              "utilisation": [("model1", 1024, 2)],
              "levers": ["--models", "model1", "--rounds", "2", "--chunk", "4", "--process-models"]},
    # Only to exercise the code (bench/gpu.sh --smoke, its test): the numbers mean nothing at this size.
    "smoke": {"train_examples": 256, "epochs": 2, "reps": 1,
              "tracking_examples": 256, "tracking_epochs": 3, "tracking_reps": 1,
              "augment_examples": 256, "augment_batches": 2, "augment_reps": 1,
              "startup_reps": 1, "startup_warmup": False, "log_calls": 2,
              "utilisation": [("model1", 256, 2)],
              "levers": ["--models", "model1", "--rounds", "1", "--chunk", "1", "--process-models"]},
}



def data_dir(explicit: str | None) -> str | None:
    """--data-dir, else $XRUN_DATA_DIR, else None: the loader's own verified sources (Keras cache, PyPI mirror)."""
    return explicit or os.environ.get("XRUN_DATA_DIR") or None


# --- 1. runner overhead ----------------------------------------------------------------------------------------

def xrun_training(clock, model: str, examples: int, epochs: int, data: str | None, log: str = "all",
                  settings: dict | None = None) -> dict:
    """Train experiments/<model>.yaml through run_experiment into a throw-away SQLite store; per-epoch numbers.
    `settings`: a what-if, machine settings changed from what xrun decides (harness.with_settings)."""
    from rich.console import Console

    from runner.language.spec import load_spec
    from runner.records import store
    from runner.running import run as train

    spec = load_spec(ROOT / "experiments" / f"{model}.yaml",
                     [f"data.limit={examples}", f"training.epochs={epochs}",
                      "tracking.log_model=false", "tracking.log_images=false"])
    with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        # Pre-create the experiment with its artifacts in tmp; MLflow's default would be ./mlruns of the cwd.
        store.creating_client(uri).create_experiment(spec.document["tracking"]["experiment"],
                                               artifact_location=Path(tmp, "artifacts").as_uri())
        with instrumented_xrun(clock, log) as log_seconds, with_settings(settings):
            used = train.settings_for(spec.training)
            result = train.run_experiment(train.RunRequest(spec, tracking_uri=uri, data_dir=data, quiet=True,
                                          console=Console(file=io.StringIO())))
    return {**clock.numbers(), "settings_used": {"precision": used.precision, "deterministic": used.deterministic,
                                                 "steps_per_execution": used.steps_per_execution},
            "logged_images_per_second": list(result.history.get("images_per_second", [])),
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


keras_training.plain_tensorflow = True  # its process imports TensorFlow as the script would (harness.side_main)

# What a side process can run, by name. Module-level functions: the spawned process imports them by reference
# (this file, __main__ here, is re-imported there as __mp_main__), so no lambdas or nested functions.
SIDES = {"xrun": xrun_training, "keras": keras_training}


def steady(run: dict, key: str = "images_per_second") -> list[float]:
    return run[key][1:]  # epoch 1 includes tracing and compilation


# What-ifs beside xrun as it is: xrun with one of its machine settings changed (harness.with_settings).
WHAT_IFS = {
    "nondet": ({"deterministic": False}, "op determinism off"),
    "float32": ({"precision": "float32"}, "precision float32"),
}


def measure_overhead(model: str, sizes: dict, data: str | None) -> list[Measurement]:
    """Plain Keras, xrun, and xrun with each what-if change train side by side, one epoch each in turn."""
    n, epochs = sizes["train_examples"], sizes["epochs"]
    args = {"model": model, "examples": n, "epochs": epochs, "data": data}
    sides = {"keras": ("keras", args), "xrun": ("xrun", args),
             **{name: ("xrun", {**args, "settings": changes}) for name, (changes, _) in WHAT_IFS.items()}}
    runs = {side: [] for side in sides}
    for _ in range(sizes["reps"]):
        for side, numbers in in_turns(SIDES, sides).items():
            runs[side].append(numbers)
    per_epoch = {key: {side: [v for r in side_runs for v in steady(r, key)] for side, side_runs in runs.items()}
                 for key in ("images_per_second", "step_ms", "val_seconds", "start_seconds")}
    rate, step = per_epoch["images_per_second"], per_epoch["step_ms"]
    val, start = per_epoch["val_seconds"], per_epoch["start_seconds"]
    # Epoch k of one side against epoch k of the side that ran just before or after it (speed ratios: > 1 = faster).
    pairs = {side: [a / b for a, b in zip(rate[side], rate["keras"])] for side in sides}
    step_pairs = {side: [b / a for a, b in zip(step[side], step["keras"])] for side in sides}
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
                    median(step["xrun"]), median(step["keras"]), median(step_pairs["xrun"]), "keras/xrun", ">= 1.2",
                    median(step_pairs["xrun"]) >= 1.2, spread=f"pairs {spread(step_pairs['xrun'], '{:.2f}')}",
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
        *[_what_if_row(name, runs, rate, step, pairs, step_pairs) for name in WHAT_IFS],
    ]


def _what_if_row(name: str, runs: dict, rate: dict, step: dict, pairs: dict, step_pairs: dict) -> Measurement:
    """What-if `name` against the Keras script, and (in the spread) against xrun as it is."""
    changes, label = WHAT_IFS[name]
    vs_xrun = [a / b for a, b in zip(rate[name], rate["xrun"])]
    step_vs_xrun = [b / a for a, b in zip(step[name], step["xrun"])]
    return Measurement(
        f"overhead_{name}", f"what-if: xrun with {label} vs model.fit(NumPy)", "img/s",
        median(rate[name]), median(rate["keras"]), median(pairs[name]), "xrun/keras", "info", None,
        spread=f"pairs {spread(pairs[name], '{:.2f}')}; vs xrun as is: epochs {median(vs_xrun):.2f} "
               f"({spread(vs_xrun, '{:.2f}')}), steps {median(step_vs_xrun):.2f} ({spread(step_vs_xrun, '{:.2f}')})",
        samples={"xrun_what_if": runs[name], "settings": changes, "pair_ratios": pairs[name],
                 "step_pair_ratios": step_pairs[name], "pair_ratios_vs_xrun": vs_xrun,
                 "step_pair_ratios_vs_xrun": step_vs_xrun, "step_ms": step[name]},
        notes=f"runner.running.run.settings_for monkeypatched: {changes}; ratio vs xrun < 1: xrun as is is faster")


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
        store.creating_client(uri).create_experiment("bench", artifact_location=Path(tmp, "artifacts").as_uri())
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
    runs = [in_turns(SIDES, {"xrun": ("xrun", args)})["xrun"] for _ in range(sizes["tracking_reps"])]
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
    commands = {"validate": xrun_command() + ["validate", "--no-data", *files], "help": xrun_command() + ["--help"],
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


# --- 5. utilisation: how much of the machine's arithmetic training uses ------------------------------------------

def measure_utilisation(sizes: dict, data: str | None) -> list[Measurement]:
    """bench/utilisation.py for each (model, examples, epochs), each in its own process, one after another."""
    rows = []
    for model, examples, epochs in sizes["utilisation"]:
        with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
            out = Path(tmp, "utilisation.json")
            command = [sys.executable, str(ROOT / "bench" / "utilisation.py"), "--model", model,
                       "--examples", str(examples), "--epochs", str(epochs), "--out", str(out),
                       *(["--data-dir", data] if data else [])]
            wall_time(command)
            rows.append(_utilisation_row(json.loads(out.read_text())))
    return rows


def _utilisation_row(u: dict) -> Measurement:
    where = ", ".join(f"{name.replace('_', ' ')} {1000 * seconds:.1f}"
                      for name, seconds in u["where_the_step_goes"].items())
    return Measurement(
        f"utilisation_{u['model']}", f"training {u['model']} ({u['compute_dtype']}, {u['examples']} ex): achieved "
        f"FLOP/s vs this machine's limit ({u['limit']}, same process)", "GFLOP/s", u["achieved_flops"] / 1e9,
        u["peaks_flops"][u["limit"]] / 1e9, u["share_of_limit"], "share", "info", None,
        spread=f"step {1000 * u['step_seconds']['fit']:.1f} ms = {where} ms", samples=u,
        notes="FLOPs counted per layer from the built model (bench/flops.py), 3x the forward per training image; "
              "peaks: fastest of repeated calls, median of before and after the training")


# --- 6. levers a hand-written script does not pull ---------------------------------------------------------------

def measure_levers(sizes: dict, data: str | None) -> list[Measurement]:
    """bench/levers.py: XLA, steps_per_execution, uint8 input, threads, oneDNN, determinism against the script."""
    with tempfile.TemporaryDirectory(prefix="xrun-bench-") as tmp:
        out = Path(tmp, "levers.json")
        wall_time([sys.executable, str(ROOT / "bench" / "levers.py"), *sizes["levers"], "--out", str(out),
                   *(["--data-dir", data] if data else [])])
        return [Measurement(
            f"lever_{r['model']}_{r['lever']}", f"training step {r['model']}: {r['lever']} vs the Keras script "
            f"({r['how']})", "ms/step", r["lever_step_ms"], r["script_step_ms"], r["speedup"], "script/lever", "info",
            None, spread=f"wall {r['speedup_spread']}; CPU time {r['cpu_speedup']:.2f}x ({r['cpu_speedup_spread']})",
            samples=r, notes="ratio > 1: the lever is faster; same float32 arithmetic as the script")
            for r in json.loads(out.read_text())["rows"]]


def run_items(names: list[str], model: str, sizes: dict, data: str | None) -> tuple[list[Measurement], dict]:
    """Each item on its own: one that crashes is reported and the others still run."""
    if "augment" in names:  # the only item that runs TensorFlow in this process (training runs in side processes)
        from runner.training.settings import import_tensorflow

        import_tensorflow()  # quietly, as xrun does
    measure = {"overhead": lambda: measure_overhead(model, sizes, data),
               "augment": lambda: measure_augment(sizes, data),
               "tracking": lambda: measure_tracking(model, sizes, data),
               "startup": lambda: measure_startup(sizes),
               "utilisation": lambda: measure_utilisation(sizes, data),
               "levers": lambda: measure_levers(sizes, data)}
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
