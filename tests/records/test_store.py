"""runner.records.store and the modules behind it: flattening configs to params, where the store and its artifacts
live, the Run writer, interrupts during its writes, and the journal that sync delivers."""

import math
import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from runner.errors import XrunError
from runner.records import connection, failures, journal, query, store


def test_flatten_gives_dotted_keys_json_lists_and_indexed_mappings():
    config = {
        "name": "m", "description": "",
        "optimizer": {"type": "Adam", "learning_rate": 0.001, "epsilon": 1e-07, "amsgrad": False},
        "metrics": ["accuracy"],
        "augmentation": {"zoom_range": [0.9, 1.1]},
        "model": {"input_shape": [28, 28, 1], "layers": [
            {"type": "Conv2D", "filters": 32, "kernel_size": [3, 3]},
            {"block": "b", "name": "set1", "repeat": 2},
            {"type": "Dense", "units": 10, "kernel_regularizer": {"l2": 0.0001}},
        ]},
        "callbacks": [],
        "tracking": {"tags": {}, "log_model": True},
        "training": {"seed": None, "batch_size": 128},
        "nested": [[1, 2], [3]],
    }
    assert store.flatten(config) == {
        "name": "m", "description": "",
        "optimizer.type": "Adam", "optimizer.learning_rate": "0.001", "optimizer.epsilon": "1e-07",
        "optimizer.amsgrad": "false",
        "metrics": '["accuracy"]',
        "augmentation.zoom_range": "[0.9, 1.1]",
        "model.input_shape": "[28, 28, 1]",
        "model.layers.0.type": "Conv2D", "model.layers.0.filters": "32", "model.layers.0.kernel_size": "[3, 3]",
        "model.layers.1.block": "b", "model.layers.1.name": "set1", "model.layers.1.repeat": "2",
        "model.layers.2.type": "Dense", "model.layers.2.units": "10", "model.layers.2.kernel_regularizer.l2": "0.0001",
        "callbacks": "[]",
        "tracking.tags": "{}", "tracking.log_model": "true",
        "training.seed": "null", "training.batch_size": "128",
        "nested.0": "[1, 2]", "nested.1": "[3]",
    }


def test_flatten_cuts_values_to_mlflows_limit():
    flat = store.flatten({"description": "x" * 10_000})
    assert flat == {"description": "x" * store.MAX_PARAM_CHARS}


def test_tracking_uri_prefers_explicit_then_environment_then_local_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/env.db")
    assert store.tracking_uri("sqlite:////x/explicit.db") == "sqlite:////x/explicit.db"
    assert store.tracking_uri() == "sqlite:////somewhere/env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert store.tracking_uri() == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert (tmp_path / "mlruns").is_dir()


def test_ui_command_names_the_store():
    assert store.ui_command("sqlite:////a/b.db") == "mlflow ui --backend-store-uri sqlite:////a/b.db"


@pytest.mark.parametrize("uri, root", [
    ("sqlite:////data/mlruns/mlflow.db", "file:///data/mlruns/artifacts"),
    ("sqlite:////data/elsewhere/runs.db", "file:///data/elsewhere/artifacts"),
    ("http://localhost:5000", None),
    ("sqlite:///:memory:", None),
])
def test_artifacts_live_beside_a_local_sqlite_store(uri, root):
    assert connection._artifact_root(uri) == root


