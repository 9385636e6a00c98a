"""One sweep worker: ask the study for a trial, train it as a nested MLflow run, tell the study how it did; until
the study has nothing left (waiting, meanwhile, for trials that other workers run, in case their machine dies)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import optuna

from runner.errors import XrunError
from runner.records import names, query, store
from runner.sweep import study as st
from runner.sweep.lines import shown
from runner.sweep.space import Plan, Variant, choices, from_choice, short_name, variant_of
from runner.text import one_line

POLL_SECONDS = 2.0


def report_callback(trial: optuna.Trial, metric: str):
    """A Keras callback that reports the sweep's metric to the trial after each epoch; when the pruner says so,
    training stops there (after this epoch's metrics are recorded: the callbacks that log them run in the same
    epoch end). Keras is imported here, so a process that only coordinates (--jobs N) never loads TensorFlow."""
    import keras

    class Report(keras.callbacks.Callback):
        pruned_at: int | None = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(metric)
            if value is None:
                return
            trial.report(float(value), epoch + 1)
            if trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True
    return Report()


class Failed(Exception):
    """A trial whose experiment failed: Optuna records it FAIL, the sweep goes on."""


class Surplus(Exception):
    """A trial asked for when every point was already handed out: closed at once, nothing trained."""


@dataclass
class Worker:
    plan: Plan
    study: optuna.Study
    parent_id: str
    uri: str
    data_dir: str | None = None
    console: object = None
    say: Callable[[str], None] = lambda line: None
    trained: list = field(default_factory=list)   # (trial number, state) of the trials this worker ran

    def run(self) -> None:
        """Trials until none is left to start or running elsewhere."""
        waiting_said = False
        while True:
            now = st.progress(self.study, self.plan.space)
            if now.to_start:
                self.study.optimize(self.objective, n_trials=1, catch=(Failed, Surplus))
                waiting_said = False
            elif now.running:
                if not waiting_said:
                    self.say(f"waiting for {now.running} trial(s) running elsewhere (retried here if their worker "
                             "stops)")
                    waiting_said = True
                optuna.storages.fail_stale_trials(self.study)
                time.sleep(POLL_SECONDS)
            else:
                return

    # --- one trial ---------------------------------------------------------------------------------------

    def objective(self, trial: optuna.Trial) -> float:
        s = self.plan.space
        if st.is_surplus(self.study, trial, s):
            trial.set_user_attr(names.SURPLUS, True)
            raise Surplus()
        if s.method != "grid":
            self.study.sampler = st.sampler(s, trial.number)
        values = suggest(trial, s)
        variant = variant_of(values)
        trial.set_user_attr(names.VARIANT, variant.key)
        self.say(f"[trial {trial.number}] {shown(variant)}: training")
        started = time.perf_counter()
        try:
            return self._train(trial, values, variant, started)
        except KeyboardInterrupt:
            self._queue_again(trial)
            raise

    def _train(self, trial: optuna.Trial, values: dict, variant: Variant, started: float) -> float:
        from runner.running.request import RunRequest
        from runner.running.run import run_experiment

        s, number = self.plan.space, trial.number
        report = report_callback(trial, s.metric)
        try:
            spec = self.plan.load(variant)
            run_name = names.TRIAL_RUN_NAME.format(name=spec.name, variant=short_name(values))
            result = run_experiment(RunRequest(
                spec, tracking_uri=self.uri, data_dir=self.data_dir, console=self.console, quiet=True,
                parent_run_id=self.parent_id, run_name=run_name,
                extra_callbacks=(report,),
                tags={names.VARIANT: variant.key, names.STUDY: self.study.study_name, names.TRIAL: number}))
        except Exception as exc:  # noqa: BLE001 - a failing trial is recorded FAILED; the sweep goes on
            message = exc.line() if isinstance(exc, XrunError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(names.ERROR, one_line(message, 500))
            self._done(number, variant, "FAILED", started, f": {one_line(message, 500)}")
            raise Failed(message) from None
        trial.set_user_attr(names.TRIAL_RUN_ID, result.run_id)
        if report.pruned_at is not None:
            store.add_to_run(result.run_id, self.uri, tags={
                names.PRUNED: "true", names.PRUNED_AT_EPOCH: report.pruned_at,
                names.RUN_NAME: names.PRUNED_RUN_NAME.format(name=run_name, epoch=report.pruned_at),
                names.END_REASON: f"pruned by the sweep's {s.pruner['type']} pruner after epoch {report.pruned_at}"})
            self._done(number, variant, "PRUNED", started, f" at epoch {report.pruned_at}")
            raise optuna.TrialPruned()
        try:
            value = objective_value(result, s.metric, s.direction)
        except XrunError as exc:
            trial.set_user_attr(names.ERROR, exc.line())
            self._done(number, variant, "FAILED", started, f": {exc.line()}")
            raise Failed(exc.line()) from None
        self._done(number, variant, "FINISHED", started, f" ({s.metric} {value:.4f})")
        return value

    def _done(self, number: int, variant: Variant, state: str, started: float, note: str) -> None:
        self.trained.append((number, state))
        self.say(f"[trial {number}] {shown(variant)}: {state} in {time.perf_counter() - started:.1f}s{note}")

    def _queue_again(self, trial: optuna.Trial) -> None:
        """An interrupted trial (Ctrl-C, SIGTERM) goes back in the queue, as a dead worker's does."""
        frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(self.study, frozen)


def suggest(trial: optuna.Trial, s) -> dict:
    """The trial's value of every swept key, as YAML values, in the sweep's order."""
    out = {}
    for key, values in s.grid.items():
        out[key] = from_choice(trial.suggest_categorical(key, choices(values)), values)
    for key, dist in s.random.items():
        (kind, arg), = dist.items()
        if kind == "choice":
            out[key] = from_choice(trial.suggest_categorical(key, choices(arg)), arg)
        elif kind == "randint":
            out[key] = trial.suggest_int(key, *arg)
        else:
            out[key] = trial.suggest_float(key, min(arg), max(arg), log=kind == "loguniform")
    return out


def objective_value(result, metric: str, direction: str) -> float:
    """The trial's value: a test score, or the best epoch's value of an epoch metric."""
    if metric in ("test_accuracy", "test_loss"):
        return float(getattr(result, metric))
    values = result.history.get(metric)
    if not values:
        raise XrunError(f"the run logged no '{metric}'", hint="set sweep.metric to one the run logs")
    return float(max(values) if direction == "maximize" else min(values))


def end_dead_run(uri: str):
    """For the retry callback: the MLflow run of a trial whose worker stopped beating ends KILLED, saying so."""
    def note(study: optuna.Study, trial) -> None:
        where = f"tags.`{names.STUDY}` = '{study.study_name}' and tags.`{names.TRIAL}` = '{trial.number}'"
        for run in query.find_runs(uri, where=where):
            if run.status == "RUNNING":
                store.add_to_run(run.run_id, uri, tags={names.END_REASON: "its worker stopped (no heartbeat in "
                                                        "the study); the trial was retried"})
                store.end_run(run.run_id, "KILLED", uri)
    return note
