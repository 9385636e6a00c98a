"""`xrun sweep`: every sweep is an Optuna study whose trials are nested MLflow runs under one parent run.

The study lives in a database (SQLite beside the MLflow store, or PostgreSQL for many machines); every worker that
runs the same sweep on it takes trials from it, so a sweep spreads over processes (--jobs) and machines alike.
Nothing here imports TensorFlow, MLflow or Optuna at module level: `xrun sweep --dry-run` needs none of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runner.errors import SIGTERM_MESSAGE
from runner.records import names
from runner.sweep.space import (
    Plan,
    Space,
    Variant,
    describe,
    params,
    parse_grid_option,
    prepare,
    short_name,
    space,
    variant_of,
    yaml_value,
)

__all__ = ["Plan", "Space", "Variant", "describe", "parse_grid_option", "plan", "prepare", "run_sweep",
           "short_name", "space", "variant_of", "yaml_value"]


def plan(path: Path, overrides: list[str], cli_grid: list[str]) -> Plan:
    """The sweep, its probe variants checked as `xrun validate` would (no TensorFlow, MLflow or Optuna)."""
    return prepare(path, overrides, cli_grid)


@dataclass
class Report:
    parent_id: str
    study_name: str
    storage: str                # redacted
    done: dict                  # Optuna state -> trials (retried and surplus ones left out)
    failures: list              # (variant, error) of the failed trials
    trained_here: list          # (trial number, state) of this process's trials
    finished: bool              # the study has nothing left to run
    order: dict                 # variant key -> its place in the grid


def run_sweep(path: Path, overrides: list[str], cli_grid: list[str], *,  # noqa: PLR0913 - a keyword per CLI option
              uri: str, storage: str | None = None,
              jobs: int = 1, data_dir=None, console=None, progress: Callable[[str], None] | None = None,
              heartbeat: int = names.TRIAL_HEARTBEAT_SECONDS, grace: int = names.TRIAL_GRACE_SECONDS,
              wrap_up: bool = True) -> Report:
    """Work on the sweep's study until it has nothing left to run; with `jobs` > 1 in that many processes."""
    from runner.sweep import lifeline, trials
    from runner.sweep import study as st

    say = progress or (lambda line: None)
    p = prepare(path, overrides, cli_grid)
    url = st.storage_url(storage, uri)
    db = st.open_storage(url, heartbeat=heartbeat, grace=grace, on_stale=st.retry_stale(trials.end_dead_run(uri)))
    study, parent_id = st.create_or_load(p.study_name, db, p.space, lambda: _new_parent(p, uri, url))
    _reopen(parent_id, uri)
    say(f"study {p.study_name} in {st.redacted(url)}; MLflow parent run {parent_id}")
    worker = trials.Worker(p, study, parent_id, uri, data_dir, console, say)
    alive = lifeline.parent_alive(uri, parent_id) if wrap_up else contextlib.nullcontext()
    with alive, _storage_watch(url, parent_id, uri):
        try:
            if jobs > 1:
                _run_workers(jobs, path, p, uri, url, data_dir, heartbeat, grace)
            else:
                worker.run()
        except BaseException as exc:
            if not st.lost(url, exc, parent_id):
                _end_parent(study, p, parent_id, uri, interrupted=True)
            raise
        return _finish(study, p, parent_id, uri, url, worker.trained, wrap_up)


@contextlib.contextmanager
def _storage_watch(url: str, parent_id: str, uri: str):
    """A study database that goes away mid-sweep is one line, not Optuna's traceback; the parent run ends FAILED
    saying so (its trials' runs stay)."""
    from runner.records import store
    from runner.sweep import study as st

    try:
        yield
    except Exception as exc:
        error = st.lost(url, exc, parent_id)
        if error is None:
            raise
        store.add_to_run(parent_id, uri, tags={names.END_REASON: error.message})
        store.end_run(parent_id, "FAILED", uri)
        raise error from None


