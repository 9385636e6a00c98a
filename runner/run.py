"""Run one experiment end to end: data, pipeline, model, fit, test, artifacts, and a run that always ends."""

from __future__ import annotations

import io
import platform
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

from runner import __version__
from runner.errors import XrunError
from runner.language.datasets import DATASETS
from runner.language.spec import Spec
from runner.model import summary as model_summary
from runner.model.compiler import build_model
from runner.records import plots, store
from runner.training import build, callbacks, distribute, pipeline
from runner.training.data import load_dataset
from runner.training.settings import Settings, applied, settings_for


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
    model_uri: str | None = None                       # the MLflow model, when tracking.log_model is on
    model: keras.Model | None = field(default=None, repr=False)  # the trained model, for notebooks and tests


@dataclass
class _Job:
    """One run in progress: what it was asked, where it records, and the model so far (which an interrupted or
    failed run still saves)."""

    run: store.Run
    spec: Spec
    document: dict                 # resolved, with the seed actually used
    settings: Settings
    console: Console
    quiet: bool
    extra_callbacks: list
    model: keras.Model | None = None
    display: callbacks.Display | None = None
    strategy: tf.distribute.Strategy | None = None
    checkpoint: Path | None = None  # a resumed run's saved model, optimizer state included
    initial_epoch: int = 0          # epochs a resumed run had completed
    backup_dir: str | None = None   # where a multi-worker job keeps the state a restarted worker resumes from


# --- the run --------------------------------------------------------------------------------------------

def run_experiment(spec: Spec, *, tracking_uri: str | None = None, data_dir: str | None = None,
                   console: Console | None = None, quiet: bool = False, parent_run_id: str | None = None,
                   run_name: str | None = None, tags: dict | None = None, backup_dir: str | None = None,
                   resume: str | None = None,
                   extra_callbacks: list[keras.callbacks.Callback] = ()) -> Result:
    """Train `spec` and record it in MLflow; the run ends FINISHED, FAILED (error, NaN) or KILLED (Ctrl-C, SIGTERM).

    `run_name` and `tags` name a sweep's child run and say which variant it is.
    `extra_callbacks` are Keras callbacks from code rather than the YAML (notebooks, sweeps, tests); they run
    after xrun's own per-epoch bookkeeping, so they see learning_rate and epoch_seconds in the logs.
    """
    started = time.perf_counter()
    # The strategy comes first: a multi-worker one must be set up before TensorFlow runs any operation.
    strategy = distribute.strategy_for(spec.document["training"].get("distribute", "auto"))
    uri = store.tracking_uri(tracking_uri)
    settings = settings_for(spec.document["training"])
    document = _resolved(spec, settings)
    checkpoint, done_epochs = None, 0
    if resume:
        run, checkpoint, done_epochs = store.Run.resume(uri, resume)
    elif distribute.is_chief():
        run = store.Run(uri, document["tracking"]["experiment"], run_name or spec.name,
                           document.get("description", ""), parent_run_id=parent_run_id,
                           tags={**_static_tags(spec, document, settings), **(tags or {})})
    else:
        run = store.NullRun()
    job = _Job(run, spec, document, settings, console or Console(stderr=True), quiet or not distribute.is_chief(),
               list(extra_callbacks), strategy=strategy, backup_dir=backup_dir, checkpoint=checkpoint,
               initial_epoch=done_epochs)
    with _ends_run(job), applied(settings):
        if resume:
            run.set_tags({"xrun.resumed_from_epoch": done_epochs, "xrun.end_reason": ""})
        else:
            _log_inputs(job)
        result = _train(job, data_dir)
    result.wall_seconds = time.perf_counter() - started
    return result


def _resolved(spec: Spec, settings: Settings) -> dict:
    """The config as it runs: with the seed actually used, so the resolved YAML reproduces the run."""
    document = dict(spec.document)
    document["training"] = {**document["training"], "seed": settings.seed}
    return document


