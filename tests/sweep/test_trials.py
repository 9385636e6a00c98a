"""The trials of `xrun sweep` (runner/sweep/trials.py): nested runs under one parent, failures, a re-run, several
workers on one study (processes, a SIGKILLed one, PostgreSQL) and pruning, which train (slow); the objective's
value from a made-up result, without training."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import store_uri, xrun
from sweep_cases import FOUR, GRID, KEYS, PLAIN, RANDOM, WORKER_ENV, space_of, study_of, sweep_runs, worker, write

from runner.errors import XrunError
from runner.records import query
from runner.records import tables as cmp
from runner.sweep.trials import objective_value

# --- one worker, in this process (the session's `swept` sweep, tests/sweep/conftest.py) ------------------------

@pytest.mark.slow
def test_trials_are_child_runs_of_one_parent_named_by_what_varied(swept):
    (parent,), children = swept["first_runs"]
    assert parent.name == "conv sweep" and parent.tags["xrun.method"] == "grid"
    # kernel 29 fails when the model is built, before a run is made: two children, both FINISHED
    assert sorted(c.tags["xrun.variant"] for c in children) == sorted(KEYS[:2])
    assert {c.status for c in children} == {"FINISHED"}
    for child in children:
        assert child.tags["mlflow.parentRunId"] == parent.run_id
        batch = child.params["training.batch_size"]
        assert child.name == f"conv [kernel_size=3 batch_size={batch}]"  # short; the params say it in full
        assert child.params["model.layers.0.kernel_size"] == "3"
        assert child.tags["xrun.study"] == parent.tags["xrun.study"]
    study = study_of(swept["folder"])
    assert study.study_name == parent.tags["xrun.study"] and study.user_attrs["xrun.parent_run_id"] == parent.run_id
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    by_run = {t.user_attrs.get("mlflow_run_id"): t for t in study.trials}
    for child in children:  # the trial's value is the run's best val_accuracy
        assert by_run[child.run_id].value == pytest.approx(child.metrics["best_val_accuracy"])


@pytest.mark.slow
def test_failing_trials_leave_the_others_finished_and_say_why(swept):
    code, out, err = swept["first"]
    (parent,), _ = swept["first_runs"]
    assert code == 1 and parent.status == "FAILED"
    failures = [line for line in err.splitlines() if line.startswith("FAILED: ")]
    assert sorted(f.split(": ")[1] for f in failures) == sorted(KEYS[2:])
    assert all("29x29 kernel does not fit its 28x28 input" in f for f in failures)
    assert "2 finished, 0 pruned, 2 failed (4 trained by this process)" in err


@pytest.mark.slow
def test_unseeded_trials_share_one_seed(swept):
    _, children = swept["first_runs"]
    assert len({r.params["training.seed"] for r in children}) == 1
    assert cmp.differing_params(children) == ["training.batch_size"]
    assert not any(k.startswith("sweep.") for r in children for k in r.params)  # the sweep stays with the parent


@pytest.mark.slow
def test_a_rerun_continues_the_study_and_trains_nothing_done(swept):
    code, out, err = swept["second"]
    (parent,), children = swept["second_runs"]
    assert parent.run_id == swept["first_runs"][0][0].run_id
    assert sorted(c.run_id for c in children) == sorted(c.run_id for c in swept["first_runs"][1])
    assert code == 1 and "(0 trained by this process)" in err  # the failed points stay failed
    rows = json.loads(out)
    assert [r["training.batch_size"] for r in rows] == ["32", "64"]  # grid order


# --- several workers on one study ---------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_split_a_grid_and_train_no_point_twice(tmp_path):
    write(tmp_path, "conv.yaml", FOUR)
    uri = store_uri(tmp_path)
    procs = [worker(tmp_path, "conv.yaml", *GRID, "--tracking-uri", uri) for _ in range(2)]
    outputs = [p.communicate(timeout=500) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    (parent,), children = sweep_runs(uri)
    assert parent.status == "FINISHED"
    assert len(children) == 4 and {c.status for c in children} == {"FINISHED"}
    assert {c.tags["mlflow.parentRunId"] for c in children} == {parent.run_id}
    assert sorted((c.params["model.layers.0.kernel_size"], c.params["training.batch_size"]) for c in children) == \
        [("3", "32"), ("3", "64"), ("5", "32"), ("5", "64")]
    trained = [sum(": FINISHED in " in line for line in err.splitlines()) for _, err in outputs]
    assert sum(trained) == 4, trained
    study = study_of(tmp_path)
    assert sorted(t.state.name for t in study.trials if not t.user_attrs.get("xrun.surplus")) == ["COMPLETE"] * 4


@pytest.mark.slow
def test_jobs_run_workers_in_their_own_processes_on_one_study(tmp_path):
    write(tmp_path, "conv.yaml", FOUR)
    uri = store_uri(tmp_path)
    done = subprocess.run([sys.executable, "-m", "runner.cli", "sweep", "conv.yaml", "--jobs", "2",
                           "--tracking-uri", uri, "--format", "json"],
                          capture_output=True, text=True, cwd=tmp_path, env=WORKER_ENV, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = sweep_runs(uri)
    assert parent.status == "FINISHED" and len(children) == 2 and {c.status for c in children} == {"FINISHED"}
    pids = {c.tags["xrun.pid"] for c in children}
    lines = done.stderr.splitlines()
    started = [i for i, line in enumerate(lines) if line.endswith(": training")]
    ended = [i for i, line in enumerate(lines) if ": FINISHED in " in line]
    # two processes, side by side: both trials started before either finished
    assert len(pids) == 2 and len(started) == 2 and max(started) < min(ended)
    assert [r["run"] for r in json.loads(done.stdout)] == [
        next(c.run_id for c in children if c.params["model.layers.0.kernel_size"] == k) for k in ("3", "5")]


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_retried_by_a_live_one(tmp_path):
    """Two workers; one is SIGKILLed mid-trial. After the grace period the other (before its next trial, or while it
    waits for the last) fails the dead trial in the study, ends its MLflow run KILLED and trains it again: every grid
    point is done once."""
    write(tmp_path, "conv.yaml", FOUR.replace("limit: 128", "limit: 512").replace("epochs: 1", "epochs: 3"))
    uri = store_uri(tmp_path)
    args = ["conv.yaml", *GRID, "--tracking-uri", uri, "--heartbeat", "1", "--grace-period", "5"]
    doomed, survivor = worker(tmp_path, *args), worker(tmp_path, *args)
    victim = _wait_for_running_child(uri, doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    out, err = survivor.communicate(timeout=500)
    assert survivor.returncode == 0, err[-3000:]
    (parent,), children = sweep_runs(uri)
    status = {c.run_id: c.status for c in children}
    assert status.pop(victim.run_id) == "KILLED" and parent.status == "FINISHED"
    assert sorted(status.values()) == ["FINISHED"] * 4
    assert sorted(c.tags["xrun.variant"] for c in children if c.status == "FINISHED") == sorted(
        k.replace("kernel_size=29", "kernel_size=5") for k in KEYS)  # each point once
    killed = next(c for c in children if c.run_id == victim.run_id)
    assert "its worker stopped" in killed.tags["xrun.end_reason"]
    study = study_of(tmp_path)
    trials = [t for t in study.trials if not t.user_attrs.get("xrun.surplus")]
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 4 + ["FAIL"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") is not None)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["xrun.variant"] == victim.tags["xrun.variant"]


def _wait_for_running_child(uri: str, proc: subprocess.Popen, timeout: float = 300):
    """The child run the process has started, as soon as it is RUNNING in MLflow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            running = [c for c in sweep_runs(uri)[1]
                       if c.status == "RUNNING" and c.tags.get("xrun.pid") == str(proc.pid)]
        except XrunError:  # the experiment is not made yet
            running = []
        if running:
            return running[0]
        time.sleep(0.2)
    pytest.fail("no trial started in time")


