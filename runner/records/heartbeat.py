"""The signs that a run's process is alive: tags saying where it runs, and a thread that refreshes its
heartbeat while it does."""

from __future__ import annotations

import os
import threading

from mlflow.tracking import MlflowClient

from runner.records import names
from runner.records.local import _process_start
from runner.records.values import _now_ms

HEARTBEAT_SECONDS = names.RUN_HEARTBEAT_SECONDS


def _process_tags() -> dict:
    """Where the run is trained: a RUNNING run whose process is gone from this host is dead (see is_dead)."""
    return {names.HOST: os.uname().nodename, names.PID: os.getpid(), names.PROCESS_START: _process_start(),
            names.HEARTBEAT: _now_ms() // 1000}


class _Heartbeat:
    """Refreshes the run's xrun.heartbeat tag every HEARTBEAT_SECONDS from a thread of its own, so a run in a
    long epoch is not taken for dead; a store that does not answer only delays it."""

    def __init__(self, uri: str, run_id: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(uri, run_id), daemon=True, name="xrun-heartbeat")
        self._thread.start()

    def _beat(self, uri: str, run_id: str) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                MlflowClient(uri).set_tag(run_id, names.HEARTBEAT, str(_now_ms() // 1000))
            except Exception:  # noqa: BLE001, S112 - the next beat tries again; the run's own writes report problems
                continue

    def stop(self) -> None:
        self._stop.set()
