"""The logged model as MLflow's clients use it (pyfunc, the scoring server): integers 0-255 and floats in [0, 1]
read right, anything else refused with what it takes, no progress bars."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.pyfunc import scoring_server

from runner.model import standalone
from runner.records import served

PIXELS = np.random.RandomState(0).randint(0, 256, (6, 28, 28)).astype("uint8")
TAKES = "the model takes images of shape (N, 28, 28): pixels 0-255 as integers, or floats in [0, 1]"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small conv net (seeded weights) made standalone and saved as xrun logs it, and what it says on PIXELS."""
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")], name="tiny")
    model = standalone.standalone(inner, (28, 28), "tiny")
    path = tmp_path_factory.mktemp("served") / "model"
    outputs = infer_signature(PIXELS, model.predict(PIXELS, verbose=0)).outputs
    served._Flavor.save_model(str(path), Model(), model, signature=ModelSignature(outputs=outputs),
                              metadata=standalone.metadata("tiny", "mnist", "0123456789", (28, 28)),
                              pip_requirements=["keras"])
    expected = inner.predict(PIXELS[..., None].astype("float32") / 255, verbose=0)
    return path, expected


def test_the_model_keeps_the_keras_flavour_and_runs_xrun_served_as_pyfunc(saved):
    path, expected = saved
    info = Model.load(str(path))
    assert info.flavors["python_function"]["loader_module"] == "xrun_served"
    assert info.flavors["python_function"]["code"] == "code" and (path / "code" / "xrun_served.py").is_file()
    assert info.signature.inputs is None and info.signature.outputs.to_dict() == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, 10)}}]
    assert info.metadata["input"] == ("uint8 pixels 0-255 (integers), or floats in [0, 1] (pixels / 255), shape "
                                      "(N, 28, 28): raw images, scaled inside the model as in training; other "
                                      "values are refused")
    keras_model = mlflow.keras.load_model(str(path))
    np.testing.assert_allclose(keras_model.predict(PIXELS, verbose=0), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["uint8", "int64", "unit floats", "float32 unit", "flat DataFrame"])
def test_pyfunc_reads_integers_and_unit_floats_alike_without_a_progress_bar(saved, kind, capfd):
    path, expected = saved
    given = {"uint8": PIXELS, "int64": PIXELS.astype("int64"), "unit floats": PIXELS / 255,
             "float32 unit": (PIXELS / np.float32(255)).astype("float32"),
             "flat DataFrame": pd.DataFrame(PIXELS.reshape(6, -1))}[kind]
    model = mlflow.pyfunc.load_model(str(path))
    capfd.readouterr()
    np.testing.assert_allclose(model.predict(given), expected, rtol=0, atol=1e-6)
    assert capfd.readouterr().out == ""  # Keras's predict would print `1/1 ━━━━ 0s 40ms/step`


@pytest.mark.parametrize("given, message", [
    (PIXELS.astype("float64"), "floats are read as pixels scaled to [0, 1] (pixels / 255); got values from 0.0 to "
                               "255.0: send 0-255 pixels as integers (uint8), or divide them by 255"),
    (PIXELS.astype("int64") + 1, "integers are read as pixels 0-255; got values from 1 to 256"),
    (np.full((1, 28, 28), np.nan), "floats are read as pixels scaled to [0, 1] (pixels / 255); got values that "
                                   "are not numbers: send 0-255 pixels as integers (uint8), or divide them by 255"),
    (PIXELS[:, :27], f"got an input of shape (6, 27, 28); {TAKES}"),
    (PIXELS.astype(bool), f"got bool values; {TAKES}"),
])
def test_pyfunc_refuses_what_it_would_misread_saying_what_it_takes(saved, given, message):
    model = mlflow.pyfunc.load_model(str(saved[0]))
    with pytest.raises(MlflowException) as caught:
        model.predict(given)
    assert caught.value.message == message and caught.value.error_code == "INVALID_PARAMETER_VALUE"


def score(model, body: str, content_type: str = "application/json"):
    """What `mlflow models serve` does with a request (its /invocations handler), without the HTTP."""
    return scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())


@pytest.mark.parametrize("pixels", [PIXELS.tolist(), (PIXELS / 255).tolist()], ids=["integers", "unit floats"])
def test_the_scoring_server_reads_json_integers_and_unit_floats_alike(saved, pixels):
    path, expected = saved
    answer = score(mlflow.pyfunc.load_model(str(path)), json.dumps({"inputs": pixels}))
    assert answer.status == 200
    np.testing.assert_allclose(np.array(json.loads(answer.response)["predictions"]), expected, rtol=0, atol=1e-6)


def test_the_scoring_server_reads_csv_rows_of_flat_pixels(saved):
    path, expected = saved
    csv = pd.DataFrame(PIXELS.reshape(6, -1)).to_csv(index=False)
    answer = score(mlflow.pyfunc.load_model(str(path)), csv, "text/csv")
    np.testing.assert_allclose(np.array(json.loads(answer.response)["predictions"]), expected, rtol=0, atol=1e-6)


def test_the_scoring_server_refuses_json_floats_of_0_to_255(saved):
    model = mlflow.pyfunc.load_model(str(saved[0]))
    with pytest.raises(MlflowException) as caught:
        score(model, json.dumps({"inputs": PIXELS[:1].astype(float).tolist()}))
    assert caught.value.message.endswith(
        "Error: floats are read as pixels scaled to [0, 1] (pixels / 255); got values from 0.0 to 255.0: send "
        "0-255 pixels as integers (uint8), or divide them by 255")
    assert caught.value.get_http_status_code() == 400


@pytest.mark.slow
def test_mlflow_models_serve_answers_unit_floats_right_and_refuses_0_to_255_floats_with_400(saved, tmp_path):
    path, expected = saved
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", str(path), "--env-manager", "local",
                                   "-h", "127.0.0.1", "-p", str(port)], stdout=log_file, stderr=log_file, env=env)
    try:
        _wait(f"http://127.0.0.1:{port}/ping", server, log)
        ok = _post(port, {"inputs": (PIXELS / 255).tolist()})
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(port, {"inputs": PIXELS.astype(float).tolist()})
        error = json.loads(refused.value.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    np.testing.assert_allclose(np.array(ok["predictions"]), expected, rtol=0, atol=1e-6)
    assert refused.value.code == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert error["message"].endswith("got values from 0.0 to 255.0: send 0-255 pixels as integers (uint8), or "
                                     "divide them by 255")
    assert "━" not in log.read_text()  # no progress bar in the server's output


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def _wait(url: str, server: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"mlflow models serve did not answer {url} in {seconds}s")
