"""`xrun sweep` as an Optuna study: the search space, nested runs, failures, a re-run, several workers on one
study (processes, a SIGKILLed one, PostgreSQL), pruning, and the parent's reports."""

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

import pytest
from helpers import artifact_paths, artifact_text, store_uri, xrun

from runner import sweep as sw
from runner.errors import XrunError
from runner.language import schema
from runner.language.spec import load_spec
from runner.records import query
from runner.records import tables as cmp

# Unseeded on purpose: a sweep must give all its trials one seed. kernel_size 29 does not fit a 28x28 image, so
# those trials fail when the model is built.
CONV = """\
name: conv
description: A tiny conv net for the sweep tests.
data: {dataset: mnist, limit: 128, validation: test}
model:
  layers:
    - {type: Conv2D, filters: 2, kernel_size: 3, activation: relu}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: SGD, learning_rate: 0.01}
loss: SparseCategoricalCrossentropy
training: {epochs: 1, batch_size: 64}
tracking: {experiment: sweep-test, log_model: false, log_images: false}
sweep:
  grid:
    model.layers[0].kernel_size: [3, 29]
"""
GRID = ["--grid", "training.batch_size=32,64"]
KEYS = ["model.layers[0].kernel_size=3 training.batch_size=32", "model.layers[0].kernel_size=3 training.batch_size=64",
        "model.layers[0].kernel_size=29 training.batch_size=32", "model.layers[0].kernel_size=29 training.batch_size=64"]
RANDOM = """\
sweep:
  method: tpe
  trials: 6
  seed: 7
  random:
    optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
    optimizer.momentum: {uniform: [0.5, 0.9]}
    training.batch_size: {choice: [16, 32, 64]}
    model.layers[0].filters: {randint: [1, 4]}
"""
# Four points that all train: what the workers of one study split between them.
FOUR = CONV.replace("[3, 29]", "[3, 5]")
WORKER_ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "XRUN_STUDY_STORAGE")}


def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(text)
    return path


def sweep_runs(uri: str) -> tuple[list, list]:
    """(parents, children) of the sweep experiment, newest first."""
    runs = query.find_runs(uri, experiments=["sweep-test"])
    return [r for r in runs if cmp.is_sweep_parent(r)], [r for r in runs if not cmp.is_sweep_parent(r)]


def study_of(folder: Path, name: str | None = None):
    import optuna

    storage = f"sqlite:///{folder / 'optuna.db'}"
    name = name or optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage)