@contextmanager
def _ends_run(job: _Job):
    """Whatever happens inside, the MLflow run ends (never stays RUNNING) and the exception goes on unchanged."""
    previous = _terminate_as_interrupt()
    try:
        yield
    except KeyboardInterrupt as exc:
        _end(job, "KILLED", "interrupted by SIGTERM" if str(exc) == SIGTERM_MESSAGE else "interrupted (Ctrl-C)")
        raise
    except BaseException as exc:
        _end(job, "FAILED", f"{type(exc).__name__}: {exc}", error=exc)
        raise
    else:
        job.run.end("FINISHED")
    finally:
        _restore_sigterm(previous)
        shutil.rmtree(job.run.artifact_dir, ignore_errors=True)


SIGTERM_MESSAGE = "SIGTERM"


def _terminate_as_interrupt() -> tuple[bool, object]:
    """SIGTERM (a scheduler or `kill`) ends the run like Ctrl-C: KILLED, with what it has saved.

    Returns whether the handler went in, and the handler it replaced.
    """
    def handler(signum, frame):
        raise KeyboardInterrupt(SIGTERM_MESSAGE)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return False, previous
    return True, previous


def _restore_sigterm(installed: tuple[bool, object]) -> None:
    done, previous = installed
    if done:  # None means a handler set outside Python; the default is the nearest we can put back
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _end(job: _Job, status: str, reason: str, error: BaseException | None = None) -> None:
    """Save what the run has, as far as possible, then end it; a failure while saving must not hide the
    original exception, nor leave the run RUNNING."""
    if job.display is not None:
        job.display.close()
    try:
        job.run.set_tags({"xrun.end_reason": reason[:500]})
        if error is not None:
            job.run.log_text("".join(traceback.format_exception(error)), "error.txt")
        _save_partial(job)
    except Exception as exc:  # noqa: BLE001 - best effort: the run's own exception is the one to report
        job.console.print(f"xrun: could not save everything of the unfinished run: {type(exc).__name__}: {exc}",
                          highlight=False, soft_wrap=True)
    finally:
        job.run.end(status)


def _save_partial(job: _Job) -> None:
    """The model as it is (checkpoints/last.keras), plus what the YAML's callbacks have written so far."""
    if job.model is not None:
        path = job.run.artifact_dir / "checkpoints" / "last.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        job.model.save(path)
    _log_checkpoints(job.run)


def _static_tags(spec: Spec, document: dict, settings: Settings) -> dict:
    return {**(document["tracking"].get("tags") or {}),
            "xrun.version": __version__, "tensorflow.version": tf.__version__, "keras.version": keras.__version__,
            "python.version": platform.python_version(), "device": settings.device,
            "precision": settings.precision, "jit_compile": settings.jit_compile,
            "deterministic": settings.deterministic, "experiment.file": str(spec.path), **_git_tags(spec.path)}


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


def _log_inputs(job: _Job) -> None:
    run, spec, settings = job.run, job.spec, job.settings
    run.log_text(spec.text, f"config/{spec.path.name}")
    run.log_text(yaml.safe_dump(job.document, sort_keys=False), "config/resolved.yaml")
    run.log_text("\n".join(spec.overrides) + ("\n" if spec.overrides else ""), "config/overrides.txt")
    for base in spec.files[1:]:
        run.log_text(base.read_text(), f"config/bases/{base.name}")
    params = store.flatten(job.document)
    params.update({"runtime.precision": settings.precision, "runtime.jit_compile": settings.jit_compile,
                   "runtime.steps_per_execution": settings.steps_per_execution,
                   "runtime.deterministic": settings.deterministic, "runtime.seed_given": settings.seed_given,
                   "runtime.overrides": " ".join(spec.overrides)})
    run.log_params(params)


