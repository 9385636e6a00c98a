"""Run one experiment end to end: data, pipeline, model, fit, test, artifacts, and a run that always ends."""

from __future__ import annotations

import platform
import secrets
import shutil
import signal
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml
from rich.console import Console

from . import __version__, build, callbacks, pipeline, plots, report, tracking
from .compiler import build_model
from .data import DATASETS, load_dataset
from .errors import XrunError
from .spec import Spec


@dataclass
class Settings:
    """How this run uses the machine, resolved from the YAML's `auto`s."""

    precision: str
    jit_compile: bool
    steps_per_execution: int
    device: str
    seed: int
    seed_given: bool


@dataclass
class Result:
    run_id: str
    status: str
    tracking_uri: str
    test_loss: float | None = None
    test_accuracy: float | None = None
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    epochs_run: int = 0
    wall_seconds: float = 0.0
    history: dict = field(default_factory=dict)


@dataclass
class _State:
    """What training has produced so far, so an interrupted or failed run can still save it."""

    model: keras.Model | None = None
    history: dict = field(default_factory=dict)


# --- settings -------------------------------------------------------------------------------------------

def settings_for(training: dict) -> Settings:
    gpus = tf.config.list_physical_devices("GPU")
    seed = training.get("seed")
    return Settings(
        precision=_precision(training.get("precision", "auto"), gpus),
        jit_compile=bool(gpus) if training.get("jit_compile", "auto") == "auto" else training["jit_compile"],
        steps_per_execution=_steps_per_execution(training.get("steps_per_execution", 1), gpus),
        device=_device_name(gpus),
        seed=seed if seed is not None else secrets.randbelow(2**31),
        seed_given=seed is not None)


def _precision(asked: str, gpus: list) -> str:
    if asked != "auto":
        return asked
    # Tensor cores (compute capability 7.0+) make float16 fast; elsewhere it only costs accuracy.
    capable = [g for g in gpus if tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
               >= (7, 0)]
    return "mixed_float16" if capable else "float32"


def _steps_per_execution(asked, gpus: list) -> int:
    # On a GPU, small models are limited by Python round-trips per step; on the CPU the step itself dominates.
    return asked if asked != "auto" else (32 if gpus else 1)


def _device_name(gpus: list) -> str:
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)}x GPU {details.get('device_name', '')}".strip()
    return f"CPU {platform.processor() or platform.machine()}"


def _apply(settings: Settings) -> None:
    keras.mixed_precision.set_global_policy(settings.precision)
    keras.utils.set_random_seed(settings.seed)


# --- the run --------------------------------------------------------------------------------------------

def run_experiment(spec: Spec, *, tracking_uri: str | None = None, data_dir: str | None = None,
                   console: Console | None = None, quiet: bool = False,
                   parent_run_id: str | None = None, run_name: str | None = None,
                   tags: dict | None = None) -> Result:
    """Train `spec` and record it in MLflow; the run ends FINISHED, FAILED (error, NaN) or KILLED (Ctrl-C, SIGTERM)."""
    console = console or Console(stderr=True)
    uri = tracking.tracking_uri(tracking_uri)
    settings = settings_for(spec.document["training"])
    document = _resolved(spec, settings)
    run = tracking.Run(uri, document["tracking"]["experiment"], run_name or spec.name,
                       document.get("description", ""), tags={**_static_tags(spec, settings), **(tags or {})},
                       parent_run_id=parent_run_id)
    state, started = _State(), time.perf_counter()
    with _ends_run(run, state):
        _log_inputs(run, spec, document, settings)
        result = _train(run, spec, document, settings, state, data_dir, console, quiet)
    result.wall_seconds = time.perf_counter() - started
    return result


def _resolved(spec: Spec, settings: Settings) -> dict:
    """The config as it runs: with the seed actually used, so the resolved YAML reproduces the run."""
    document = dict(spec.document)
    document["training"] = {**document["training"], "seed": settings.seed}
    return document


@contextmanager
def _ends_run(run: tracking.Run, state: _State):
    previous = _terminate_as_interrupt()
    try:
        yield
    except KeyboardInterrupt:
        _save_partial(run, state, "interrupted")
        run.end("KILLED")
        raise
    except BaseException as exc:
        _save_partial(run, state, f"{type(exc).__name__}: {exc}")
        run.log_text("".join(traceback.format_exception(exc)), "error.txt")
        run.end("FAILED")
        raise
    else:
        run.end("FINISHED")
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(run.artifact_dir, ignore_errors=True)