def worker(folder: Path, *args) -> subprocess.Popen:
    """One `xrun sweep` process, as another machine would start it."""
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "sweep", *map(str, args)], cwd=folder,
                            env=WORKER_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- one worker, in this process -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 4-point grid whose two kernel-29 points fail, run, then run again (the study has nothing left)."""
    folder = tmp_path_factory.mktemp("sweep")
    uri = store_uri(folder)
    write(folder, "conv.yaml", CONV)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("XRUN_STUDY_STORAGE", raising=False)
        first = xrun("sweep", "conv.yaml", *GRID, "--tracking-uri", uri)
        first_runs = sweep_runs(uri)
        second = xrun("sweep", "conv.yaml", *GRID, "--tracking-uri", uri, "--format", "json")
        yield {"uri": uri, "folder": folder, "first": first, "first_runs": first_runs, "second": second,
               "second_runs": sweep_runs(uri)}


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


@pytest.mark.slow
def test_the_parent_has_the_study_reports_and_the_best_trial(swept):
    (parent,), children = swept["second_runs"]
    files = artifact_paths(swept["uri"], parent.run_id)
    assert {"plots/optimization_history.png", "plots/param_importances.png", "sweep/best_trial.json",
            "sweep/space.txt"} <= files
    top = max(c.metrics["best_val_accuracy"] for c in children)
    best = next(c for c in children if c.run_id == parent.tags["best.run_id"])  # the first of any tied
    assert best.metrics["best_val_accuracy"] == top == pytest.approx(parent.metrics["best_val_accuracy"])
    assert parent.tags["best.training.batch_size"] == best.params["training.batch_size"]
    assert json.loads(artifact_text(swept["uri"], parent.run_id, "sweep/best_trial.json"))["params"] == {
        "model.layers[0].kernel_size": 3, "training.batch_size": int(best.params["training.batch_size"])}


@pytest.mark.slow
def test_compare_a_sweep_parent_means_its_trials(swept):
    (parent,), _ = swept["second_runs"]
    code, out, _ = xrun("compare", parent.run_id[:8], "--format", "json", "--tracking-uri", swept["uri"])
    rows = json.loads(out)
    assert code == 0 and [r["training.batch_size"] for r in rows] in (["32", "64"], ["64", "32"])
    # kernel_size is no column (both trials that ran had 3), so the names keep it
    assert {r["name"] for r in rows} == {"conv [kernel_size=3 batch_size=32]", "conv [kernel_size=3 batch_size=64]"}
    assert list(rows[0])[:3] == ["name", "run", "training.batch_size"]


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
    assert len(query.metric_history(pruned.run_id, "val_accuracy", uri)) == 1
    assert "[trial 1] optimizer.learning_rate=1e-06: PRUNED in " in err and "1 finished, 1 pruned, 0 failed" in err
    assert {r["run"]: r["status"] for r in json.loads(out)} == {run["0.01"].run_id: "FINISHED",
                                                                 pruned.run_id: "PRUNED"}
    study = study_of(tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert list(study.trials[1].intermediate_values) == [1]


# --- PostgreSQL: the study and an `mlflow server` on one database server ---------------------------------------

@pytest.fixture(scope="module")
def postgres():
    """$XRUN_TEST_POSTGRES_URL (.ci/run starts one), else a server started here with .ci/postgres.sh."""
    url = os.environ.get("XRUN_TEST_POSTGRES_URL")
    stop = None
    if not url:
        script = Path(__file__).resolve().parent.parent / ".ci" / "postgres.sh"
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


# --- the search space, without training ------------------------------------------------------------------------

def test_dry_run_lists_the_grid_from_the_yaml_and_from_grid(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV)
    code, out, _ = xrun("sweep", path, "--dry-run")
    assert code == 0 and out == "  1  model.layers[0].kernel_size=3\n  2  model.layers[0].kernel_size=29\n"
    _, out, _ = xrun("sweep", path, "--dry-run", *GRID)
    assert out.splitlines() == [f"{i:3d}  {k}" for i, k in enumerate(KEYS, 1)]
    _, out, _ = xrun("sweep", path, "--dry-run", "--grid", "model.layers[0].kernel_size=5,7")
    assert out == "  1  model.layers[0].kernel_size=5\n  2  model.layers[0].kernel_size=7\n"
    assert not (tmp_path / "mlruns").exists()  # nothing recorded


def test_dry_run_of_a_search_lists_its_space(tmp_path):
    path = write(tmp_path, "tpe.yaml", CONV.split("sweep:")[0] + RANDOM)
    code, out, _ = xrun("sweep", path, "--dry-run", "--grid", "model.layers[0].kernel_size=3,5")
    assert code == 0 and out.splitlines() == [
        "6 trials drawn by tpe from:", "  model.layers[0].kernel_size: choice of 3, 5",
        "  optimizer.learning_rate: loguniform 0.0001, 0.1", "  optimizer.momentum: uniform 0.5, 0.9",
        "  training.batch_size: choice 16, 32, 64", "  model.layers[0].filters: randint 1, 4"]


def test_dry_run_loads_neither_tensorflow_nor_mlflow_nor_optuna(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV)
    probe = ("import sys\nfrom runner.cli import main\ncode = main(['sweep', sys.argv[1], '--dry-run'])\n"
             "print(code, *(m in sys.modules for m in ('tensorflow', 'mlflow', 'optuna')))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False False False", done.stderr


def test_random_keys_become_optuna_distributions(tmp_path):
    import optuna

    from runner.sweep import study as st
    from runner.sweep.trials import suggest

    spec = load_spec(write(tmp_path, "tpe.yaml", CONV.split("sweep:")[0] + RANDOM.replace("tpe", "random")))
    s = sw.space(spec)
    study = optuna.create_study(sampler=st.sampler(s, 0))
    drawn = [suggest(study.ask(), s) for _ in range(300)]
    lrs = [d["optimizer.learning_rate"] for d in drawn]
    assert all(isinstance(v, float) and 1e-4 <= v <= 1e-1 for v in lrs)
    assert sum(v < 1e-3 for v in lrs) > 50 and sum(v > 1e-2 for v in lrs) > 50  # log-uniform: each decade
    assert {d["model.layers[0].filters"] for d in drawn} == {1, 2, 3, 4}
    assert {d["training.batch_size"] for d in drawn} == {16, 32, 64}
    assert all(0.5 <= d["optimizer.momentum"] <= 0.9 for d in drawn)
    assert study.trials[0].distributions["optimizer.learning_rate"] == \
        optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)


def test_each_trial_draws_from_its_own_seed_and_sweep_seeds_do_not_overlap(tmp_path):
    import optuna

    from runner.sweep import study as st
    from runner.sweep.trials import suggest

    def first_draw(seed: int, trial: int) -> dict:
        spec = load_spec(write(tmp_path, "r.yaml", CONV.split("sweep:")[0] + RANDOM.replace("seed: 7", f"seed: {seed}")))
        study = optuna.create_study(sampler=st.sampler(sw.space(spec), trial))
        return suggest(study.ask(), sw.space(spec))

    assert first_draw(0, 1) == first_draw(0, 1)  # the same trial of the same sweep: the same values, on any worker
    assert first_draw(0, 1) != first_draw(1, 0) and first_draw(0, 0) != first_draw(0, 1)


def test_surplus_trials_past_the_grid_are_recognised(tmp_path):
    """Optuna's GridSampler gives trial numbers 0..N-1 the N points; a trial asked for after them (two workers
    asking at once for the last point) is surplus, and so is one past `trials` draws."""
    import optuna

    from runner.sweep import study as st

    spec = load_spec(write(tmp_path, "conv.yaml", CONV))
    s = sw.space(spec, ["training.batch_size=32,64"])
    study = optuna.create_study(sampler=st.sampler(s, 0))
    trials = [study.ask() for _ in range(5)]
    assert [st.is_surplus(study, t, s) for t in trials] == [False] * 4 + [True]
    assert st.progress(study, s).to_start == 0 and st.progress(study, s).running == 5
    draws = sw.space(load_spec(write(tmp_path, "r.yaml", CONV.split("sweep:")[0] + RANDOM)))
    study = optuna.create_study()
    assert [st.is_surplus(study, study.ask(), draws) for _ in range(7)] == [False] * 6 + [True]


def test_study_storage_defaults_beside_the_mlflow_store_and_hides_passwords(tmp_path, monkeypatch):
    from runner.sweep import study as st

    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    assert st.storage_url(None, f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.setenv("XRUN_STUDY_STORAGE", "postgresql://u:secret@db:5432/s")
    assert st.storage_url(None, "http://mlflow:5000") == "postgresql://u:secret@db:5432/s"
    assert st.storage_url("sqlite:///x.db", "http://mlflow:5000") == "sqlite:///x.db"
    assert st.redacted("postgresql://u:secret@db:5432/s") == "postgresql://u:***@db:5432/s"
    with pytest.raises(XrunError, match=r"cannot open the study storage nosuchdb://u:\*\*\*@h/s"):
        st.open_storage("nosuchdb://u:pw@h/s", heartbeat=1, grace=2, on_stale=None)


def test_samplers_and_pruners_are_the_schema_s():
    from runner.sweep import study as st

    section = schema.schema()["properties"]["sweep"]["properties"]
    assert ["grid", *st.SAMPLERS] == section["method"]["enum"]
    assert list(st.PRUNERS) == section["pruner"]["then"]["enum"]


@pytest.mark.parametrize("section, message", [
    ("sweep: {method: grid, grid: {training.epochs: [1]}, random: {training.batch_size: {choice: [8]}}}",
     "13:17: sweep.method: method grid tries every point of sweep.grid, and cannot draw sweep.random; use method: "
     "random, tpe or cmaes (each grid key is then a choice), or list the values in sweep.grid"),
    ("sweep: {method: tpe, grid: {training.epochs: [1, 2]}}",
     "13:17: sweep.method: method tpe needs sweep.trials (how many trials to draw); e.g. trials: 20"),
    ("sweep: {method: cmaes, trials: 3, grid: {training.epochs: [1, 2]}}",
     "13:17: sweep.method: method cmaes searches numbers: it needs sweep.random with uniform, loguniform or "
     "randint keys; use method: tpe for grid keys"),
    ("sweep: {grid: {training.epochs: [1, 2]}, metric: val_f1}",
     "13:50: sweep.metric: the runs log no metric 'val_f1'; one of loss, accuracy, val_loss, val_accuracy, "
     "test_accuracy, test_loss"),
    ("sweep: {grid: {training.epochs: [1, 2]}, metric: test_accuracy, pruner: median}",
     "13:73: sweep.pruner: test_accuracy is measured once, after training: a pruner has nothing to compare per "
     "epoch; prune on an epoch metric (metric: val_accuracy), or use pruner: none"),
    ("sweep: {grid: {training.epochs: [1, 2]}, pruner: {type: median, n_startup: 1}}",
     "13:65: sweep.pruner.n_startup: unknown key 'n_startup' for median; did you mean 'n_startup_trials'?"),
    ("sweep: {grid: {training.epochs: [1, 2]}, pruner: medain}",
     "13:50: sweep.pruner: unknown value 'medain'; did you mean 'median'?"),
])
def test_a_bad_sweep_section_is_one_located_error(tmp_path, section, message):
    path = write(tmp_path, "bad.yaml", CONV.split("sweep:")[0] + section + "\n")
    code, out, err = xrun("sweep", path, "--dry-run")
    assert code == 2 and err == f"{path}:{message}\n"


def test_short_names_abbreviate_keys_and_values():
    assert sw.short_name({"model.layers[0].kernel_size": 3, "training.batch_size": 32}) == "kernel_size=3 batch_size=32"
    assert sw.short_name({"model.layers[0].filters": 4, "model.layers[2].filters": 8}) == \
        "layers[0].filters=4 layers[2].filters=8"
    assert sw.short_name({"optimizer.learning_rate": 0.000123456, "model.layers[0].activation": "a" * 30}) == \
        "learning_rate=0.000123 activation=" + "a" * 15 + "…"


def test_grid_option_values_are_yaml():
    assert sw.parse_grid_option("optimizer.learning_rate=1e-3, 0.01") == ("optimizer.learning_rate", [0.001, 0.01])
    assert sw.parse_grid_option("model.layers[0].kernel_size=[3,3],[5,5]") == \
        ("model.layers[0].kernel_size", [[3, 3], [5, 5]])
    assert sw.parse_grid_option("model.layers[1].activation=relu,'a,b'")[1] == ["relu", "a,b"]
    with pytest.raises(XrunError, match="expected KEY=V1,V2"):
        sw.parse_grid_option("training.batch_size")


def test_values_become_set_texts_that_read_back():
    assert [sw.yaml_value(v) for v in (1e-05, 1e12, 3.0, 64, True, "relu", "a: b", [3, 3])] == \
        ["1e-05", "1e+12", "3.0", "64", "true", "relu", '"a: b"', "[3, 3]"]


def test_list_values_are_choices_by_their_text_and_read_back():
    from runner.sweep.space import choices, from_choice

    values = [[3, 3], [5, 5]]
    assert choices(values) == ["[3, 3]", "[5, 5]"] and from_choice("[5, 5]", values) == [5, 5]
    assert choices([3, 5]) == [3, 5] and from_choice(5, [3, 5]) == 5


@pytest.mark.parametrize("args, message", [
    (["--grid", "training.batch_size=0,64"], "--set training.batch_size=0: training.batch_size: "),
    (["--grid", "training.batchsize=1"], "--set training.batchsize=1: unknown key 'training.batchsize'"),
    (["--grid", "training.batch_size"], "--grid training.batch_size: expected KEY=V1,V2,..."),
])
def test_a_bad_variant_stops_the_sweep_before_anything_trains(tmp_path, args, message):
    path = write(tmp_path, "conv.yaml", CONV)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for extra in (["--dry-run"], ["--tracking-uri", uri]):
        code, out, err = xrun("sweep", path, *args, *extra)
        assert code == 2 and out == "" and err.startswith(message), err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_nothing_to_sweep_and_a_key_swept_twice(tmp_path):
    plain = write(tmp_path, "plain.yaml", CONV.split("sweep:")[0])
    code, _, err = xrun("sweep", plain, "--dry-run")
    assert code == 2 and "nothing to sweep" in err and err.count("\n") == 1
    twice = write(tmp_path, "twice.yaml", CONV + "  random:\n    model.layers[0].kernel_size: {choice: [3, 5]}\n")
    code, _, err = xrun("sweep", twice, "--dry-run")
    assert code == 2 and "model.layers[0].kernel_size is both in sweep.grid and sweep.random" in err
