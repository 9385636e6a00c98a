"""Faults injected into real `xrun` processes at chosen moments, timed by watching the run's progress in the store.

After each fault, once the store is back and `xrun sync` has run, one invariant holds: the run is FINISHED, FAILED
or KILLED (never RUNNING), it holds every epoch's metrics up to the fault, and its last completed epoch's model
(checkpoints/last.keras) loads, or resumes to the same results as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from helpers import DATA_DIR, TINY_PARAMS, artifact_file, start_mlflow_server, store_uri, tiny_yaml, train
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

MODEL_PARAMS = TINY_PARAMS  # tiny_yaml's net is the tests' tiny net


def experiment(folder: Path, epochs: int, limit: int = 1024) -> Path:
    """The tiny net, no shuffling (so a resumed run can be compared with an uninterrupted one exactly)."""
    path = folder / "tiny.yaml"
    text = tiny_yaml(experiment="faults", epochs=epochs, limit=limit, batch_size=32,
                     tracking=", log_images: false")
    path.write_text(text.replace("seed: 1}", "seed: 1, shuffle: false}"))
    return path


def xrun(folder: Path, *args, env: dict | None = None) -> subprocess.Popen:
    """`xrun ARGS` in its own process, working in `folder` (where a server's runs keep their journals)."""
    full_env = {**os.environ, "XRUN_DATA_DIR": DATA_DIR, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=folder, env=full_env,
                            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def the_run(uri: str):
    c = MlflowClient(uri)
    experiment = c.get_experiment_by_name("faults")
    runs = c.search_runs([experiment.experiment_id]) if experiment else []
    return runs[0] if len(runs) == 1 else None


def wait_for_epoch(uri: str, proc: subprocess.Popen, epoch: int, timeout: float = 240) -> str:
    """The run's id, once its loss for `epoch` is in the store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, finished(proc)
        try:
            run = the_run(uri)
            if run and max((m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "loss")),
                           default=0) >= epoch:
                return run.info.run_id
        except Exception:  # noqa: BLE001, S110 - the store is being created, or the server is starting
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"the run never logged epoch {epoch}")


def sync(folder: Path, uri: str) -> str:
    code, out, err = finished(xrun(folder, "sync", "--tracking-uri", uri), timeout=120)
    assert code == 0, err
    return err


def check_invariant(uri: str, run_id: str, folder: Path, status: str, at_least: int) -> int:
    """The run ended `status`, with losses for epochs 1..N (N >= at_least) and a checkpoint that loads; returns N."""
    c = MlflowClient(uri)
    run = c.get_run(run_id)
    assert run.info.status == status, run.data.tags.get("xrun.end_reason")
    steps = sorted(m.step for m in c.get_metric_history(run_id, "loss"))
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= at_least, steps
    epoch = int(run.data.tags["xrun.checkpoint_epoch"])
    assert epoch in (len(steps) - 1, len(steps))  # a kill between the epoch's metrics and its checkpoint: one less
    model = keras.models.load_model(artifact_file(uri, run_id, "checkpoints/last.keras", folder / "downloaded"))
    assert model.count_params() == MODEL_PARAMS
    return len(steps)


# --- SIGKILL: nothing gets to run, the journal has it all ------------------------------------------------------

def test_sigkill_in_an_epoch_then_sync_ends_it_killed_and_it_resumes_as_if_never_killed(tmp_path):
    path = experiment(tmp_path, epochs=200)
    uri = store_uri(tmp_path)
    proc = xrun(tmp_path, path, "-q", "--tracking-uri", uri)
    run_id = wait_for_epoch(uri, proc, 2)
    time.sleep(0.3)  # into the next epoch
    proc.kill()
    proc.wait()
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"  # as SIGKILL leaves it
    code, out, _ = finished(xrun(tmp_path, "compare", run_id[:8], "--tracking-uri", uri, "--format", "csv"))
    assert code == 0 and out.splitlines()[1].endswith(",DEAD"), out
    assert sync(tmp_path, uri) == f"xrun sync: run {run_id[:8]} ({uri}): KILLED\n"
    epochs = check_invariant(uri, run_id, tmp_path, "KILLED", 2)
    done = int(MlflowClient(uri).get_run(run_id).data.tags["xrun.checkpoint_epoch"])

    code, out, err = finished(xrun(tmp_path, path, "-q", "--tracking-uri", uri, "--resume", run_id[:8],
                                   "--set", f"training.epochs={done + 1}"))
    assert code == 0, err
    resumed = MlflowClient(uri).get_run(run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.metrics["epochs_run"] == done + 1
    assert resumed.data.tags["xrun.resume_changes"] == f"training.epochs: 200 -> {done + 1}"
    assert epochs >= done
    (tmp_path / "whole").mkdir()
    whole = train(experiment(tmp_path / "whole", epochs=done + 1), uri=store_uri(tmp_path / "whole"))
    losses = [m.value for m in sorted(MlflowClient(uri).get_metric_history(run_id, "loss"), key=lambda m: m.step)]
    assert losses[-1] == pytest.approx(whole.history["loss"][-1], rel=1e-5)
    assert resumed.data.metrics["test_loss"] == pytest.approx(whole.test_loss, rel=1e-5)


# --- signals ---------------------------------------------------------------------------------------------------

def test_repeated_ctrl_c_never_cuts_the_save_short(tmp_path):
    path = experiment(tmp_path, epochs=200)
    uri = store_uri(tmp_path)
    proc = xrun(tmp_path, path, "-q", "--tracking-uri", uri)
    run_id = wait_for_epoch(uri, proc, 1)
    for _ in range(4):  # the first stops the run; the others arrive while it saves
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    code, out, err = finished(proc)
    # 130, or death by a Ctrl-C that came after xrun had ended the run (a shell shows both as 130)
    assert code in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    assert f"resume it with: xrun {path} --resume {run_id[:8]} --tracking-uri {uri}" in err
    check_invariant(uri, run_id, tmp_path, "KILLED", 1)


# --- the store fails at the end ---------------------------------------------------------------------------------

FULL_DISK = """\
import errno, os
from mlflow.store.artifact import local_artifact_repo as repo

def _full(real):
    def write(self, *args, **kwargs):
        if os.path.exists(os.environ["XRUN_TEST_FULL"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)
    return write

repo.LocalArtifactRepository.log_artifact = _full(repo.LocalArtifactRepository.log_artifact)
repo.LocalArtifactRepository.log_artifacts = _full(repo.LocalArtifactRepository.log_artifacts)
"""


def test_a_full_store_disk_at_the_end_keeps_the_run_and_sync_delivers_it(tmp_path):
    """The store's disk fills during training (a simulated ENOSPC in MLflow's local artifact store, put in by the
    test through sitecustomize: nothing in xrun knows of it)."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(FULL_DISK)
    flag = tmp_path / "disk-is-full"
    path = experiment(tmp_path, epochs=3)
    uri = store_uri(tmp_path)
    proc = xrun(tmp_path, path, "-q", "--tracking-uri", uri,
                env={"PYTHONPATH": str(tmp_path / "inject"), "XRUN_TEST_FULL": str(flag)})
    run_id = wait_for_epoch(uri, proc, 1)
    flag.write_text("")
    code, out, err = finished(proc)
    journal = tmp_path / "journal" / run_id
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1] == (
        f"{path}: the tracking store did not take checkpoints/last.keras (OSError: [Errno 28] No space left on "
        f"device); run {run_id[:8]} and its model are kept in {journal}; deliver it with: xrun sync --tracking-uri "
        f"{uri}")
    assert (journal / "files" / "checkpoints" / "last.keras").is_file()
    flag.unlink()  # space again
    assert sync(tmp_path, uri) == f"xrun sync: run {run_id[:8]} ({uri}): FINISHED\n"
    check_invariant(uri, run_id, tmp_path, "FINISHED", 3)
    assert not journal.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(root: Path, port: int) -> subprocess.Popen:
    return start_mlflow_server(root, port)


def _kill(server: subprocess.Popen, sig=signal.SIGKILL) -> None:
    os.killpg(server.pid, sig)
    if sig == signal.SIGKILL:
        server.wait(timeout=30)


@pytest.fixture
def server_root(tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    started: list[subprocess.Popen] = []
    yield root, started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            _kill(proc)


def test_the_server_killed_before_the_end_and_restarted_gets_the_whole_run(tmp_path, server_root):
    root, started = server_root
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started.append(_server(root, port))
    path = experiment(tmp_path, epochs=3)
    proc = xrun(tmp_path, path, "-q", "--tracking-uri", url)
    run_id = wait_for_epoch(url, proc, 1)
    _kill(started[-1])
    code, out, err = finished(proc)
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].endswith(f"deliver it with: xrun sync --tracking-uri {url}"), err
    assert (tmp_path / "mlruns" / "journal" / run_id / "files" / "checkpoints" / "last.keras").is_file()
    started.append(_server(root, port))
    assert sync(tmp_path, url) == f"xrun sync: run {run_id[:8]} ({url}): FINISHED\n"
    check_invariant(url, run_id, tmp_path, "FINISHED", 3)
    assert "test_accuracy" in MlflowClient(url).get_run(run_id).data.metrics


def test_sigterm_with_a_hung_server_acts_in_seconds_and_exits_143(tmp_path, server_root):
    root, started = server_root
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started.append(_server(root, port))
    path = experiment(tmp_path, epochs=200)
    proc = xrun(tmp_path, path, "-q", "--tracking-uri", url)
    run_id = wait_for_epoch(url, proc, 1)
    _kill(started[-1], signal.SIGSTOP)  # the server hangs: connections open, nothing answers
    time.sleep(3)  # the run is now waiting on it
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, out, err = finished(proc, timeout=120)
    took = time.monotonic() - asked
    assert code == 143, err
    assert took < 20, f"SIGTERM took {took:.1f} s"
    assert f"deliver it with: xrun sync --tracking-uri {url}" in err
    os.killpg(started[-1].pid, signal.SIGCONT)
    assert sync(tmp_path, url) == f"xrun sync: run {run_id[:8]} ({url}): KILLED\n"
    check_invariant(url, run_id, tmp_path, "KILLED", 1)


# --- a damaged checkpoint: refused before the run is touched -----------------------------------------------------

def test_resuming_from_a_truncated_checkpoint_is_one_line_and_the_run_stays_killed(tmp_path):
    from helpers import xrun as in_process

    path = experiment(tmp_path, epochs=1, limit=64)
    uri = store_uri(tmp_path)
    run_id = train(path, uri=uri).run_id
    MlflowClient(uri).set_terminated(run_id, status="KILLED")
    saved = tmp_path / "artifacts" / run_id / "artifacts" / "checkpoints" / "last.keras"
    saved.write_bytes(saved.read_bytes()[:1000])  # a copy cut short
    code, out, err = in_process(path, "--tracking-uri", uri, "--resume", run_id[:8], "--set", "training.epochs=2")
    assert (code, out) == (2, "")
    assert err == (f"run {run_id[:8]}'s saved model (last.keras) is damaged (BadZipFile: File is not a zip "
                   f"file); it cannot be resumed; start a new run without --resume (the run keeps its records as "
                   f"they are)\n")
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"


FULL_FOR_MODELS = """\
import errno, os
from mlflow.store.artifact import local_artifact_repo as repo

def _full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

repo.LocalArtifactRepository.log_artifacts = _full  # what logging a model writes with (single files go on)
"""


def test_a_full_store_disk_while_the_model_is_logged_is_one_line_and_sync_delivers_the_model(tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(FULL_FOR_MODELS)
    path = experiment(tmp_path, epochs=2, limit=64)
    uri = store_uri(tmp_path)
    code, out, err = finished(xrun(tmp_path, path, "-q", "--tracking-uri", uri,
                                   env={"PYTHONPATH": str(tmp_path / "inject")}))
    run_id = the_run(uri).info.run_id
    journal = tmp_path / "journal" / run_id
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1] == (
        f"{path}: the tracking store did not take the MLflow model (OSError: [Errno 28] No space left on device); "
        f"run {run_id[:8]} and its model are kept in {journal}; deliver it with: xrun sync --tracking-uri {uri}")
    assert sync(tmp_path, uri) == f"xrun sync: run {run_id[:8]} ({uri}): FINISHED\n"
    check_invariant(uri, run_id, tmp_path, "FINISHED", 2)
    run = MlflowClient(uri).get_run(run_id)
    ready = [m for m in MlflowClient(uri).search_logged_models(experiment_ids=[run.info.experiment_id])
             if str(m.status).endswith("READY")]
    assert [m.model_uri for m in ready] == [run.data.tags["xrun.model_uri"]]
    assert "error.txt" not in {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert not journal.exists()
