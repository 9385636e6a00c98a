"""Exported TFLite models (float32, float16, int8) against the Keras model on this CPU: size, MNIST test accuracy,
latency of one image and time for the 10,000 test images, all measured side by side in one process.

    .venv/bin/python bench/export.py                        # 2 epochs on all of MNIST -> bench/results.export.json
    .venv/bin/python bench/export.py --limit 512 --epochs 1 --rounds 1 --calls 20 --out /tmp/export.json

A small CNN (conv 16, conv 32, dense 64, Yogi) is trained through `runner.running.run.run_experiment` into a temporary
SQLite store, loaded back from MLflow as `xrun export` loads it (`runner.trained.use.load`), and exported with
`runner.trained.export.export` (each export checked against Keras before it is written, as the command does). Then every
model answers the same images:

  size         the .keras file (the standalone model: uint8 pixels in, probabilities out) or the .tflite file
  accuracy     on all 10,000 MNIST test images (whatever --limit trained on), and the largest |difference| of
               any probability from Keras's, and the share of images with Keras's top class
  batch of 1   the median of --calls single-image calls per round: Keras `predict_on_batch` (its compiled
               predict function) and, for reference, a direct eager call `model(x)`; TFLite `invoke` on an
               interpreter allocated for one image (set_tensor, invoke, get_tensor)
  10,000       the 10,000 test images in batches of 500: Keras `predict(batch_size=500)`, TFLite `invoke` on an
               interpreter allocated for 500 (the median over rounds)

Rounds interleave the models (keras, f32, f16, int8, keras, ...) so that load from other processes hits all
alike. TFLite runs with its default threads (as `runner.trained.export` reads it). Timings are reported, never asserted;
the exit status is 0 whatever the numbers, 1 if training or an export failed.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

BATCH = 500                 # the batch of the 10,000-image pass, for every model alike
CHECK_IMAGES = 1000         # test images each export is checked on before it is written
QUANTIZATIONS = {"tflite_float32": None, "tflite_float16": "float16", "tflite_int8": "int8"}

EXPERIMENT = {
    "name": "bench_cnn",
    "description": "A small CNN for bench/export.py: conv 16, conv 32, dense 64, Yogi.",
    "data": {"dataset": "mnist", "validation": "none"},
    "model": {"layers": [
        {"type": "Conv2D", "filters": 16, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 64, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]},
    "optimizer": {"type": "Yogi", "learning_rate": 0.001},
    "loss": "CategoricalCrossentropy",
    "training": {"epochs": 2, "batch_size": 64, "seed": 0},
    "tracking": {"experiment": "bench-export", "log_model": True, "log_images": False},
}


# --- training and exporting -----------------------------------------------------------------------------

def train(folder: Path, epochs: int, limit: int | None, data_dir: str | None):
    """The run's Result, trained into a fresh SQLite store in `folder`, and that store's URI."""
    from rich.console import Console

    from runner.language.spec import load_spec
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    path = folder / "bench_cnn.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    overrides = [f"training.epochs={epochs}"] + ([f"data.limit={limit}"] if limit else [])
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_experiment(RunRequest(load_spec(path, overrides), tracking_uri=uri, data_dir=data_dir, quiet=True,
                            console=Console(file=io.StringIO())))
    if result.status != "FINISHED":
        raise RuntimeError(f"the training run ended {result.status}")
    return result, uri


def export_all(model, folder: Path, check_data, data_dir: str | None) -> dict:
    """name -> runner.trained.export.Exported, each TFLite variant written by the project's own export."""
    from runner.trained import export as ex

    # max_drop 1: the bench measures int8's accuracy change on all 10,000 images rather than refusing it here
    # (the refusal itself is tested in tests/test_use.py).
    return {name: ex.export(model, "tflite", check_data, quantize=quantize, output=folder / f"{name}.tflite",
                            max_drop=1.0, data_dir=data_dir)
            for name, quantize in QUANTIZATIONS.items()}


# --- the runners: one object per model, the same three calls ----------------------------------------------