@pytest.fixture
def db(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # sync also looks in ./mlruns: the test's own, not the checkout's
    return uri


def test_run_records_name_description_tags_params_metrics_and_end(db, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # artifacts follow the store, not the working directory
    run = store.Run(db, "exp", "my-run", "what it is", tags={"a": 1, "none": None}, parent_run_id="p1")
    params = {f"p{i:03d}": i for i in range(250)}  # more than one MLflow batch
    run.log_params(params)
    run.log_metrics({"loss": 0.5, "nan": float("nan"), "text": "skip me"}, step=3)
    run.set_tags({"t": True})
    run.log_text("hello", "notes/hello.txt")
    run.end("KILLED")

    got = MlflowClient(db).get_run(run.run_id)
    assert got.info.status == "KILLED" and got.info.run_name == "my-run"
    assert got.data.tags["mlflow.note.content"] == "what it is"
    assert got.data.tags["mlflow.parentRunId"] == "p1"
    assert got.data.tags["a"] == "1" and got.data.tags["t"] == "True" and "none" not in got.data.tags
    assert got.data.params == {k: str(v) for k, v in params.items()}
    assert got.data.metrics["loss"] == 0.5 and math.isnan(got.data.metrics["nan"])
    assert "text" not in got.data.metrics
    experiment = MlflowClient(db).get_experiment_by_name("exp")
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri()
    assert (tmp_path / "artifacts" / run.run_id / "artifacts" / "notes" / "hello.txt").read_text() == "hello"
    assert list(elsewhere.iterdir()) == []


def test_a_second_run_reuses_the_experiment(db):
    first = store.Run(db, "exp", "one")
    second = store.Run(db, "exp", "two")
    assert first.experiment_id == second.experiment_id


def test_an_unreachable_store_is_an_xrun_error_before_anything_trains(tmp_path):
    (tmp_path / "a-file").write_text("")  # a store "inside" a file cannot be created
    with pytest.raises(XrunError, match="cannot reach the MLflow tracking store") as caught:
        store.Run(f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}", "exp", "r")
    assert "MLFLOW_TRACKING_URI" in caught.value.hint


def test_metric_history_reads_back_in_step_order(db):
    run = store.Run(db, "exp", "r")
    for step, value in [(2, 0.2), (1, 0.1), (3, 0.3)]:
        run.log_metrics({"m": value}, step=step)
    assert query.metric_history(run.run_id, "m", db) == [0.1, 0.2, 0.3]


def test_the_store_still_names_what_its_callers_use():
    """The split into modules left every caller's store.NAME in place, each the very object of its new home."""
    from runner.records import delivery, edits, local, values, writer

    homes = {writer: ["Run", "NullRun"], delivery: ["sync", "replay", "end_dead"],
             edits: ["plain_run", "add_to_run", "reopen", "end_run", "delete_run"],
             connection: ["client", "ui_command"],
             local: ["tracking_uri", "is_dead", "STALE_SECONDS", "_process_start"],
             failures: ["stopping", "interrupts_held", "is_store_error", "StoreFailed", "StoreSkipped"],
             values: ["flatten", "model_name", "MAX_PARAM_CHARS"]}
    moved = [(module.__name__, name) for module, names in homes.items() for name in names
             if getattr(store, name) is not getattr(module, name)]
    assert moved == []


def test_only_the_records_layer_imports_mlflow():
    runner = Path(store.__file__).parent.parent
    importers = {p.relative_to(runner).parts[0] for p in runner.rglob("*.py")
                 if "import mlflow" in p.read_text() or "from mlflow" in p.read_text()}
    assert importers == {"records"}


# --- interrupts during store writes --------------------------------------------------------------------------

class Terminated(BaseException):
    pass


@pytest.fixture
def sigterm_raises():
    """A SIGTERM handler like train.py's, put back afterwards."""
    def handler(signum, frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_during_a_store_write_is_delivered_after_the_write(db, sigterm_raises, signum, raised):
    run = store.Run(db, "exp", "r")
    real = run.client.log_batch

    def interrupted_write(*args, **kwargs):
        signal.raise_signal(signum)  # arrives mid-write: SQLAlchemy would turn it into another error
        return real(*args, **kwargs)

    run.client.log_batch = interrupted_write
    with pytest.raises(raised):
        run.log_metrics({"loss": 0.5}, step=1)
    assert MlflowClient(db).get_run(run.run_id).data.metrics == {"loss": 0.5}  # the write completed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is sigterm_raises


def test_a_signal_while_the_handlers_are_swapped_leaves_no_handler_behind(monkeypatch, sigterm_raises):
    real = signal.signal
    calls = []

    def signal_then_fire(signum, handler):
        previous = real(signum, handler)
        calls.append(signum)
        if len(calls) == 1:  # SIGINT is now held, SIGTERM still the raising handler
            signal.raise_signal(signal.SIGTERM)
        return previous

    monkeypatch.setattr(signal, "signal", signal_then_fire)
    with pytest.raises(Terminated):
        with failures._interrupts_held():
            pytest.fail("the body must not run")
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is sigterm_raises


# --- the journal: nothing the store did not confirm is lost ----------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_a_file_the_store_refuses_stays_in_the_journal_and_sync_delivers_it(db, tmp_path, monkeypatch, capsys):
    run = store.Run(db, "exp", "r")
    run.log_metrics({"loss": 0.5}, step=1)
    monkeypatch.setattr(run.client, "log_artifact", _enospc)
    run.log_text("a plot", "plots/curves.txt")  # the run goes on: the store's failure is reported once, at the end
    folder = tmp_path / "journal" / run.run_id
    assert capsys.readouterr().err == (f"xrun: the tracking store did not take curves.txt ([Errno 28] No space left "
                                       f"on device); the run goes on, its files are kept in {folder / 'files'}\n")
    with pytest.raises(store.StoreFailed) as caught:
        run.end("FINISHED", "")
    assert str(caught.value) == (f"the tracking store did not take plots/curves.txt (OSError: [Errno 28] No space "
                                 f"left on device); run {run.run_id[:8]} and its model are kept in {folder}")
    assert (folder / "files" / "plots" / "curves.txt").read_text() == "a plot"
    monkeypatch.undo()
    assert store.sync(db) == [(run.run_id, db, "FINISHED")]
    got = MlflowClient(db).get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"loss": 0.5}
    assert (tmp_path / "artifacts" / run.run_id / "artifacts" / "plots" / "curves.txt").read_text() == "a plot"
    assert not folder.exists() and store.sync(db) == []


def test_a_run_whose_process_died_is_ended_killed_by_sync_with_its_metrics_and_checkpoint(db, tmp_path):
    run = store.Run(db, "exp", "r")
    for step in (1, 2):
        run.log_metrics({"loss": 1.0 / step}, step=step)
    run.journal.checkpoint.parent.mkdir(parents=True)
    run.journal.checkpoint.write_bytes(b"model")
    run.journal.write_state(checkpoint_epoch=2)
    assert store.sync(db) == []  # alive: its journal is locked, and left alone
    run._heartbeat.stop()
    run.journal.close()  # what the process's death does to its lock
    assert store.sync(db) == [(run.run_id, db, "KILLED")]
    got = MlflowClient(db).get_run(run.run_id)
    assert got.info.status == "KILLED" and got.data.tags["xrun.end_reason"] == journal.DIED_REASON
    assert got.data.tags["xrun.checkpoint_epoch"] == "2"
    assert [m.value for m in MlflowClient(db).get_metric_history(run.run_id, "loss")] == [1.0, 0.5]
    assert (tmp_path / "artifacts" / run.run_id / "artifacts" / "checkpoints" / "last.keras").read_bytes() == b"model"


def test_a_store_still_down_keeps_the_journal_and_says_so(db, tmp_path):
    run = store.Run(db, "exp", "r")
    run._heartbeat.stop()
    run.journal.close()
    (tmp_path / "mlflow.db").rename(tmp_path / "moved.db")
    (tmp_path / "mlflow.db").mkdir()  # the store cannot be opened
    connection._READY.discard(db)
    (uri, where, status), = [(r, w, s) for r, w, s in store.sync(db)]
    assert (uri, where) == (run.run_id, db) and status.startswith("not delivered: ")
    assert (tmp_path / "journal" / run.run_id / journal.STATE).is_file()


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_runs_are_recognised_by_their_process_or_their_heartbeat():
    import os
    import time

    here, now = os.uname().nodename, time.time()
    mine = {"xrun.host": here, "xrun.pid": str(os.getpid()), "xrun.process_start": store._process_start(),
            "xrun.heartbeat": str(int(now))}
    assert not store.is_dead("RUNNING", mine)
    assert store.is_dead("RUNNING", mine | {"xrun.pid": str(_dead_pid())})
    assert store.is_dead("RUNNING", mine | {"xrun.process_start": "1"})  # the pid was reused by another process
    assert not store.is_dead("FINISHED", mine | {"xrun.pid": str(_dead_pid())})
    elsewhere = {"xrun.host": "another-machine", "xrun.pid": "1"}
    assert not store.is_dead("RUNNING", elsewhere | {"xrun.heartbeat": str(int(now - 60))})
    assert store.is_dead("RUNNING", elsewhere | {"xrun.heartbeat": str(int(now - store.STALE_SECONDS - 1))})
    assert not store.is_dead("RUNNING", {})  # no heartbeat: not a run xrun can judge


def test_a_new_run_records_where_it_runs(db):
    import os

    run = store.Run(db, "exp", "r")
    tags = MlflowClient(db).get_run(run.run_id).data.tags
    assert tags["xrun.host"] == os.uname().nodename and tags["xrun.pid"] == str(os.getpid())
    assert tags["xrun.process_start"] == store._process_start() and int(tags["xrun.heartbeat"]) > 0
    run.end("FINISHED")
    assert not (Path(db.removeprefix("sqlite:///")).parent / "journal" / run.run_id).exists()


@pytest.mark.parametrize("installed, hint", [
    ((), "pip install 'xrun[postgres]' and write the URI as postgresql+psycopg://USER@HOST/DB"),
    (("psycopg",), "write the URI as postgresql+psycopg://... (psycopg 3 is installed)"),
])
def test_a_postgresql_store_without_its_driver_is_one_clear_line(monkeypatch, installed, hint):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: real(name, *args) if name in installed else None)
    with pytest.raises(XrunError) as caught:
        store.client("postgresql://xrun@127.0.0.1:1/runs")
    assert caught.value.format() == (
        f"the tracking store postgresql://... needs the psycopg2 driver, which is not installed; {hint}")


def test_sync_delivers_metrics_an_older_xrun_kept_in_mlruns_offline(db, tmp_path):
    import json

    run = store.Run(db, "exp", "r")
    run.end("KILLED")
    offline = tmp_path / "mlruns" / "offline"
    offline.mkdir(parents=True)
    (offline / f"{run.run_id}.jsonl").write_text(
        "".join(json.dumps({"key": "loss", "value": v, "timestamp": 1000 + s, "step": s}) + "\n"
                for s, v in [(1, 0.5), (2, 0.25)]))
    (offline / f"{'0' * 32}.jsonl").write_text("")  # a run of another store: left alone
    assert store.sync(db) == [
        ("0" * 32, db, f"not delivered: mlruns/offline/{'0' * 32}.jsonl is for a run that is not in this store"),
        (run.run_id, db, f"2 metric values from mlruns/offline/{run.run_id}.jsonl delivered")]
    assert [m.value for m in MlflowClient(db).get_metric_history(run.run_id, "loss")] == [0.5, 0.25]
    assert [p.name for p in offline.iterdir()] == [f"{'0' * 32}.jsonl"]


# --- what MLflow's UI shows of a run: its Source, its Created by, and the data its linked scores are on -------------

def test_a_run_has_mlflows_source_and_user_tags(db, monkeypatch):
    import getpass

    monkeypatch.setattr("sys.argv", ["/somewhere/bin/xrun", "evaluate", "runs:/x/model"])
    from_file = store.Run(db, "exp", "r", tags={"experiment.file": "experiments/mnist.yaml"})
    from_command = store.Run(db, "exp", "e")
    tags = MlflowClient(db).get_run(from_file.run_id).data.tags
    assert (tags["mlflow.source.name"], tags["mlflow.source.type"]) == ("experiments/mnist.yaml", "LOCAL")
    assert tags["mlflow.user"] == getpass.getuser()
    assert MlflowClient(db).get_run(from_command.run_id).data.tags["mlflow.source.name"] == "xrun evaluate"
    from_file.end("FINISHED")
    from_command.end("FINISHED")


def test_the_test_scores_linked_to_a_logged_model_name_the_data_they_were_measured_on(db):
    import keras
    import numpy as np

    run = store.Run(db, "exp", "r")
    run.log_dataset("mnist", "https://example.com/mnist.npz", "abc123", "mnist", {"train": 8, "test": 2})
    run.log_metrics({"test_accuracy": 0.75}, step=1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    x = np.zeros((2, 2), "float32")
    run.log_model(model, x, model.predict(x, verbose=0), name="m", linked_metrics=("test_accuracy",))
    run.end("FINISHED")
    (logged,) = MlflowClient(db).search_logged_models(experiment_ids=[run.experiment_id])
    assert [(m.key, m.value, m.dataset_name, m.dataset_digest) for m in logged.metrics] == [
        ("test_accuracy", 0.75, "mnist", "abc123")]


# --- reading never creates a store -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["evaluate", "50e96fba"], ["predict", "50e96fba", "x.png"],
                                     ["export", "50e96fba", "--format", "onnx"], ["compare", "50e96fba"]])
def test_a_run_id_looked_up_where_there_is_no_store_names_the_store_and_creates_none(tmp_path, monkeypatch, command):
    from helpers import xrun

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "x.png").write_bytes(b"")
    code, out, err = xrun(*command)
    assert (code, out) == (2, "")
    assert err == (f"there is no MLflow store at {tmp_path.resolve()}/mlruns/mlflow.db: nothing has been recorded "
                   f"there; run xrun in the folder where the runs were recorded (the one holding mlruns/), or give "
                   f"--tracking-uri (or MLFLOW_TRACKING_URI)\n")
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