def _run_workers(jobs: int, path: Path, p: Plan, uri: str, url: str, data_dir, heartbeat: int, grace: int) -> None:
    """`jobs` worker processes on the same study: each an `xrun sweep` of its own (TensorFlow state apart)."""
    from runner.sweep import lifeline
    from runner.sweep import study as st

    command = [sys.executable, "-m", "runner.cli", "sweep", str(path), "--tracking-uri", uri,
               "--heartbeat", str(heartbeat), "--grace-period", str(grace), "--worker"]
    command += [a for o in p.cli_overrides for a in ("--set", o)]
    command += [a for g in p.cli_grid for a in ("--grid", g)]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    # The storage is not on the command line, where `ps` would show its password.
    env = {**os.environ, st.STORAGE_ENV: url, **lifeline.worker_env()}
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env) for _ in range(jobs)]
    # A scheduler's SIGTERM stops the workers too (each ends its trial KILLED) and then the parent, never orphans.
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        for proc in procs:
            proc.wait()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(SIGTERM_MESSAGE)


def _finish(study, p: Plan, parent_id: str, uri: str, url: str, trained: list, wrap_up: bool) -> Report:
    from runner.sweep import study as st

    now = st.progress(study, p.space)
    if now.finished and wrap_up:
        _end_parent(study, p, parent_id, uri)
    failures = [(t.user_attrs.get(names.VARIANT, ""), t.user_attrs.get(names.ERROR, "failed"))
                for t in study.get_trials(deepcopy=False)
                if t.state.name == "FAIL" and names.ERROR in t.user_attrs]
    order = {v.key: i for i, v in enumerate(p.space.points())} if p.space.method == "grid" else {}
    return Report(parent_id, p.study_name, st.redacted(url), now.done, failures, trained, now.finished, order)


# --- the parent run ----------------------------------------------------------------------------------------

def _new_parent(p: Plan, uri: str, url: str) -> str:
    from runner.records import store
    from runner.sweep import study as st

    base, s = p.base, p.space
    tags = {names.SWEEP: "parent", names.SWEEP_KEY: p.key, names.STUDY: p.study_name,
            names.STUDY_STORAGE: st.redacted(url), names.SEARCH_METHOD: s.method, names.METRIC: s.metric,
            names.DIRECTION: s.direction, names.PRUNER: s.pruner["type"], names.TRIALS: s.target,
            names.EXPERIMENT_FILE: str(base.path)}
    texts = {names.CONFIG.format(name=base.path.name): base.text,
             names.SWEEP_SPACE: "".join(f"{x}\n" for x in describe(s)),
             names.OVERRIDES: "".join(f"{o}\n" for o in p.overrides)}
    return store.plain_run(uri, base.tracking.experiment, names.SWEEP_RUN_NAME.format(name=base.name),
                           base.description, tags, texts, params(s))


def _reopen(parent_id: str, uri: str) -> None:
    from runner.records import query, store

    if query.find_runs(uri, run_ids=[parent_id])[0].status != "RUNNING":
        store.reopen(parent_id, uri)


def _end_parent(study, p: Plan, parent_id: str, uri: str, interrupted: bool = False) -> None:
    """The parent ends FAILED if a trial failed, KILLED if this worker was stopped with trials left, else FINISHED;
    a finished study's reports go with it."""
    from runner.records import store
    from runner.sweep import study as st

    now = st.progress(study, p.space)
    if interrupted and not now.finished:
        store.end_run(parent_id, "KILLED", uri)
        return
    if now.finished:
        _log_reports(study, p, parent_id, uri)
    store.end_run(parent_id, "FAILED" if now.done.get("FAIL") else "FINISHED", uri)


def _log_reports(study, p: Plan, parent_id: str, uri: str) -> None:
    """Optuna's optimisation history and parameter importances, and the best trial's values."""
    from runner.records import store
    from runner.sweep import reports

    store.add_to_run(parent_id, uri, **reports.of(study, p.space))
