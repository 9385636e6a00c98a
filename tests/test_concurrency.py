"""Several xrun processes writing to one default SQLite store at once: every run lands complete."""

import os
import subprocess
import sys

import pytest
from helpers import tiny_yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # real xrun processes train at once

PROCESSES = 4

TINY = tiny_yaml(experiment="concurrent", tracking=", log_model: false")


def test_four_processes_share_a_fresh_sqlite_store(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default store, fresh
    procs = [subprocess.Popen([sys.executable, "-m", "runner.cli", "tiny.yaml", "-q", "--set", f"name=tiny{i}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(PROCESSES)]
    outputs = [p.communicate(timeout=540) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
        assert "database is locked" not in err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"tiny{i}" for i in range(PROCESSES)]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
        assert "test_accuracy" in run.data.metrics
        assert run.data.params["training.epochs"] == "2"
