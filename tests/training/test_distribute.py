"""Distributed training through tf.distribute: two workers on 127.0.0.1, mirrored on a split CPU, the cluster set-up."""

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import tiny_yaml
from mlflow.tracking import MlflowClient

from runner.cli import main
from runner.errors import XrunError
from runner.training import distribute

pytestmark = pytest.mark.slow  # real workers train

TINY = tiny_yaml(experiment="distributed", limit=512, batch_size=64, tracking=", log_model: false, log_images: false")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _xrun(cwd, *args, env=None):
    environment = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TF_CONFIG")}
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "tiny.yaml", "-q", *args], cwd=cwd,
                            env={**environment, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _runs(cwd):
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("distributed")
    return client, client.search_runs([experiment.experiment_id])


def test_two_workers_train_as_one_job_and_only_the_chief_records(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    workers = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    procs = [_xrun(tmp_path, "--workers", workers, "--worker-index", str(i)) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "worker 0 records the run" in outputs[1][0]
    single = _xrun(tmp_path, "--set", "name=single")
    assert single.wait(timeout=300) == 0
    client, runs = _runs(tmp_path)
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == ["single", "tiny"]  # exactly one run for the two-worker job
    job = by_name["tiny"]
    assert job.info.status == "FINISHED"
    assert job.data.params["runtime.workers"] == "2"
    assert job.data.params["runtime.replicas"] == "2"
    assert job.data.params["runtime.global_batch_size"] == "64"
    assert job.data.params["runtime.per_replica_batch_size"] == "32"
    assert [m.step for m in client.get_metric_history(job.info.run_id, "loss")] == [1, 2]
    # Same global batch, same seed: the two-worker job learns what one process learns.
    assert job.data.metrics["test_loss"] == pytest.approx(by_name["single"].data.metrics["test_loss"], abs=0.1)
    assert job.data.metrics["test_accuracy"] == pytest.approx(by_name["single"].data.metrics["test_accuracy"],
                                                              abs=0.05)


def test_mirrored_on_a_cpu_split_in_two(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    proc = _xrun(tmp_path, "--set", "training.distribute=mirrored", env={distribute.CPU_DEVICES_ENV: "2"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    _, runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["runtime.distribute"] == "MirroredStrategy"
    assert runs[0].data.params["runtime.replicas"] == "2"
    assert runs[0].data.params["runtime.per_replica_batch_size"] == "32"


def test_cluster_config_names_this_worker():
    config = json.loads(distribute.cluster_config(["a:1", "b:2"], 1))
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}


def test_chief_is_worker_zero_or_an_explicit_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief() and distribute.worker_count() == 1 and distribute.worker_index() == 0
    monkeypatch.setenv("TF_CONFIG", distribute.cluster_config(["a:1", "b:2"], 1))
    assert not distribute.is_chief() and distribute.worker_count() == 2 and distribute.worker_index() == 1
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                                                "task": {"type": "chief", "index": 0}}))
    assert distribute.is_chief() and distribute.worker_count() == 2


def test_bad_cluster_settings_are_one_line_errors(monkeypatch, tmp_path, capsys):
    with pytest.raises(XrunError, match=r"--worker-index 2 is not one of the 2 workers"):
        distribute.cluster_config(["a:1", "b:2"], 2)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(XrunError, match="TF_CONFIG is not valid JSON"):
        distribute.cluster()
    monkeypatch.delenv("TF_CONFIG")
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert main(["run", str(tmp_path / "tiny.yaml"), "--workers", "a:1,b:2"]) == 2
    assert "--workers and --worker-index go together" in capsys.readouterr().err


SWEPT = tiny_yaml(experiment="distributed", limit=512, epochs=1, batch_size=64,
                  tracking=", log_model: false, log_images: false",
                  extra="sweep: {grid: {training.batch_size: [16, 32, 64, 128]}}\n")


def test_two_machines_share_one_sweep_without_running_a_variant_twice(tmp_path):
    """Two `xrun sweep` processes on one store stand for two machines sharing a tracking server."""
    (tmp_path / "tiny.yaml").write_text(SWEPT)
    environment = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TF_CONFIG")}
    procs = [subprocess.Popen([sys.executable, "-m", "runner.cli", "sweep", "tiny.yaml"], cwd=tmp_path,
                              env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    client, runs = _runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("xrun.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["xrun.variant"] for r in children) == [
        f"training.batch_size={b}" for b in (128, 16, 32, 64)]  # each variant exactly once
    assert all(r.info.status == "FINISHED" for r in children)
    ran_here = [sum("FINISHED in" in line for line in err.splitlines()) for _, err in outputs]
    assert sum(ran_here) == 4, ran_here
    print("variants trained by each process:", ran_here)
