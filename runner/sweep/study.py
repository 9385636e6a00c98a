"""The Optuna side of a sweep: its storage, sampler and pruner, the study tied to its MLflow parent, and which
trials are left to run.

Optuna hands out the trials: every worker on the study (processes on one machine, or machines sharing a database)
asks it for the next one. What is added here is only what Optuna leaves open: a trial asked for after the last
one was handed out (two workers asking at once) is closed at once as surplus instead of training a point twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from runner.errors import XrunError
from runner.records import names
from runner.sweep import journal
from runner.sweep.space import Space, choices
from runner.text import one_line

STORAGE_ENV = "XRUN_STUDY_STORAGE"
PARENT_WAIT_SECONDS = 120
OPEN_ATTEMPTS = 5  # opening a server database, for workers that start together

optuna.logging.set_verbosity(optuna.logging.ERROR)  # xrun prints one line per trial itself
# Heartbeats and their retry callback are "experimental" in Optuna (since 2.8/2.9): said once here, not per call.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
logging.getLogger("alembic").setLevel(logging.WARNING)

@dataclass(frozen=True)
class Sampler:
    """One `sweep.method`: how its Optuna sampler is made from the space and a seed."""

    name: str
    make: Callable[[Space, int], optuna.samplers.BaseSampler]
    # The grid keeps one seed on every worker (a grid id means the same point everywhere); the other samplers are
    # seeded per trial, so workers do not draw the same values.
    seeded_per_trial: bool = True


@dataclass(frozen=True)
class Pruner:
    """One `sweep.pruner` type: the Optuna pruner it makes from the YAML's arguments."""

    name: str
    make: Callable[..., optuna.pruners.BasePruner]


def _grid(s: Space, seed: int) -> optuna.samplers.GridSampler:
    return optuna.samplers.GridSampler({k: choices(v) for k, v in s.grid.items()}, seed=seed)


# The one table of each: a new method or pruner is its schema enum entry and an entry here
# (tests/sweep/test_study_tables.py checks both against the schema).
SAMPLERS = {entry.name: entry for entry in (
    Sampler("grid", _grid, seeded_per_trial=False),
    Sampler("random", lambda space, seed: optuna.samplers.RandomSampler(seed=seed)),
    Sampler("tpe", lambda space, seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True)),
    Sampler("cmaes", lambda space, seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)),
)}
PRUNERS = {entry.name: entry for entry in (
    Pruner("none", optuna.pruners.NopPruner),
    Pruner("median", optuna.pruners.MedianPruner),
    Pruner("hyperband", optuna.pruners.HyperbandPruner),
    Pruner("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
)}


# --- storage -------------------------------------------------------------------------------------------------

def storage_url(explicit: str | None, tracking_uri: str) -> str:
    """--storage, else $XRUN_STUDY_STORAGE (a journal file as journal:///ABSOLUTE/PATH), else a SQLite file beside
    the MLflow store (mlruns/optuna.db)."""
    url = explicit or os.environ.get(STORAGE_ENV)
    if url:
        return journal.url_of(journal.path_of(url)) if journal.is_journal(url) else url
    folder = Path(names.STORE_DIR)
    if tracking_uri.startswith(names.SQLITE_PREFIX):
        db = tracking_uri.removeprefix(names.SQLITE_PREFIX).split("?", 1)[0]
        folder = Path(db).parent if db not in ("", ":memory:") else folder
    folder.mkdir(parents=True, exist_ok=True)
    return f"{names.SQLITE_PREFIX}{(folder / names.STUDY_DB).resolve()}"


def redacted(url: str) -> str:
    """A URL fit to print or record: its password replaced by ***."""
    return re.sub(r"(//[^/:@]+):[^@/]*@", r"\1:***@", url)


def open_storage(url: str, *, heartbeat: int, grace: int, on_stale) -> optuna.storages.BaseStorage:
    """Optuna's database storage (or a journal file, runner.sweep.journal) with heartbeats: a trial whose worker
    stops beating for `grace` seconds is failed and handed to `on_stale` (which queues it again) by the next
    worker that looks."""
    if journal.is_journal(url):
        return journal.open_storage(url, heartbeat=heartbeat, grace=grace, on_stale=on_stale)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with _creation_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are, since 2.9
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                                  grace_period=grace, heartbeat_stale_trial_callback=on_stale)
        except Exception as exc:  # noqa: BLE001 - a wrong URL, a database that is down, a missing driver
            # Workers on several machines creating a new server database's tables at once collide (PostgreSQL
            # refuses the second CREATE TABLE): the tables are there a moment later, so try again.
            if attempt + 1 < OPEN_ATTEMPTS and _creation_race(exc):
                time.sleep(1 + attempt)
                continue
            error = exc
    raise XrunError(f"cannot open the study storage {redacted(url)} ({one_line(error, 200)})",
                    hint="check --storage / $XRUN_STUDY_STORAGE (e.g. postgresql://user:pw@host/db), or "
                         "leave it out for a SQLite file beside the MLflow store") from None


