"""One process at a time resumes a run: two `xrun FILE --resume ID` started together on one SQLite store, and
exactly one of them resumes while the other is refused with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from helpers import DATA_DIR, experiment, only_run, store_uri, train, write_experiment

from runner.records import names
from runner.running import claim as claiming

pytestmark = pytest.mark.slow  # trains a model and starts processes

XRUN = Path(sys.executable).with_name("xrun")


class _StopAt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def killed_run(tmp_path: Path) -> tuple[Path, str, str]:
    path = write_experiment(tmp_path, experiment(data={"dataset": "mnist", "limit": 128, "validation": "none"},
                                                 training={"epochs": 2, "batch_size": 64, "seed": 1}))
    with pytest.raises(KeyboardInterrupt):
        train(path, extra_callbacks=[_StopAt()])
    uri = store_uri(tmp_path)
    return path, uri, only_run(uri).info.run_id


def test_two_resumes_started_together_one_resumes_the_other_is_refused(tmp_path):
    path, uri, run_id = killed_run(tmp_path)
    command = [str(XRUN), str(path), "--resume", run_id, "--tracking-uri", uri, "--data-dir", DATA_DIR, "-q"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    done = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read(), p.pid) for p in procs]
    codes = sorted(code for code, *_ in done)
    assert codes == [0, 2], done
    (_, _, _, winner), = [d for d in done if d[0] == 0]
    (_, out, err, _), = [d for d in done if d[0] == 2]
    assert out == ""
    assert err.strip().splitlines()[-1] == (
        f"run {run_id[:8]} is being resumed by process {winner} on {os.uname().nodename}; "
        "wait for it to end; one process at a time may resume a run")
    run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.RESUMED_FROM_EPOCH] == "1"
    assert run.data.tags[names.RESUME_CLAIM].split()[1] == str(winner)


def test_a_claim_left_by_a_dead_process_does_not_block(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    _, uri, run_id = killed_run(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    MlflowClient(uri).set_tag(run_id, names.RESUME_CLAIM, f"{os.uname().nodename} {dead.stdout.strip()} 1 1")
    monkeypatch.setattr(claiming, "SETTLE_SECONDS", 0)
    claiming.claim(uri, run_id)
    assert MlflowClient(uri).get_run(run_id).data.tags[names.RESUME_CLAIM].split()[1] == str(os.getpid())
