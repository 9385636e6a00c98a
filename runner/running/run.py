"""Run one experiment end to end: data, pipeline, model, fit, test, artifacts, and a run that always ends."""

from __future__ import annotations

import io
import os
import platform
import shutil
import signal
import subprocess
import sys
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
from runner.errors import SIGTERM_MESSAGE, InterruptedWhenComplete, XrunError
from runner.language.config import Config, resolve
from runner.language.spec import Spec
from runner.model import standalone
from runner.model import summary as model_summary
from runner.model.compiler import build_model
from runner.records import local, names, plots, run_names, store
from runner.running import inputs
from runner.running import resume as resuming
from runner.running.request import RunRequest
from runner.training import build, callbacks, distribute, metrics, multilabel, phases, pipeline, seeds, sources, tta
from runner.training.forecast import Utilisation, check_fits
from runner.training.settings import applied, settings_for


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
    config: Config                 # the experiment with this run's decisions made (seed, precision, data facts)
    console: Console
    quiet: bool
    extra_callbacks: list
    model: keras.Model | None = None
    display: callbacks.Display | None = None
    strategy: tf.distribute.Strategy | None = None
    checkpoint: Path | None = None  # a resumed run's saved model, optimizer state included
    initial_epoch: int = 0          # epochs a resumed run had completed
    backup_dir: str | None = None   # where a multi-worker job keeps the state a restarted worker resumes from
    checkpoint_every: int = 1       # epochs between checkpoints to the journal (0: none)
    epochs_done: int = 0            # the last epoch completed, counted from the run's start
    saved_epoch: int = 0            # the epoch the journal's checkpoint holds (0: none yet)
    complete: bool = False          # everything is logged, the model too: an interrupt now changes nothing
    resumed: resuming.Plan | None = None


# --- the run --------------------------------------------------------------------------------------------

def run_experiment(request: RunRequest | Spec) -> Result:
    """Train what `request` asks (a bare Spec: with everything else as RunRequest's defaults) and record it in
    MLflow; the run ends FINISHED, FAILED (error, NaN) or KILLED (Ctrl-C, SIGTERM)."""
    started = time.perf_counter()
    request = request if isinstance(request, RunRequest) else RunRequest(request)
    spec = request.spec
    # The strategy comes first: a multi-worker one must be set up before TensorFlow runs any operation.
    strategy = distribute.strategy_for(spec.training.distribute)
    config = resolve(spec, settings_for(spec.training))  # every decision made, once
    with applied(config.settings):
        with strategy.scope():  # variables (weights, optimizer slots, metrics) live where the strategy says
            model = build_model(spec)  # a model that cannot be built fails here, before any run exists
        check_fits(config, model)  # so does a batch whose training would not fit in memory
        data = inputs.load(config, request.data_dir, model)  # so does data that cannot train it
        run, checkpoint, done_epochs = _open_run(config, request)
        job = _Job(run, config, request.console or Console(stderr=True),
                   request.quiet or not distribute.is_chief(), list(request.extra_callbacks), model=model,
                   strategy=strategy, backup_dir=request.backup_dir, checkpoint=checkpoint,
                   initial_epoch=done_epochs, checkpoint_every=request.checkpoint_every, epochs_done=done_epochs,
                   saved_epoch=done_epochs, resumed=request.resume)
        with _ends_run(job):
            if request.resume:
                _log_resume(job)
            else:
                _log_inputs(job)
            result = _train(job, data)
    result.wall_seconds = time.perf_counter() - started
    return result


def _open_run(config: Config, request: RunRequest) -> tuple:
    """The MLflow run: reopened (a dead one ended KILLED first) or new; with the saved model and its epoch."""
    uri, plan = store.tracking_uri(request.tracking_uri), request.resume
    if plan:
        if plan.status == "RUNNING":
            store.end_dead(uri, plan.run_id)
        return store.Run.resume(uri, plan.run_id)
    if not distribute.is_chief():
        return store.NullRun(), None, 0
    name = request.run_name or run_names.run_name(config.name, config.overrides)
    run = store.Run(uri, config.tracking.experiment, name, config.description,
                    parent_run_id=request.parent_run_id, tags={**_static_tags(config), **request.tags})
    return run, None, 0