def lost(url: str, exc: BaseException, parent_id: str) -> XrunError | None:
    """The error to show when `exc` comes from the study's database having gone away mid-sweep (its SQLite file
    deleted, its server gone); None for any other exception."""
    from sqlalchemy import exc as sql

    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    # A journal's file deleted: Optuna's reading it fails with FileNotFoundError.
    errors = (sql.SQLAlchemyError, optuna.exceptions.StorageInternalError, FileNotFoundError)
    if not any(isinstance(e, errors) for e in chain):
        return None
    why = journal.gone(url) if journal.is_journal(url) else _gone(url)  # a database error of MLflow's store, or a passing one of the study's, is not this
    if why is None:
        return None
    return XrunError(f"the sweep's study storage {redacted(url)} went away mid-sweep ({why}); the trials' MLflow "
                     f"runs are kept, under parent run {parent_id}",
                     hint="run the same command again to start a new study (every point trains again, under a new "
                          "parent run), or restore the database and run it again to continue this one")


def _gone(url: str) -> str | None:
    """Why the study's database cannot be read now (its SQLite file missing, its server down), or None."""
    import sqlalchemy

    db = url.removeprefix(names.SQLITE_PREFIX).split("?", 1)[0] if url.startswith(names.SQLITE_PREFIX) else ""
    if db and not Path(db).is_file():
        return "its file was deleted"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select count(*) from studies"))
    except Exception as exc:  # noqa: BLE001 - whatever the driver says, the study cannot be read
        return one_line(exc, 200)
    finally:
        engine.dispose()
    return None


def _creation_race(exc: Exception) -> bool:
    """A server database refusing a table or type another worker has just created (not a wrong URL or a down server)."""
    from sqlalchemy import exc as sql

    return isinstance(exc, (sql.IntegrityError, sql.ProgrammingError))


class _creation_lock:
    """A new SQLite study database is created with its tables by the first process to open it; several doing that
    at once collide, so processes on one machine take turns (a server database needs no lock)."""

    def __init__(self, url: str):
        self.path = None
        if url.startswith("sqlite:///"):
            self.path = Path(url.removeprefix("sqlite:///").split("?", 1)[0]).with_suffix(".init-lock")

    def __enter__(self):
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "w")
            fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        if self.path is not None:
            self.file.close()


# --- the study -----------------------------------------------------------------------------------------------

def sampler(s: Space, trial: int) -> optuna.samplers.BaseSampler:
    """The method's sampler; one seeded per trial draws from the sweep's seed and the trial number, so sweep seeds
    0 and 1 are not the same draws shifted by one trial."""
    entry = SAMPLERS[s.method]
    return entry.make(s, (s.seed * 1_000_003 + trial) % 2**32 if entry.seeded_per_trial else s.seed)