class KerasRunner:
    def __init__(self, keras_model, shape: tuple[int, ...]):
        self.model = keras_model
        self.model.predict_on_batch(_zeros((1, *shape)))  # builds the compiled predict function once

    def one(self, image):
        return self.model.predict_on_batch(image)

    def direct(self, image):
        return self.model(image, training=False)

    def all(self, images):
        return self.model.predict(images, batch_size=BATCH, verbose=0)


class TFLiteRunner:
    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.single, self.batched = _interpreter(path, (1, *shape)), _interpreter(path, (BATCH, *shape))

    def one(self, image):
        return _invoke(self.single, image)

    def all(self, images):
        import numpy as np

        return np.concatenate([_invoke(self.batched, images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def _interpreter(path: Path, shape: tuple[int, ...]):
    import tensorflow as tf

    with warnings.catch_warnings():  # "deprecated, use ai_edge_litert": TF 2.21 still ships it, and it works
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], shape)
    interpreter.allocate_tensors()
    return interpreter


def _invoke(interpreter, pixels):
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(source["index"], pixels.astype(source["dtype"], copy=False))
    interpreter.invoke()
    return interpreter.get_tensor(sink["index"])


def _zeros(shape):
    import numpy as np

    return np.zeros(shape, dtype=np.uint8)


# --- measuring --------------------------------------------------------------------------------------------

def measure(runners: dict, pixels, rounds: int, calls: int) -> dict:
    """name -> {"one": [ms per call], "direct": [...] (Keras), "all": [s per pass]}, rounds interleaved."""
    times = {name: {"one": [], "all": []} | ({"direct": []} if hasattr(r, "direct") else {})
             for name, r in runners.items()}
    for _ in range(rounds):
        for name, runner in runners.items():
            for kind in ("one", "direct"):
                if kind in times[name]:
                    times[name][kind] += _per_call_ms(getattr(runner, kind), pixels, calls)
            started = time.perf_counter()
            runner.all(pixels)
            times[name]["all"].append(round(time.perf_counter() - started, 4))
    return times


def _per_call_ms(call, pixels, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        image = pixels[i % len(pixels)][None]
        started = time.perf_counter()
        call(image)
        out.append(round((time.perf_counter() - started) * 1000, 4))
    return out


def accuracy_row(probabilities, keras_probabilities, labels) -> dict:
    import numpy as np

    return {"test_accuracy": float(np.mean(probabilities.argmax(1) == labels)),
            "max_difference_from_keras": float(np.abs(probabilities - keras_probabilities).max()),
            "agreement_with_keras": float(np.mean(probabilities.argmax(1) == keras_probabilities.argmax(1)))}


class LoadSampler:
    """The 1-minute load average every few seconds while the bench runs, on a daemon thread."""

    def __init__(self, every: float = 5.0):
        self.samples, self.every, self.done = [], every, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self.done.is_set():
            self.samples.append(round(os.getloadavg()[0], 2))
            self.done.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


# --- the whole bench --------------------------------------------------------------------------------------

def bench(args, folder: Path) -> dict:
    """Train, export, measure: everything the JSON holds but the machine and the load."""
    from runner.trained import evaluate as ev
    from runner.trained import use

    result, uri = train(folder, args.epochs, args.limit, args.data_dir)
    trained_at = os.getloadavg()
    model = use.load(result.run_id, uri)
    test = ev.labelled_data(model, "mnist", None, args.data_dir)  # all 10,000, whatever the run trained on
    check = ev.Labelled(test.pixels[:CHECK_IMAGES], test.labels[:CHECK_IMAGES], f"{test.name}, first {CHECK_IMAGES}")
    exported = export_all(model, folder, check, args.data_dir)
    run_images = min(args.limit or len(test.labels), len(test.labels))  # the test images the run scored
    rows = measured_rows(model, folder, exported, test, args, run_images)
    return {"training": {"experiment": EXPERIMENT, "epochs": args.epochs, "limit": args.limit,
                         "run_id": result.run_id, "test_accuracy": result.test_accuracy,
                         "test_images": run_images, "wall_s": round(result.wall_seconds, 1)},
            "settings": {"test_images": len(test.labels), "batch": BATCH, "rounds": args.rounds, "calls": args.calls,
                         "check_images": CHECK_IMAGES, "tflite_threads": "default"},
            "load_after_training": trained_at, "models": rows}


def measured_rows(model, folder: Path, exported: dict, test, args, run_images: int) -> dict:
    """name -> its row: size, accuracy and differences on `test`, timings, and (exports) the export's check."""
    keras_file = folder / "bench_cnn.keras"
    model.keras.save(keras_file)
    runners = {"keras": KerasRunner(model.keras, model.image_shape)}
    runners |= {name: TFLiteRunner(e.path, model.image_shape) for name, e in exported.items()}
    times = measure(runners, test.pixels, args.rounds, args.calls)
    outputs = {name: runner.all(test.pixels) for name, runner in runners.items()}
    sizes = {"keras": keras_file.stat().st_size} | {name: e.bytes for name, e in exported.items()}
    rows = {name: _row(sizes[name], outputs[name], outputs["keras"], test.labels, times[name])
            for name in runners}
    for name, e in exported.items():
        rows[name]["export_check"] = vars(e.check)
    right = outputs["keras"][:run_images].argmax(1) == test.labels[:run_images]
    rows["keras"]["accuracy_on_the_runs_test_split"] = float(right.mean())
    return rows


def _row(size: int, probabilities, keras_probabilities, labels, times: dict) -> dict:
    row = {"bytes": size, "kib": round(size / 1024, 1)} | accuracy_row(probabilities, keras_probabilities, labels)
    row |= {"batch1_ms": round(statistics.median(times["one"]), 4),
            "all_s": round(statistics.median(times["all"]), 4), "samples": times}
    if "direct" in times:
        row["batch1_direct_ms"] = round(statistics.median(times["direct"]), 4)
    return row


LABELS = {"keras": "Keras (`.keras`)", "tflite_float32": "TFLite float32", "tflite_float16": "TFLite float16",
          "tflite_int8": "TFLite int8"}


def table(results: dict) -> str:
    n = results["settings"]["test_images"]
    lines = [f"| model | size | test accuracy ({n:,} images) | max diff. from Keras | batch of 1 | {n:,} images |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in results["models"].items():
        one = f"{row['batch1_ms']:.3f} ms"
        if "batch1_direct_ms" in row:
            one += f" (direct call {row['batch1_direct_ms']:.3f} ms)"
        lines.append(f"| {LABELS[name]} | {row['kib']:,.1f} KiB | {row['test_accuracy'] * 100:.2f} % | "
                     f"{row['max_difference_from_keras']:.2e} | {one} | {row['all_s']:.3f} s |")
    return "\n".join(lines)


def machine() -> dict:
    from importlib import metadata

    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": metadata.version("keras"), "xrun": metadata.version("xrun"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument("--limit", type=int, help="train on the first N MNIST images (default: all 60,000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--calls", type=int, default=200, help="single-image calls per model per round (default 200)")
    parser.add_argument("--data-dir", default=os.environ.get("XRUN_DATA_DIR"),
                        help="folder with mnist.npz (default $XRUN_DATA_DIR, else xrun's verified sources)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.export.json")
    args = parser.parse_args(argv)
    from runner.errors import XrunError
    from runner.training.settings import import_tensorflow

    import_tensorflow()
    load_start = os.getloadavg()
    try:
        with LoadSampler() as load, tempfile.TemporaryDirectory(prefix="xrun-bench-export-") as folder:
            results = bench(args, Path(folder))
    except (XrunError, RuntimeError) as exc:
        print(f"export bench: {exc}", file=sys.stderr)
        return 1
    results = {"machine": machine(), "load_average": {"start": load_start, "after_training":
               results.pop("load_after_training"), "end": os.getloadavg(), "samples_1min": load.samples}} | results
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    samples = load.samples
    print(f"load average (1 min) during the run: {min(samples)}..{max(samples)}, mean "
          f"{statistics.mean(samples):.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
