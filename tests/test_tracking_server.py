"""xrun against a real `mlflow server` over HTTP on 127.0.0.1, read back through the REST API."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.spec import load_spec

TINY = """\
name: served
description: a run sent over HTTP
data: {dataset: mnist, limit: 256, validation: test}
model:
  layers:
    - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
    - {type: MaxPooling2D, pool_size: 2}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: Adam, learning_rate: 0.01}
loss: CategoricalCrossentropy
training: {epochs: 2, batch_size: 32, seed: 3}
tracking: {experiment: over-http}
"""


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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start within 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_run_lands_on_the_server_and_reads_back_over_rest(server, tmp_path):
    from runner.train import run_experiment

    (tmp_path / "served.yaml").write_text(TINY)
    result = run_experiment(load_spec(tmp_path / "served.yaml"), tracking_uri=server, quiet=True)
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
    from runner.train import run_experiment

    (tmp_path / "served.yaml").write_text(TINY)
    started = time.perf_counter()
    with pytest.raises(XrunError) as error:
        run_experiment(load_spec(tmp_path / "served.yaml"), tracking_uri=f"http://127.0.0.1:{_free_port()}",
                       quiet=True)
    assert time.perf_counter() - started < 15
    assert "is not answering" in error.value.message
    assert error.value.hint.startswith("start it (mlflow server ...)")