def _resolved_yaml(config: Config) -> str:
    """config/resolved.yaml: the config as it runs, the seed used and the precision `auto` chose here included (another
    CPU may choose otherwise), so the file reproduces the run."""
    return yaml.safe_dump(config.resolved(), sort_keys=False)


def _log_resume(job: _Job) -> None:
    """What this resume changed, on the run: the config it now runs (the earlier one kept beside it)."""
    run, plan = job.run, job.resumed
    run.set_tags({names.RESUMED_FROM_EPOCH: job.initial_epoch, names.END_REASON: "",
                  names.RESUME_CHANGES: resuming.changes_text(plan.changes) or "none"})
    if plan.changes:
        run.log_text(plan.recorded_text, names.RESOLVED_BEFORE_EPOCH.format(epoch=job.initial_epoch + 1))
        run.log_text(_resolved_yaml(job.config), names.RESOLVED_CONFIG)
        run.log_text("\n".join(job.config.overrides) + "\n", names.OVERRIDES)


@contextmanager
def _ends_run(job: _Job):
    """Whatever happens inside, the MLflow run ends (never stays RUNNING) and the exception goes on unchanged.

    What the store does not take stays in the run's journal, and the user is told, in one line, how to deliver it."""
    previous = _terminate_as_interrupt()
    try:
        yield
    except KeyboardInterrupt as exc:
        if job.complete:  # the model was fully logged: the run is done, whatever came after
            _end(job, "FINISHED", "")
            raise InterruptedWhenComplete(str(exc)) from None  # still an interrupt: a sweep or a script stops
        _end(job, "KILLED", "interrupted by SIGTERM" if str(exc) == SIGTERM_MESSAGE else "interrupted (Ctrl-C)")
        raise
    except BaseException as exc:
        _end(job, "FAILED", f"{type(exc).__name__}: {exc}", error=exc)
        raise
    else:
        _end(job, "FINISHED", "")
    finally:
        _restore_sigterm(previous)
        store.stopping(False)
        if isinstance(job.run, store.NullRun):
            shutil.rmtree(job.run.artifact_dir, ignore_errors=True)




def _terminate_as_interrupt() -> tuple[bool, dict]:
    """SIGTERM (a scheduler or `kill`) ends the run like Ctrl-C: KILLED, with what it has saved. The first of
    them stops the run; later ones wait, so a second Ctrl-C never cuts short the saving of the first.

    Returns whether the handlers went in, and the handlers they replaced.
    """
    def patient(signum, frame):
        print("xrun: stopping; saving the run first (it takes a moment)", file=sys.stderr, flush=True)

    def handler(signum, frame):
        signal.signal(signal.SIGINT, patient)
        signal.signal(signal.SIGTERM, patient)
        store.stopping()
        raise KeyboardInterrupt(SIGTERM_MESSAGE if signum == signal.SIGTERM else "")
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in previous:
            signal.signal(s, handler)
    except ValueError:  # not the main thread: leave signals alone
        return False, previous
    return True, previous