# --- pruning --------------------------------------------------------------------------------------------------

PRUNED = """\
name: prune
description: learning rate 1e-6 learns next to nothing, clearly worse than 0.01 from the first epoch
data: {dataset: mnist, limit: 512, validation: test}
model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 16, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: Adam, learning_rate: 0.01}
loss: SparseCategoricalCrossentropy
training: {epochs: 3, batch_size: 64, seed: 1}
tracking: {experiment: sweep-test, log_model: false, log_images: false}
sweep:
  seed: 1   # GridSampler's order with this seed: 0.01 first, then 1e-6
  grid: {optimizer.learning_rate: [0.01, 1.0e-6]}
  pruner: {type: median, n_startup_trials: 1}
"""


@pytest.mark.slow
def test_a_clearly_worse_trial_is_pruned_after_its_first_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    write(tmp_path, "prune.yaml", PRUNED)
    uri = store_uri(tmp_path)
    code, out, err = xrun("sweep", "prune.yaml", "--tracking-uri", uri, "--format", "json")
    assert code == 0, err
    (parent,), children = sweep_runs(uri)
    run = {c.params["optimizer.learning_rate"]: c for c in children}
    assert run["0.01"].metrics["epochs_run"] == 3 and "xrun.pruned" not in run["0.01"].tags
    pruned = run["1e-06"]
    assert pruned.status == "FINISHED" and pruned.tags["xrun.pruned"] == "true"
    assert pruned.metrics["epochs_run"] == 1 and pruned.tags["xrun.pruned_at_epoch"] == "1"
    # MLflow shows a pruned run FINISHED: its name says it was pruned, and the other's does not
    assert (pruned.name, run["0.01"].name) == ("prune [learning_rate=1e-06] [pruned at 1]", "prune [learning_rate=0.01]")
    assert len(query.metric_history(pruned.run_id, "val_accuracy", uri)) == 1
    assert "[trial 1] optimizer.learning_rate=1e-06: PRUNED in " in err and "1 finished, 1 pruned, 0 failed" in err
    assert {r["run"]: r["status"] for r in json.loads(out)} == {run["0.01"].run_id: "FINISHED",
                                                                 pruned.run_id: "PRUNED"}
    study = study_of(tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert list(study.trials[1].intermediate_values) == [1]
    assert study.metric_names == ["val_accuracy"]  # optuna-dashboard's and the history plot's name for the objective


# --- PostgreSQL: the study and an `mlflow server` on one database server ---------------------------------------

@pytest.fixture(scope="module")
def postgres():
    """$XRUN_TEST_POSTGRES_URL (.ci/run starts one), else a server started here with .ci/postgres.sh."""
    url = os.environ.get("XRUN_TEST_POSTGRES_URL")
    stop = None
    if not url:
        script = Path(__file__).resolve().parents[2] / ".ci" / "postgres.sh"
        # Its own folder under /tmp: as root the server runs as `postgres`, who cannot enter pytest's folders.
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"no PostgreSQL server: {done.stderr.strip().splitlines()[-1]}")
        url = done.stdout.strip()
        stop = done.stderr.strip().split("stop it with: ", 1)[1].split()
    yield url
    if stop:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(Path(stop[stop.index("-D") + 1]).parent, ignore_errors=True)