def _terminate_as_interrupt():
    """SIGTERM (a scheduler or `kill`) ends the run like Ctrl-C: KILLED, with what it has saved."""
    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return signal.getsignal(signal.SIGTERM)


def _save_partial(run: tracking.Run, state: _State, reason: str) -> None:
    run.set_tags({"xrun.end_reason": reason[:500]})
    if state.model is not None:
        path = run.artifact_dir / "checkpoints" / "last.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        state.model.save(path)
        run.log_file(path, "checkpoints")
    for path in sorted((run.artifact_dir / "checkpoints").glob("best*")):
        run.log_file(path, "checkpoints")


def _static_tags(spec: Spec, settings: Settings) -> dict:
    return {"xrun.version": __version__, "tensorflow.version": tf.__version__, "keras.version": keras.__version__,
            "python.version": platform.python_version(), "device": settings.device,
            "precision": settings.precision, "jit_compile": settings.jit_compile,
            "experiment.file": str(spec.path), **_git_tags(spec.path)}


def _git_tags(path: Path) -> dict:
    """The commit the experiment file is at, and whether it has uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", "-C", str(path.parent), *args], capture_output=True, text=True, timeout=5)
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", path.name)
    except (OSError, subprocess.SubprocessError):
        return {}
    if head.returncode != 0:
        return {}
    return {"git.commit": head.stdout.strip(), "git.dirty": bool(dirty.stdout.strip())}


def _log_inputs(run: tracking.Run, spec: Spec, document: dict, settings: Settings) -> None:
    run.log_text(spec.text, f"config/{spec.path.name}")
    run.log_text(yaml.safe_dump(document, sort_keys=False), "config/resolved.yaml")
    run.log_text("\n".join(spec.overrides) + ("\n" if spec.overrides else ""), "config/overrides.txt")
    for base in spec.files[1:]:
        run.log_text(base.read_text(), f"config/bases/{base.name}")
    params = tracking.flatten(document)
    params.update({"runtime.precision": settings.precision, "runtime.jit_compile": settings.jit_compile,
                   "runtime.steps_per_execution": settings.steps_per_execution,
                   "runtime.overrides": " ".join(spec.overrides)})
    run.log_params(params)


def _train(run, spec: Spec, document: dict, settings: Settings, state: _State, data_dir, console, quiet) -> Result:
    data_spec, training = document["data"], document["training"]
    dataset = load_dataset(data_spec["dataset"], data_dir)
    run.set_tags({"dataset.fingerprint": dataset.fingerprint, "dataset.source": dataset.source,
                  **_validation_tags(data_spec)})
    splits = pipeline.split(dataset, data_spec)
    _apply(settings)
    model = state.model = build_model(spec)
    spe = pipeline.steps_per_epoch(len(splits.x_train), training["batch_size"])
    _compile(model, document, settings, spe)
    _log_model_facts(run, model, spec, splits)
    history = _fit(run, model, document, settings, splits, spe, state, console, quiet)
    return _finish(run, model, document, dataset, splits, history)


def _validation_tags(data_spec: dict) -> dict:
    if data_spec.get("validation") == "test":
        return {"xrun.validation": "test set (model selection saw the test data, as in the seed notebook)"}
    return {"xrun.validation": data_spec.get("validation", "split")}


def _compile(model, document: dict, settings: Settings, spe: int) -> None:
    model.compile(optimizer=build.optimizer(document["optimizer"], spe, document["training"]["epochs"]),
                  loss=build.loss(document["loss"]), metrics=list(document.get("metrics", ["accuracy"])),
                  jit_compile=settings.jit_compile, steps_per_execution=settings.steps_per_execution)


def _log_model_facts(run, model, spec: Spec, splits: pipeline.Splits) -> None:
    info = report.model_info(model, spec.graph)
    run.log_params({"model.total_params": info["total_params"], "model.trainable_params": info["trainable_params"],
                    "model.non_trainable_params": info["non_trainable_params"],
                    "data.train_examples": len(splits.x_train),
                    "data.val_examples": 0 if splits.x_val is None else len(splits.x_val),
                    "data.test_examples": len(splits.x_test)})
    summary = []
    model.summary(print_fn=lambda line, **kw: summary.append(line), line_length=110)
    run.log_text("\n".join(summary), "model_summary.txt")
    run.log_dict(info, "model_summary.json")


def _fit(run, model, document: dict, settings: Settings, splits, spe: int, state: _State, console, quiet) -> dict:
    training, data_spec = document["training"], document["data"]
    one_hot = _one_hot_classes(document)
    train_ds = pipeline.train_dataset(splits.x_train, splits.y_train, batch_size=training["batch_size"],
                                      shuffle=training.get("shuffle", True), seed=settings.seed,
                                      augmentation=document.get("augmentation"), one_hot_classes=one_hot)
    val_ds = None if splits.x_val is None else pipeline.eval_dataset(
        splits.x_val, splits.y_val, batch_size=training["batch_size"], one_hot_classes=one_hot)
    nan_guard = callbacks.StopOnNaN()
    history = keras.callbacks.History()
    cbs = [*build.callbacks(document.get("callbacks") or [], run.artifact_dir),
           callbacks.EpochMetrics(len(splits.x_train)), nan_guard, callbacks.TrackEpochs(run), history,
           callbacks.Display(training["epochs"], spe, console, quiet)]
    state.history = history.history
    model.fit(train_ds, epochs=training["epochs"], steps_per_epoch=spe, validation_data=val_ds, shuffle=False,
              callbacks=cbs, verbose=0)
    if nan_guard.where:
        raise XrunError(f"the loss became NaN or infinite at {nan_guard.where}; training stopped",
                        path=document["name"], hint="lower optimizer.learning_rate, or add clipnorm")
    return history.history


def _one_hot_classes(document: dict) -> int | None:
    classes = DATASETS[document["data"]["dataset"]]["num_classes"]
    return classes if build.wants_one_hot(document["loss"]) else None


def _finish(run, model, document: dict, dataset, splits, history: dict) -> Result:
    batch = document["training"]["batch_size"]
    test_ds = pipeline.eval_dataset(splits.x_test, splits.y_test, batch_size=batch,
                                    one_hot_classes=_one_hot_classes(document))
    scores = model.evaluate(test_ds, return_dict=True, verbose=0)
    probabilities = model.predict(test_ds, verbose=0)
    predicted = probabilities.argmax(axis=1)
    result = _result(run, history, scores)
    run.log_metrics(_final_metrics(result), step=result.epochs_run)
    _log_figures(run, document, dataset, splits, history, predicted)
    _log_checkpoints(run)
    if document["tracking"].get("log_model", True):
        sample = pipeline.to_inputs(splits.x_test[:8])
        run.log_model(model, sample, model.predict(sample, verbose=0))
    return result


def _result(run, history: dict, scores: dict) -> Result:
    epochs_run = len(history.get("loss", []))
    val = history.get("val_accuracy")
    best = int(np.argmax(val)) + 1 if val else (int(np.argmin(history["loss"])) + 1 if epochs_run else None)
    return Result(run.run_id, "FINISHED", run.uri, test_loss=float(scores["loss"]),
                  test_accuracy=float(scores.get("accuracy", float("nan"))), best_epoch=best,
                  best_val_accuracy=float(max(val)) if val else None, epochs_run=epochs_run, history=history)


def _final_metrics(result: Result) -> dict:
    out = {"test_loss": result.test_loss, "test_accuracy": result.test_accuracy, "epochs_run": result.epochs_run}
    if result.best_epoch is not None:
        out["best_epoch"] = result.best_epoch
    if result.best_val_accuracy is not None:
        out["best_val_accuracy"] = result.best_val_accuracy
    return out


def _log_figures(run, document: dict, dataset, splits, history: dict, predicted: np.ndarray) -> None:
    if not document["tracking"].get("log_images", True):
        return
    names = list(dataset.class_names)
    run.log_figure(plots.learning_curves(history, title=document["name"]), "plots/learning_curves.png")
    figure, matrix = plots.confusion_matrix(splits.y_test, predicted, names)
    run.log_figure(figure, "plots/confusion_matrix.png")
    run.log_text(_matrix_text(matrix, names), "plots/confusion_matrix.csv")
    run.log_figure(plots.misclassified(splits.x_test, splits.y_test, predicted, names), "plots/misclassified.png")
    preview = pipeline.augmented_preview(splits.x_train, document.get("augmentation"), document["training"]["seed"])
    if preview is not None:
        run.log_figure(plots.augmented_samples(*preview), "plots/augmented_samples.png")


def _matrix_text(matrix: np.ndarray, names: list[str]) -> str:
    rows = [",".join(["true\\pred", *names])]
    rows += [",".join([name, *map(str, row)]) for name, row in zip(names, matrix.tolist())]
    return "\n".join(rows) + "\n"


def _log_checkpoints(run) -> None:
    for path in sorted(run.artifact_dir.glob("checkpoints/*")) + sorted(run.artifact_dir.glob("history.csv")):
        run.log_file(path, "checkpoints" if path.parent.name == "checkpoints" else None)