def _restore_sigterm(installed: tuple[bool, dict]) -> None:
    done, previous = installed
    if done:  # None means a handler set outside Python; the default is the nearest we can put back
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _end(job: _Job, status: str, reason: str, error: BaseException | None = None) -> None:
    """Save what the run has to its journal (no signal can cut that short), then deliver it and end the run; a
    failure while saving must not hide the original exception, nor leave the run RUNNING."""
    if job.display is not None:
        job.display.close()
    if status == "KILLED":
        store.stopping()  # a scheduler waits seconds before SIGKILL: a hung store must not take them all
    if isinstance(job.run, store.NullRun):
        return
    with store.interrupts_held():
        try:
            if error is not None:
                _write(job.run.artifact_dir / names.ERROR_FILE, "".join(traceback.format_exception(error)))
            _save_partial(job)
        except Exception as exc:  # noqa: BLE001 - best effort: the run's own exception is the one to report
            job.console.print(f"xrun: could not save everything of the unfinished run: {type(exc).__name__}: "
                              f"{exc}", highlight=False, soft_wrap=True)
    try:
        _deliver(job, status, reason)
    except store.StoreFailed as exc:
        _store_failed(job, exc, status)
    except KeyboardInterrupt:  # stopped again while delivering: the journal holds the rest
        job.console.print(f"xrun: stopped while sending run {job.run.run_id[:8]} to the store; the rest is in "
                          f"{job.run.journal.folder}; deliver it with: {_sync_command(job)}", highlight=False,
                          soft_wrap=True)
    if status == "KILLED" and job.saved_epoch:
        job.console.print(f"xrun: run {job.run.run_id[:8]} stopped after epoch {job.saved_epoch}; resume it with: "
                          f"{_resume_command(job)}", highlight=False, soft_wrap=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _deliver(job: _Job, status: str, reason: str) -> None:
    """Send the journal's files (the checkpoint, the YAML callbacks' files, error.txt) and end the run."""
    run = job.run
    try:
        if reason:
            run.set_tags({names.END_REASON: reason[:500]})
        _log_checkpoints(run)
    except Exception as exc:  # noqa: BLE001 - the journal keeps them; run.end says so
        run.keep("the run's files", exc)
    run.end(status, reason[:500])


def _store_failed(job: _Job, exc: store.StoreFailed, status: str) -> None:
    """One line: what failed, where the run and its model are, and the command that delivers them."""
    message = f"{exc}; deliver it with: {_sync_command(job)}"
    if status == "FINISHED":
        raise XrunError(message, where=str(job.config.path)) from None
    job.console.print(f"xrun: {message}", highlight=False, soft_wrap=True)


def _store_option(job: _Job) -> str:
    """`--tracking-uri URI` unless the run is in the store a plain `xrun` here would use."""
    plain = names.TRACKING_URI_ENV not in os.environ and job.run.uri == local.default_uri()
    return "" if plain else f" --tracking-uri {job.run.uri}"


def _sync_command(job: _Job) -> str:
    return "xrun sync" + _store_option(job)


def _resume_command(job: _Job) -> str:
    return f"xrun {job.config.path} --resume {job.run.run_id[:8]}" + _store_option(job)


def _save_partial(job: _Job) -> None:
    """The model of the last completed epoch is the journal's checkpoint; a model trained past it (checkpoints
    every N epochs, or none) is saved as it is. A model that never trained from the checkpoint replaces nothing."""
    if job.model is not None and job.epochs_done > job.saved_epoch:
        _checkpoint(job, job.epochs_done)


def _checkpoint(job: _Job, epoch: int) -> None:
    with store.interrupts_held():  # a second Ctrl-C waits: a half-written checkpoint would resume nothing
        job.run.set_tags({names.RANDOM_STATE: seeds.states_text(job.model, epoch)})  # dropout's, for a resume
        job.run.journal.save_model(job.model, epoch)
    job.saved_epoch = epoch


def _static_tags(config: Config) -> dict:
    spec, settings = config, config.settings
    return {**(spec.tracking.tags or {}),
            names.VERSION: __version__, "tensorflow.version": tf.__version__, "keras.version": keras.__version__,
            "python.version": platform.python_version(), "device": settings.device,
            "precision": settings.precision, "jit_compile": settings.jit_compile,
            "deterministic": settings.deterministic, "onednn": settings.onednn, names.EXPERIMENT_FILE: str(spec.path), **_git_tags(spec.path)}


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
    run, spec, settings = job.run, job.config.spec, job.config.settings
    run.log_text(spec.text, names.CONFIG.format(name=spec.path.name))
    run.log_text(_resolved_yaml(job.config), names.RESOLVED_CONFIG)
    run.log_text("\n".join(spec.overrides) + ("\n" if spec.overrides else ""), names.OVERRIDES)
    for base in spec.files[1:]:
        run.log_text(base.read_text(), names.BASE_CONFIG.format(name=base.name))
    params = store.flatten(job.config.resolved())
    params.update({"runtime.precision": settings.precision, "runtime.jit_compile": settings.jit_compile,
                   "runtime.steps_per_execution": settings.steps_per_execution,
                   "runtime.deterministic": settings.deterministic, "runtime.seed_given": settings.seed_given,
                   "runtime.onednn": settings.onednn,
                   "runtime.overrides": " ".join(spec.overrides)})
    run.log_params(params)


def _train(job: _Job, data: inputs.Inputs) -> Result:
    config, dataset, splits = job.config, data.dataset, data.splits
    if not job.quiet:
        job.console.print(data.summary_line(), highlight=False, soft_wrap=True)
    for warning in data.warnings:
        job.console.print(warning, highlight=False, soft_wrap=True)
    if dataset.skipped:
        job.console.print(f"xrun: left out {len(dataset.skipped)} unreadable image(s) (data.on_bad_file: skip): "
                          f"{sources.named_files(dataset.skipped)}; the list is the run's {names.SKIPPED_FILES}",
                          highlight=False, soft_wrap=True)
        job.run.log_text("\n".join(dataset.skipped) + "\n", names.SKIPPED_FILES)
    job.run.set_tags({**dataset.tags(), **_validation_tags(config.data.validation)})
    job.run.log_text(data.counts_csv(), names.CLASS_COUNTS)
    job.run.log_dataset(dataset.name, dataset.source, dataset.fingerprint, dataset.kind,
                        {"train": len(splits.y_train), "test": len(splits.y_test),
                         "val": 0 if splits.y_val is None else len(splits.y_val)})
    spe = pipeline.steps_per_epoch(len(splits.x_train), config.training.batch_size)
    with job.strategy.scope():  # variables (weights, optimizer slots, metrics) live where the strategy says
        model = job.model  # built before the run was created
        _compile(model, config, spe, splits.class_names)
        switch = phases.schedule(model, config)  # training.phases: the callback that switches them, or none
        if job.checkpoint is not None:
            (phases.restore if switch else _restore)(model, job.checkpoint)
            seeds.restore(model, job.run.tags.get(names.RANDOM_STATE), job.initial_epoch)
    if job.checkpoint is None:
        _log_model_facts(job.run, model, config, splits)
        _log_distribution(job)
    history = _fit(job, splits, spe, data.class_weight, switch)
    return _finish(job, dataset, splits, history)


def _restore(model: keras.Model, checkpoint: Path) -> None:
    """Weights and optimizer state (step count, moments, schedule position) of an interrupted run."""
    saved = keras.saving.load_model(checkpoint, compile=True, custom_objects=metrics.CUSTOM_OBJECTS)
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
                        "runtime.global_batch_size": job.config.training.batch_size,
                        "runtime.per_replica_batch_size": job.config.training.batch_size // replicas})


def _validation_tags(validation: str) -> dict:
    if validation == "test":
        return {names.VALIDATION: "test set (model selection saw the test data, as in the seed notebook)"}
    return {names.VALIDATION: validation}


def _compile(model, config: Config, spe: int, class_names: tuple[str, ...]) -> None:
    settings = config.settings
    model.compile(optimizer=build.optimizer(config.optimizer, spe, config.training.epochs),
                  loss=build.loss(config.loss), metrics=metrics.metrics(config, class_names),
                  jit_compile=settings.jit_compile, steps_per_execution=settings.steps_per_execution)


def _log_model_facts(run, model, spec: Config, splits: pipeline.Splits) -> None:
    info = model_summary.model_info(model, spec.graph)
    run.log_params({"model.total_params": info["total_params"], "model.trainable_params": info["trainable_params"],
                    "model.non_trainable_params": info["non_trainable_params"],
                    "data.train_examples": len(splits.x_train),
                    "data.val_examples": 0 if splits.x_val is None else len(splits.x_val),
                    "data.test_examples": len(splits.x_test)})
    run.log_text(_summary_text(info, spec), names.MODEL_SUMMARY_TEXT)
    run.log_dict(info, names.MODEL_SUMMARY_JSON)


def _summary_text(info: dict, spec: Config) -> str:
    # The table of `xrun summary`, rendered wide enough for every column: Keras's own summary draws on a console
    # as wide as the terminal (80 columns without one), which cuts off the shapes and parameter counts.
    out = io.StringIO()
    console = Console(file=out, width=160, color_system=None, force_terminal=False, highlight=False)
    model_summary.print_model_table(info, title=f"{spec.name}  ({spec.path.name})", console=console)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def _fit(job: _Job, splits: pipeline.Splits, spe: int, class_weight: dict | None, switch: list) -> dict:
    config, training = job.config, job.config.training
    one_hot = _one_hot_classes(config, splits)
    train_ds = pipeline.train_dataset(splits.x_train, splits.y_train, batch_size=training.batch_size,
                                      shuffle=training.shuffle, seed=training.seed,
                                      augmentation=config.augmentation, one_hot_classes=one_hot,
                                      balanced=training.sampling == "balanced", start_batch=job.initial_epoch * spe)
    val_ds = None if splits.x_val is None else pipeline.eval_dataset(
        splits.x_val, splits.y_val, batch_size=training.batch_size, one_hot_classes=one_hot)
    if distribute.worker_count() > 1:
        train_ds = distribute.shard_by_data(train_ds)
        val_ds = None if val_ds is None else distribute.shard_by_data(val_ds)
    nan_guard = callbacks.StopOnNaN()
    stop_at = [callbacks.StopAt(training.stop_at)] if training.stop_at else []
    history = keras.callbacks.History()
    job.display = callbacks.Display(training.epochs, spe, job.console, job.quiet)
    # EpochMetrics first: callbacks share one logs dict per epoch, so everything after it (the YAML's CSVLogger,
    # MLflow, the display) sees learning_rate and epoch_seconds. The epoch's metrics are sent and its checkpoint
    # written before the YAML's callbacks, which can fail (a full disk under ModelCheckpoint or CSVLogger). A phase
    # switch goes before them all: the rate EpochMetrics reports is the phase's, and everything sees the phase.
    cbs = [*switch, callbacks.EpochMetrics(len(splits.x_train)), nan_guard, _EpochsDone(job),
           callbacks.TrackEpochs(job.run), _Checkpoints(job), *stop_at,
           *build.callbacks(config.callbacks, job.run.artifact_dir), *job.extra_callbacks,
           history, job.display, *_backup(job), *_ema_swap(config), _utilisation(job)]
    job.model.fit(train_ds, epochs=training.epochs, steps_per_epoch=spe, validation_data=val_ds, shuffle=False,
                  initial_epoch=job.initial_epoch, class_weight=class_weight,
                  callbacks=cbs, verbose=0)
    if nan_guard.where:
        raise XrunError(f"the loss became NaN or infinite at {nan_guard.where}; training stopped",
                        where=str(job.config.path), hint="lower optimizer.learning_rate, or add clipnorm")
    if stop_at and stop_at[0].reached_at:
        reached = f"{training.stop_at.describe()} at epoch {stop_at[0].reached_at}"
        job.run.set_tags({names.STOPPED_AT: reached, names.END_REASON: f"reached {reached} (training.stop_at)"})
    return history.history


def _utilisation(job: _Job) -> Utilisation:
    """Logs the run's achieved GFLOP/s and their share of this machine's measured rate when training ends."""
    per_call = job.config.training.batch_size * job.config.settings.steps_per_execution  # a callback per execution
    return Utilisation(per_call, lambda gflops, share: job.run.log_metrics(
        {names.GFLOPS: gflops, names.PEAK_SHARE: share}, step=job.epochs_done))


class _EpochsDone(keras.callbacks.Callback):
    """Counts the epochs completed before anything else hears of the epoch, so an interrupt while its metrics
    are sent still saves its model."""

    def __init__(self, job: _Job):
        super().__init__()
        self.job = job

    def on_epoch_end(self, epoch, logs=None):
        self.job.epochs_done = epoch + 1


class _Checkpoints(keras.callbacks.Callback):
    """Every `checkpoint_every` epochs, the model and optimizer state go to the run's journal, so a kill (even
    SIGKILL) loses at most the epochs since; the epoch count is kept whatever the schedule."""

    def __init__(self, job: _Job):
        super().__init__()
        self.job = job

    def on_epoch_end(self, epoch, logs=None):
        job = self.job
        every = job.checkpoint_every
        if every and job.run.journal is not None and (epoch + 1 - job.initial_epoch) % every == 0:
            _checkpoint(job, epoch + 1)


def _ema_swap(config: Config) -> list:
    """With optimizer.use_ema the model ends training with the average (Keras's finalize_variable_values), so
    it is the average that is validated each epoch too: val_ metrics, the best epoch and EarlyStopping judge the
    model a run delivers. Swapped in for validation only, so checkpoints keep the weights training goes on from."""
    return [keras.callbacks.SwapEMAWeights()] if config.optimizer.arguments.get("use_ema") else []


def _backup(job: _Job) -> list:
    """Multi-worker jobs save their state each epoch, so a worker that restarts rejoins where the job was."""
    if distribute.worker_count() < 2:
        return []
    # One folder per worker: Keras 3's BackupAndRestore writes one file, which workers sharing a disk would fight
    # over; the weights are the same on every worker, so each restores its own copy.
    folder = Path(job.backup_dir or Path(".xrun-backup") / job.config.name) / f"worker-{distribute.worker_index()}"
    return [keras.callbacks.BackupAndRestore(str(folder))]


def _one_hot_classes(config: Config, splits: pipeline.Splits) -> int | None:
    classes = len(splits.class_names)
    return classes if build.wants_one_hot(config.loss) else None


def _finish(job: _Job, dataset, splits: pipeline.Splits, history: dict) -> Result:
    run, model, config = job.run, job.model, job.config
    test_ds = pipeline.eval_dataset(splits.x_test, splits.y_test, batch_size=config.training.batch_size,
                                    one_hot_classes=_one_hot_classes(config, splits))
    scoring = _scoring_model(job)
    scores = scoring.evaluate(test_ds, return_dict=True, verbose=0)
    trained = len(history.get("loss", []))
    history = _whole_history(job, history)
    result = _result(run, history, scores)
    result.model = model
    if trained and run.journal is not None:  # the model as it finished (EarlyStopping may have restored another)
        _checkpoint(job, result.epochs_run)
    run.log_metrics(_final_metrics(result), step=result.epochs_run)
    _log_tta(job, scoring, test_ds, splits, result.epochs_run)
    _log_multi_label(job, scoring, test_ds, splits, result.epochs_run)
    _log_figures(run, config, dataset, splits, history, scoring, test_ds)
    _log_checkpoints(run)
    logged = run.tags.get(names.MODEL_URI)
    with run.held():  # logged and marked complete, or neither: an interrupt in between must not mark it KILLED
        if config.tracking.log_model and not (logged and not trained):  # a resume that trained nothing logs
            try:                                                             # no second model
                result.model_uri = _log_model(run, model, config, dataset, splits.x_test[:8])
                run.set_tags({names.MODEL_URI: result.model_uri})
            except Exception as exc:
                if not store.is_store_error(exc):
                    raise
                run.keep("the MLflow model", exc)  # the trained model is in the journal: checkpoints/last.keras
        job.complete = True
    return result


def _log_multi_label(job: _Job, model: keras.Model, test_ds, splits: pipeline.Splits, step: int) -> None:
    """Multi-label data: the test split's micro and macro F1, exact AUC and each label's scores (at 0.5)."""
    if not job.config.facts.multi_label:
        return
    found = multilabel.scores(splits.y_test, model.predict(test_ds, verbose=0), splits.class_names)
    job.run.log_metrics(multilabel.test_metrics(found), step=step)
    job.run.log_text(multilabel.per_label_csv(found), names.TEST_PER_LABEL)


def _scoring_model(job: _Job) -> keras.Model:
    """The model the test scores come from: the trained one, or after mixed-precision training its float32 copy,
    which is the model logged and served, so `xrun evaluate` of the logged model gives the recorded numbers."""
    if standalone.computes_in_float32(job.model):
        return job.model
    copy = standalone.float32_copy(job.model)
    copy.compile(loss=build.loss(job.config.loss), metrics=metrics.named(job.config))  # scores only
    return copy


def _log_tta(job: _Job, model: keras.Model, test_ds, splits: pipeline.Splits, step: int) -> None:
    """training.tta: the test set scored again on the average over the augmentation's flips and shifts."""
    if not job.config.training.tta:
        return
    views, loss, accuracy = tta.score_dataset(model, test_ds, splits.y_test, job.config.augmentation,
                                              tuple(splits.x_test.shape[1:3]))
    job.run.set_tags({names.TTA: ", ".join(v.name for v in views)})
    job.run.log_metrics({names.TTA_METRIC.format(metric="test_loss"): loss,
                         names.TTA_METRIC.format(metric="test_accuracy"): accuracy}, step=step)


def _whole_history(job: _Job, history: dict) -> dict:
    """A resumed run's epochs before the resume (from the store) followed by this process's, so the curves, the
    best epoch and the plots cover the whole run."""
    if not job.initial_epoch:
        return history
    earlier = job.run.epoch_history(job.initial_epoch)
    keys = list(history) if history.get("loss") else [k for k in earlier if k not in FINAL_METRICS]
    return {k: earlier.get(k, []) + list(history.get(k, [])) for k in keys}


def _log_model(run, model: keras.Model, config: Config, dataset, sample: np.ndarray) -> str:
    """The model as it is used: raw uint8 images in (training's scaling inside it), class probabilities out, named
    as its run is (the experiment, and what --set changed), with its class names and test scores."""
    name = config.name
    dtype = "uint8" if sample.dtype == np.uint8 else "float32"  # stored pixels, or floats the pipeline takes as is
    sample = sample.astype(dtype)
    served = standalone.standalone(model, sample.shape[1:], name, dtype=dtype)
    facts = standalone.metadata(name, dataset.name, dataset.class_names, sample.shape[1:], dtype=dtype,
                                multi_label=config.facts.multi_label)
    return run.log_model(served, sample, served.predict(sample, verbose=0), metadata=facts,
                         name=run_names.run_name(name, config.overrides),
                         linked_metrics=("test_loss", "test_accuracy"))


FINAL_METRICS = ("test_loss", "test_accuracy", "epochs_run", "best_epoch", "best_val_accuracy")


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


def _log_figures(run, config: Config, dataset, splits, history: dict, model, test_ds) -> None:
    if not config.tracking.log_images:
        return  # nor the test set's second pass the confusion matrix needs
    predicted = model.predict(test_ds, verbose=0).argmax(axis=1)
    classes = list(dataset.class_names)
    run.log_figure(plots.learning_curves(history, title=config.name), names.LEARNING_CURVES_PLOT)
    if config.facts.multi_label:
        return  # no one class per image, so no confusion matrix: test_per_label.csv has each label's scores
    figure, matrix = plots.confusion_matrix(splits.y_test, predicted, classes)
    run.log_figure(figure, names.CONFUSION_MATRIX_PLOT)
    run.log_text(_matrix_text(matrix, classes), names.CONFUSION_MATRIX_CSV)
    run.log_figure(plots.misclassified(splits.x_test, splits.y_test, predicted, classes), names.MISCLASSIFIED_PLOT)
    preview = pipeline.augmented_preview(splits.x_train, config.augmentation, config.training.seed)
    if preview is not None:
        run.log_figure(plots.augmented_samples(*preview), names.AUGMENTED_SAMPLES_PLOT)


def _matrix_text(matrix: np.ndarray, names: list[str]) -> str:
    rows = [",".join(["true\\pred", *names])]
    rows += [",".join([name, *map(str, row)]) for name, row in zip(names, matrix.tolist())]
    return "\n".join(rows) + "\n"


def _log_checkpoints(run) -> None:
    """What the YAML's ModelCheckpoint and CSVLogger wrote into the run's folder, the journal's checkpoint
    (checkpoints/last.keras) and a failed run's error.txt."""
    for path in sorted(run.artifact_dir.glob(f"{names.CHECKPOINTS}/*")):
        if ".partial" not in path.name:  # a save cut short by a kill is no checkpoint
            run.log_file(path, names.CHECKPOINTS)
    for name in ("history.csv", names.ERROR_FILE):
        for path in sorted(run.artifact_dir.glob(name)):
            run.log_file(path)
