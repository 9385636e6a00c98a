"""The MLflow web UI as a child process of xrun: started on the project's store, stopped with it, never left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from runner.errors import XrunError


def serve(uri: str, host: str, port: int) -> int:
    """Run `mlflow ui` on the store at `uri` until it stops (or xrun is stopped); returns the exit code."""
    command = [*_mlflow_command(), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
               *_one_worker()]
    # MLflow's GenAI job runner would add a pool of busy worker processes that a plain UI never uses, and that
    # outlive the server when it is stopped.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    return _serve(command, env)


def _serve(command: list[str], env: dict, grace_s: float = 20.0) -> int:
    """Run the server until it stops; Ctrl-C and SIGTERM (kill, a test) are passed on to it, so stopping xrun
    never leaves a server behind holding the port."""
    # Its own process group: Ctrl-C reaches it once, through us, and a server that ignores it can be killed whole.
    server = subprocess.Popen(command, env=env, start_new_session=True)
    asked: list[float] = []

    def forward(signum, frame):
        asked.append(time.monotonic())
        server.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = server.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > grace_s:
                    os.killpg(server.pid, signal.SIGKILL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    try:  # whatever the server started and left behind
        os.killpg(server.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    return 0 if asked or code == 0 else code


def _mlflow_command() -> list[str]:
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mlflow"]


def _one_worker() -> list[str]:
    """One server process: a local UI has one user, and MLflow 3's default of four takes long to start."""
    return ["--workers", "1"] if int(version("mlflow").split(".")[0]) >= 3 else []


def check_port_free(host: str, port: int) -> None:

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise XrunError(f"cannot serve on {host}:{port} ({exc.strerror})",
                            hint=f"pick another port, e.g. --port {port + 1}") from None
