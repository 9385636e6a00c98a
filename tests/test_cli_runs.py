"""The run-browsing commands as a user starts them: `xrun ui` serving the project's store, and the real entry point's
exit codes and one-line errors."""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import store_uri

from runner.cli import main
from runner.records import store

XRUN = Path(sys.executable).with_name("xrun")
# No proxy for 127.0.0.1, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    with _OPENER.open(url, timeout=5) as response:
        return response.status, response.read()


def wait_for(url: str, seconds: float, server: subprocess.Popen) -> tuple[int, bytes]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the UI stopped before it answered"
        try:
            return get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.mark.slow
def test_ui_serves_the_sqlite_store_under_mlruns_and_stops_with_xrun(tmp_path):
    cwd = tmp_path.resolve()
    (cwd / "mlruns").mkdir()
    uri = store_uri(cwd / "mlruns")
    store.client(uri).create_experiment("ui-probe")  # something only this store holds
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    port = free_port()
    server = subprocess.Popen([str(XRUN), "ui", "--port", str(port)], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        status, body = wait_for(f"http://127.0.0.1:{port}/health", 90, server)
        assert (status, body) == (200, b"OK")
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
        status, body = get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                           "?experiment_name=ui-probe")
        assert status == 200 and json.loads(body)["experiment"]["name"] == "ui-probe"
    finally:
        server.terminate()
        code = server.wait(60)
    stderr = server.stderr.read()
    assert code == 0, stderr
    assert stderr.splitlines()[0] == f"MLflow UI for {uri} at http://127.0.0.1:{port}  (Ctrl-C stops it)"
    # Stopping xrun stopped the server: nothing is left listening on the port.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_ui_on_a_port_in_use_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["ui", "--port", str(port)])
    assert code == 2
    assert err.getvalue() == f"cannot serve on 127.0.0.1:{port} (Address already in use); " \
                             f"pick another port, e.g. --port {port + 1}\n"


def test_the_entry_point_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri(tmp_path)}
    done = subprocess.run([str(XRUN), "compare"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "no runs to compare; no runs are recorded yet; train one with `xrun FILE`\n"
