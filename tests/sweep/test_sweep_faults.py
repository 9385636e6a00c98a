"""A sweep under faults (issue 22): its study database deleted mid-sweep, its parent process SIGKILLed; and what
its parent run records of the search (its params)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import store_uri, xrun
from sweep_cases import FOUR, PLAIN, RANDOM, WORKER_ENV, sweep_runs, write

from runner.errors import XrunError
from runner.records import query
from runner.sweep import study, trials


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


def test_only_a_study_database_that_cannot_be_read_is_taken_for_gone(tmp_path):
    import optuna
    from sqlalchemy.exc import OperationalError

    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(storage=url)
    mlflow_s = OperationalError("UPDATE runs", {}, Exception("database is locked"))
    assert (study.lost(url, ValueError("x"), "p"), study.lost(url, mlflow_s, "p")) == (None, None)
    (tmp_path / "optuna.db").write_bytes(b"")  # emptied: sqlite reads it as a database without tables
    why = ("(sqlite3.OperationalError) no such table: studies [SQL: select count(*) from studies] (Background on "
           "this error at: https://sqlalche.me/e/21/e3q8)")
    assert study.lost(url, mlflow_s, "p").message == (
        f"the sweep's study storage {url} went away mid-sweep ({why}); the trials' MLflow runs are kept, under "
        "parent run p")


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
                             "sweep.random.model.layers.0.filters": "randint 1, 4"}  # MLflow keys have no []


# --- the sweep process SIGKILLed (real processes; they train) ----------------------------------------------

def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _training(uri: str) -> int:
    """How many trial runs are RUNNING (none before the sweep has made its experiment)."""
    try:
        return sum(r.status == "RUNNING" for r in sweep_runs(uri)[1])
    except XrunError:
        return 0


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_worker_whose_parent_is_already_gone_ends_at_once():
    """The race: the sweep process died before the worker asked the kernel to watch it (pid 1 adopted it)."""
    code = "from runner.sweep.lifeline import die_with_parent; die_with_parent(); print('went on')"
    env = {**WORKER_ENV, "XRUN_SWEEP_PARENT_PID": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (-signal.SIGTERM, "")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_sigkilled_sweep_takes_its_workers_with_it_and_sync_ends_its_parent_killed(tmp_path):
    uri = store_uri(tmp_path)
    write(tmp_path, "conv.yaml", FOUR)
    sweep = subprocess.Popen([sys.executable, "-m", "runner.cli", "sweep", "conv.yaml", "--jobs", "2",
                              "--tracking-uri", uri, "--set", "training.epochs=500"], cwd=tmp_path, env=WORKER_ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        training = _wait(lambda: _training(uri) == 2, 240)
        workers = _children(sweep.pid)
        assert (training, len(workers)) == (True, 2)
        (parent,), _ = sweep_runs(uri)
        assert (parent.status, parent.tags["xrun.pid"]) == ("RUNNING", str(sweep.pid))
        sweep.kill()
        sweep.wait()
        # SIGTERM makes each worker save and end its trial first: seconds, more on a loaded machine
        assert _wait(lambda: not any(map(_alive, workers)), 120), "the workers outlived the sweep process"
    finally:
        sweep.kill()
        for pid in filter(_alive, workers):  # orphans, if they outlived it
            os.kill(pid, signal.SIGKILL)
    code, _, err = xrun("sync", "--tracking-uri", uri)
    assert (code, err) == (0, f"xrun sync: run {parent.run_id[:8]} ({uri}): KILLED\n")
    parent = query.find_runs(uri, run_ids=[parent.run_id])[0]
    assert (parent.status, parent.tags["xrun.end_reason"]) == (
        "KILLED", "the process ended without ending the run (killed or crashed); ended by xrun sync")
    assert {r.status for r in sweep_runs(uri)[1]} == {"KILLED"}  # each worker ended its trial on the SIGTERM