def _train(job: _Job, data_dir) -> Result:
    data_spec, training = job.document["data"], job.document["training"]
    dataset = load_dataset(data_spec["dataset"], data_dir)
    job.run.set_tags({"dataset.fingerprint": dataset.fingerprint, "dataset.source": dataset.source,
                      **_validation_tags(data_spec)})
    splits = pipeline.split(dataset, data_spec)
    spe = pipeline.steps_per_epoch(len(splits.x_train), training["batch_size"])
    with job.strategy.scope():  # variables (weights, optimizer slots, metrics) live where the strategy says
        model = job.model = build_model(job.spec)
        _compile(model, job.document, job.settings, spe)
        if job.checkpoint is not None:
            _restore(model, job.checkpoint)
    if job.checkpoint is None:
        _log_model_facts(job.run, model, job.spec, splits)
        _log_distribution(job)
    history = _fit(job, splits, spe)
    return _finish(job, dataset, splits, history)


def _restore(model: keras.Model, checkpoint: Path) -> None:
    """Weights and optimizer state (step count, moments, schedule position) of an interrupted run."""
    saved = keras.saving.load_model(checkpoint, compile=True)
    model.set_weights(saved.get_weights())
    model.optimizer.build(model.trainable_variables)
    if saved.optimizer is not None and len(saved.optimizer.variables) == len(model.optimizer.variables):
        for mine, theirs in zip(model.optimizer.variables, saved.optimizer.variables):
            mine.assign(theirs)


