"""A sweep under faults (issue 22): its study database deleted mid-sweep, its parent process SIGKILLed; and what
its parent run records of the search (its params)."""

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import store_uri, xrun
from sweep_cases import FOUR, RANDOM, WORKER_ENV, PLAIN, sweep_runs, write

from runner.records import query
from runner.sweep import trials


def _trains_nothing(deleted_after: int, db):
    """A Worker._train that scores every trial 0.5 at once, deleting the study file after `deleted_after` trials."""
    calls = []

    def train(self, trial, values, variant, started):
        calls.append(trial.number)
        if len(calls) == deleted_after:
            os.remove(db)
        return 0.5
    return train


def test_a_study_database_deleted_mid_sweep_is_one_line_and_the_parent_fails_saying_so(tmp_path, monkeypatch):
    uri = store_uri(tmp_path)
    write(tmp_path, "conv.yaml", FOUR)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    monkeypatch.setattr(trials.Worker, "_train", _trains_nothing(2, tmp_path / "optuna.db"))
    code, out, err = xrun("sweep", "conv.yaml", "--tracking-uri", uri)
    (parent,), children = sweep_runs(uri)
    line = (f"the sweep's study storage sqlite:///{tmp_path}/optuna.db went away mid-sweep (its file was deleted); "
            f"the trials' MLflow runs are kept, under parent run {parent.run_id}; run the same command again to "
            "start a new study (every point trains again, under a new parent run), or restore the database and "
            "run it again to continue this one")
    assert (code, out, err.splitlines()[-2:]) == (2, "", ["[trial 1] model.layers[0].kernel_size=3: training",
                                                           line])
    assert (parent.status, parent.tags["xrun.end_reason"]) == ("FAILED", line.split("; run the same")[0])
    assert children == []  # _train was replaced: nothing was recorded under the parent


def test_the_parent_s_params_are_the_search_space(tmp_path, monkeypatch):
    uri = store_uri(tmp_path)
    write(tmp_path, "conv.yaml", PLAIN + RANDOM)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    monkeypatch.setattr(trials.Worker, "run", lambda self: None)  # the parent is made; no trial runs
    xrun("sweep", "conv.yaml", "--grid", "training.epochs=1,2", "--tracking-uri", uri)
    (parent,), _ = sweep_runs(uri)
    assert parent.params == {"sweep.grid.training.epochs": "1, 2",
                             "sweep.random.optimizer.learning_rate": "loguniform 0.0001, 0.1",
                             "sweep.random.optimizer.momentum": "uniform 0.5, 0.9",
                             "sweep.random.training.batch_size": "choice 16, 32, 64",
                             "sweep.random.model.layers[0].filters": "randint 1, 4"}