def _database(server_url: str, name: str) -> str:
    """A fresh database on the server (Optuna and MLflow each want their own: both keep an alembic_version)."""
    import psycopg  # SQLAlchemy's driver for postgresql:// URLs (Optuna's and MLflow's)

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def mlflow_server(root: Path, backend: str):
    """`mlflow server` on 127.0.0.1 with its runs in `backend`; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", backend,
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "2"],
                            # as `xrun ui` does: no GenAI job runner, whose busy pool slows a loaded machine
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "mlflow server did not start"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a worker that holds on to its database connections
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.mark.slow
def test_two_workers_share_a_sweep_through_postgresql_and_an_mlflow_server(postgres, tmp_path):
    import optuna

    study_db = _database(postgres, "xrun_sweep_study")
    with mlflow_server(tmp_path, _database(postgres, "xrun_sweep_mlflow")) as server:
        write(tmp_path, "conv.yaml", FOUR)
        args = ["conv.yaml", *GRID, "--tracking-uri", server, "--storage", study_db]
        procs = [worker(tmp_path, *args) for _ in range(2)]
        outputs = [p.communicate(timeout=500) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [line for _, err in outputs for line in err.splitlines()
                                                         if line.startswith("FAILED") or "rror" in line][:6]
        (parent,), children = sweep_runs(server)
        assert len(children) == 4 and {c.status for c in children} == {"FINISHED"}
        assert sorted(c.tags["xrun.variant"] for c in children) == sorted(
            k.replace("kernel_size=29", "kernel_size=5") for k in KEYS)
        assert parent.tags["xrun.study_storage"] == study_db and parent.status == "FINISHED"
        assert sum(sum(": FINISHED in " in line for line in err.splitlines()) for _, err in outputs) == 4
        study = optuna.load_study(study_name=parent.tags["xrun.study"], storage=study_db)
        assert study.user_attrs["xrun.parent_run_id"] == parent.run_id
        assert sorted(t.state.name for t in study.trials if not t.user_attrs.get("xrun.surplus")) == ["COMPLETE"] * 4


# --- the trial's value, from made-up results (no training) ------------------------------------------------------

def test_the_objective_is_the_best_epoch_or_the_test_score():
    result = SimpleNamespace(history={"val_accuracy": [0.5, 0.75, 0.625], "val_loss": [0.9, 0.4, 0.6]},
                             test_accuracy=0.8125, test_loss=0.25)
    assert objective_value(result, "val_accuracy", "maximize") == 0.75
    assert objective_value(result, "val_loss", "minimize") == 0.4
    assert objective_value(result, "test_accuracy", "maximize") == 0.8125
    assert objective_value(result, "test_loss", "minimize") == 0.25


def test_a_metric_the_run_did_not_log_fails_the_trial_with_a_hint():
    result = SimpleNamespace(history={"val_accuracy": []})
    with pytest.raises(XrunError, match="the run logged no 'val_accuracy'") as info:
        objective_value(result, "val_accuracy", "maximize")
    assert info.value.hint == "set sweep.metric to one the run logs"


def test_a_trial_suggests_every_key_as_its_yaml_value(tmp_path):
    import optuna

    from runner.sweep.trials import suggest

    s = space_of(tmp_path, PLAIN + RANDOM, ["model.layers[0].kernel_size=[3,3],[5,5]"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    values = [suggest(study.ask(), s) for _ in range(40)]
    assert all(list(v) == s.keys for v in values)
    assert {tuple(v["model.layers[0].kernel_size"]) for v in values} == {(3, 3), (5, 5)}  # lists, not their text
    assert {type(v["model.layers[0].filters"]) for v in values} == {int}
    assert study.trials[0].distributions["model.layers[0].kernel_size"].choices == ("[3, 3]", "[5, 5]")