def _log_distribution(job: _Job) -> None:
    """`training.batch_size` is the global batch: each of the replicas takes an equal share of it."""
    replicas = job.strategy.num_replicas_in_sync
    job.run.log_params({"runtime.distribute": type(job.strategy).__name__, "runtime.replicas": replicas,
                        "runtime.workers": distribute.worker_count(),
                        "runtime.global_batch_size": job.document["training"]["batch_size"],
                        "runtime.per_replica_batch_size": job.document["training"]["batch_size"] // replicas})


def _validation_tags(data_spec: dict) -> dict:
    if data_spec.get("validation") == "test":
        return {"xrun.validation": "test set (model selection saw the test data, as in the seed notebook)"}
    return {"xrun.validation": data_spec.get("validation", "split")}


def _compile(model, document: dict, settings: Settings, spe: int) -> None:
    model.compile(optimizer=build.optimizer(document["optimizer"], spe, document["training"]["epochs"]),
                  loss=build.loss(document["loss"]), metrics=list(document.get("metrics", ["accuracy"])),
                  jit_compile=settings.jit_compile, steps_per_execution=settings.steps_per_execution)


def _log_model_facts(run, model, spec: Spec, splits: pipeline.Splits) -> None:
    info = model_summary.model_info(model, spec.graph)
    run.log_params({"model.total_params": info["total_params"], "model.trainable_params": info["trainable_params"],
                    "model.non_trainable_params": info["non_trainable_params"],
                    "data.train_examples": len(splits.x_train),
                    "data.val_examples": 0 if splits.x_val is None else len(splits.x_val),
                    "data.test_examples": len(splits.x_test)})
    run.log_text(_summary_text(info, spec), "model_summary.txt")
    run.log_dict(info, "model_summary.json")


def _summary_text(info: dict, spec: Spec) -> str:
    # The table of `xrun summary`, rendered wide enough for every column: Keras's own summary draws on a console
    # as wide as the terminal (80 columns without one), which cuts off the shapes and parameter counts.
    out = io.StringIO()
    console = Console(file=out, width=160, color_system=None, force_terminal=False, highlight=False)
    model_summary.print_model_table(info, title=f"{spec.name}  ({spec.path.name})", console=console)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def _fit(job: _Job, splits: pipeline.Splits, spe: int) -> dict:
    document, training = job.document, job.document["training"]
    one_hot = _one_hot_classes(document)
    train_ds = pipeline.train_dataset(splits.x_train, splits.y_train, batch_size=training["batch_size"],
                                      shuffle=training.get("shuffle", True), seed=job.settings.seed,
                                      augmentation=document.get("augmentation"), one_hot_classes=one_hot)
    val_ds = None if splits.x_val is None else pipeline.eval_dataset(
        splits.x_val, splits.y_val, batch_size=training["batch_size"], one_hot_classes=one_hot)
    if distribute.worker_count() > 1:
        train_ds = distribute.shard_by_data(train_ds)
        val_ds = None if val_ds is None else distribute.shard_by_data(val_ds)
    nan_guard = callbacks.StopOnNaN()
    history = keras.callbacks.History()
    job.display = callbacks.Display(training["epochs"], spe, job.console, job.quiet)
    # EpochMetrics first: callbacks share one logs dict per epoch, so everything after it (the YAML's CSVLogger,
    # MLflow, the display) sees learning_rate and epoch_seconds.
    cbs = [callbacks.EpochMetrics(len(splits.x_train)), nan_guard,
           *build.callbacks(document.get("callbacks") or [], job.run.artifact_dir), *job.extra_callbacks,
           callbacks.TrackEpochs(job.run), history, job.display, *_backup(job)]
    job.model.fit(train_ds, epochs=training["epochs"], steps_per_epoch=spe, validation_data=val_ds, shuffle=False,
                  initial_epoch=job.initial_epoch,
                  callbacks=cbs, verbose=0)
    if nan_guard.where:
        raise XrunError(f"the loss became NaN or infinite at {nan_guard.where}; training stopped",
                        where=str(job.spec.path), hint="lower optimizer.learning_rate, or add clipnorm")
    return history.history


def _backup(job: _Job) -> list:
    """Multi-worker jobs save their state each epoch, so a worker that restarts rejoins where the job was."""
    if distribute.worker_count() < 2:
        return []
    # One folder per worker: Keras 3's BackupAndRestore writes one file, which workers sharing a disk would fight
    # over; the weights are the same on every worker, so each restores its own copy.
    folder = Path(job.backup_dir or Path(".xrun-backup") / job.spec.name) / f"worker-{distribute.worker_index()}"
    return [keras.callbacks.BackupAndRestore(str(folder))]


def _one_hot_classes(document: dict) -> int | None:
    classes = DATASETS[document["data"]["dataset"]]["num_classes"]
    return classes if build.wants_one_hot(document["loss"]) else None


def _finish(job: _Job, dataset, splits: pipeline.Splits, history: dict) -> Result:
    run, model, document = job.run, job.model, job.document
    test_ds = pipeline.eval_dataset(splits.x_test, splits.y_test, batch_size=document["training"]["batch_size"],
                                    one_hot_classes=_one_hot_classes(document))
    scores = model.evaluate(test_ds, return_dict=True, verbose=0)
    predicted = model.predict(test_ds, verbose=0).argmax(axis=1)
    result = _result(run, history, scores, job.initial_epoch)
    result.model = model
    run.log_metrics(_final_metrics(result), step=result.epochs_run)
    _log_figures(run, document, dataset, splits, history, predicted)
    _log_checkpoints(run)
    if document["tracking"].get("log_model", True):
        sample = pipeline.to_inputs(splits.x_test[:8])
        result.model_uri = run.log_model(model, sample, model.predict(sample, verbose=0))
    return result


def _result(run, history: dict, scores: dict, initial_epoch: int = 0) -> Result:
    """Epoch numbers count from the run's start, a resumed run's earlier epochs included."""
    trained = len(history.get("loss", []))
    epochs_run = initial_epoch + trained
    val = history.get("val_accuracy")
    best = int(np.argmax(val)) + 1 if val else (int(np.argmin(history["loss"])) + 1 if trained else None)
    best = best + initial_epoch if best is not None else None
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
    """What the YAML's ModelCheckpoint and CSVLogger wrote into the run's folder."""
    for path in sorted(run.artifact_dir.glob("checkpoints/*")):
        run.log_file(path, "checkpoints")
    for path in sorted(run.artifact_dir.glob("history.csv")):
        run.log_file(path)