def pruner(s: Space) -> optuna.pruners.BasePruner:
    arguments = {k: v for k, v in s.pruner.items() if k != "type"}
    return PRUNERS[s.pruner["type"]].make(**arguments)


def create_or_load(name: str, storage, s: Space, make_parent) -> tuple[optuna.Study, str]:
    """The study, and its MLflow parent run id (a user attribute of the study).

    Of several workers starting at once exactly one creates the study (the database refuses a second); that one
    makes the parent run with `make_parent()`, the others wait for its id.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler(s, 0), pruner=pruner(s),
                                    direction=s.direction)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler(s, 0), pruner=pruner(s))
        return study, _wait_for_parent(study)
    study.set_user_attr(names.PARENT_RUN_ID, make_parent())
    study.set_user_attr(names.METRIC, s.metric)
    study.set_metric_names([s.metric])  # optuna-dashboard and the history plot name the objective by it
    return study, study.user_attrs[names.PARENT_RUN_ID]


def _wait_for_parent(study: optuna.Study) -> str:
    deadline = time.monotonic() + PARENT_WAIT_SECONDS
    while names.PARENT_RUN_ID not in study.user_attrs:
        if time.monotonic() > deadline:
            raise XrunError(f"study {study.study_name} has no MLflow parent run after {PARENT_WAIT_SECONDS}s "
                            "(the worker that created it stopped before making one)",
                            hint="delete the study (optuna delete-study) and start the sweep again")
        time.sleep(1)
    return study.user_attrs[names.PARENT_RUN_ID]


# --- which trials are left -----------------------------------------------------------------------------------

@dataclass
class Progress:
    """Where a study stands, as one worker sees it."""

    to_start: int        # points or draws no trial has taken yet, plus trials queued for a retry
    running: int
    done: dict           # state name -> count, surplus trials left out

    @property
    def finished(self) -> bool:
        return self.to_start == 0 and self.running == 0


def progress(study: optuna.Study, s: Space) -> Progress:
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(names.SURPLUS)]
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    taken = len({_slot(t) for t in trials if "failed_trial" not in t.system_attrs})
    done: dict = {}
    for t in trials:
        if t.state.is_finished() and not _retried(t, trials):
            done[t.state.name] = done.get(t.state.name, 0) + 1
    return Progress(max(0, s.target - taken) + waiting, running, done)


def _slot(trial) -> object:
    """What a trial stands for: its grid point, or its place among the draws."""
    return trial.system_attrs.get("grid_id", ("draw", trial.number))


def _retried(trial, trials) -> bool:
    return trial.state == TrialState.FAIL and any(
        trial.number in t.system_attrs.get("retry_history", ()) for t in trials)


def is_surplus(study: optuna.Study, trial: optuna.Trial, s: Space) -> bool:
    """A trial that is not a retry and whose point an earlier trial already has (grid), or that comes after the
    study's `trials` draws: two workers asked at once for the last one. The earlier trial number keeps it."""
    for _ in range(20):
        trials = study.get_trials(deepcopy=False)
        own = next(t for t in trials if t.number == trial.number)
        if "failed_trial" in own.system_attrs:
            return False
        earlier = [t for t in trials if t.number < own.number and "failed_trial" not in t.system_attrs]
        if s.method != "grid":
            return len(earlier) >= s.target
        if all("grid_id" in t.system_attrs for t in earlier):
            slots = {_slot(t) for t in earlier}
            return _slot(own) in slots or len(slots) >= s.target
        time.sleep(0.25)  # an earlier trial is being given its point this moment
    return False


def retry_stale(uri_note) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a trial whose worker stopped beating, with `uri_note(trial)` first (which ends the dead
    worker's MLflow run); each trial is retried at most 3 times."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)

    def callback(study, trial):
        uri_note(study, trial)
        retry(study, trial)
    return callback
