"""xrun against a real `mlflow server` over HTTP on 127.0.0.1, read back through the REST API."""

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import start_mlflow_server, tiny_yaml

from runner.errors import XrunError
from runner.language.spec import load_spec

pytestmark = pytest.mark.slow  # every test starts a real mlflow server

TINY = tiny_yaml("served", experiment="over-http", seed=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _start_server(root: Path, port: int) -> subprocess.Popen:
    return start_mlflow_server(root, port, timeout_s=90)


def _stop(proc: subprocess.Popen) -> None:
    import os
    import signal

    os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    proc = _start_server(tmp_path_factory.mktemp("server"), port)
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def test_run_lands_on_the_server_and_reads_back_over_rest(server, tmp_path):
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    (tmp_path / "served.yaml").write_text(TINY)
    result = run_experiment(RunRequest(load_spec(tmp_path / "served.yaml"), tracking_uri=server, quiet=True))
    api = server + "/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name=over-http")["experiment"]
    runs = _post(f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert [r["info"]["run_id"] for r in runs] == [result.run_id]
    run = runs[0]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"] == "served"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["training.seed"] == "3" and params["data.limit"] == "256"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    history = _get(f"{api}/metrics/get-history?run_id={result.run_id}&metric_key=val_loss")["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2]
    listed = _get(f"{api}/artifacts/list?run_id={result.run_id}&path=config")
    assert {f["path"] for f in listed["files"]} >= {"config/served.yaml", "config/resolved.yaml"}


def test_unreachable_server_fails_fast_before_training(tmp_path):
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    (tmp_path / "served.yaml").write_text(TINY)
    started = time.perf_counter()
    with pytest.raises(XrunError) as error:
        run_experiment(RunRequest(load_spec(tmp_path / "served.yaml"), tracking_uri=f"http://127.0.0.1:{_free_port()}",
                       quiet=True))
    assert time.perf_counter() - started < 15
    assert "is not answering" in error.value.message
    assert error.value.hint.startswith("start it (mlflow server ...)")


def test_a_server_lost_mid_run_costs_no_metrics(tmp_path, monkeypatch, capfd):
    """Training goes on while the server is down; the kept metrics reach it when it is back."""
    import keras

    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    root, port = tmp_path / "server", _free_port()
    root.mkdir()
    state = {"proc": _start_server(root, port)}

    class Outage(keras.callbacks.Callback):  # runs before xrun logs the epoch
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                _stop(state["proc"])
            if epoch == 2:
                state["proc"] = _start_server(root, port)

    (tmp_path / "served.yaml").write_text(TINY.replace("epochs: 2", "epochs: 4"))
    try:
        result = run_experiment(RunRequest(load_spec(tmp_path / "served.yaml"), tracking_uri=f"http://127.0.0.1:{port}",
                                quiet=True, extra_callbacks=[Outage()]))
    finally:
        _stop(state["proc"]) if state["proc"].poll() is None else None
    state["proc"] = _start_server(root, port)
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    history = _get(f"{api}/metrics/get-history?run_id={result.run_id}&metric_key=val_loss")["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2, 3, 4]
    run = _get(f"{api}/runs/get?run_id={result.run_id}")["run"]
    assert run["info"]["status"] == "FINISHED"
    journal = tmp_path / "mlruns" / "journal" / result.run_id
    assert not journal.exists()  # the run's journal held every value until the store had them all
    err = capfd.readouterr().err
    assert "cannot reach the tracking store" in err and "the tracking store is back" in err
    assert f"(a copy is in {journal / 'metrics.jsonl'})" in err
    _stop(state["proc"])
