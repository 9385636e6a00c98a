"""A sweep's study in an Optuna journal file (runner/sweep/journal.py): the --storage forms, heartbeats and the
dead-worker retry on the clock (no training), and four worker processes on one journal, one SIGKILLed (slow)."""

import signal
import subprocess
import time

import optuna
import pytest
from helpers import store_uri
from sweep_cases import FOUR, GRID, KEYS, sweep_runs, worker, write

from runner.errors import XrunError
from runner.sweep import journal
from runner.sweep import study as st

# Optuna calls heartbeats and their retry experimental, and warns that they are meant for Study.optimize (the
# tests below drive them by hand).
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                                        "ignore:Heartbeat of storage is supposed:UserWarning")


def test_a_journal_is_a_path_ending_in_dot_journal_or_a_journal_url_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    assert st.storage_url("shared/s.journal", "http://mlflow:5000") == f"journal://{tmp_path}/shared/s.journal"
    assert st.storage_url("journal:///nfs/sweeps/s.log", "x") == "journal:///nfs/sweeps/s.log"
    assert [journal.is_journal(u) for u in ("a.journal", "journal:///a", "sqlite:///a.journal", "a.db")] == [
        True, True, False, False]
    assert st.storage_url("sqlite:///x.db", "x") == "sqlite:///x.db"


def test_a_journal_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(XrunError) as caught:
        st.open_storage(f"journal://{tmp_path}/afile/s.journal", heartbeat=1, grace=2, on_stale=None)
    assert caught.value.line() == (f"cannot open the study journal {tmp_path}/afile/s.journal ({tmp_path}/afile is "
                                   "a file); "
                                   "give --storage a file in a folder every machine on the sweep can write")


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_trial_silent_past_the_grace_period_is_failed_and_queued_again_once(tmp_path, monkeypatch):
    clock = Clock(1_000_000.0)
    monkeypatch.setattr(journal.time, "time", clock)
    stale = []
    url = f"journal://{tmp_path}/s.journal"
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    storage = st.open_storage(url, heartbeat=2, grace=10, on_stale=lambda s, t: stale.append(t.number) or retry(s, t))
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    clock.now += 10  # exactly the grace period: not yet
    assert storage._get_stale_trial_ids(study._study_id) == []
    clock.now += 0.5
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    # Another process (another machine) on the same file finds it, fails it and queues it again, once.
    other = optuna.load_study(study_name="s", storage=st.open_storage(
        url, heartbeat=2, grace=10, on_stale=lambda s, t: stale.append(t.number) or retry(s, t)))
    optuna.storages.fail_stale_trials(other)
    optuna.storages.fail_stale_trials(study)
    assert stale == [0]
    states = [(t.number, t.state.name, t.system_attrs.get("failed_trial")) for t in study.get_trials()]
    assert states == [(0, "FAIL", None), (1, "WAITING", 0)]
    # The queued copy carries the dead trial's beat, under the dead trial's id: not its own.
    retried = study.ask()
    assert retried.number == 1 and storage._get_stale_trial_ids(study._study_id) == []
    storage.record_heartbeat(trial._trial_id)  # the dead trial's worker wakes up (SIGCONT): no error
    assert study.get_trials()[0].state.name == "FAIL"


def test_a_worker_killed_before_its_first_beat_is_found_by_its_start_time(tmp_path, monkeypatch):
    storage = st.open_storage(f"{tmp_path}/s.journal", heartbeat=2, grace=10, on_stale=None)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    started = study.get_trials()[0].datetime_start.timestamp()
    monkeypatch.setattr(journal.time, "time", Clock(started + 10.5))
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


def test_a_deleted_journal_is_taken_for_gone_and_a_present_one_is_not(tmp_path):
    url = f"journal://{tmp_path}/s.journal"
    st.open_storage(url, heartbeat=1, grace=2, on_stale=None)
    assert st.lost(url, FileNotFoundError(2, "No such file"), "p") is None
    (tmp_path / "s.journal").unlink()
    assert st.lost(url, FileNotFoundError(2, "No such file"), "p").message == (
        f"the sweep's study storage {url} went away mid-sweep (its file was deleted); the trials' MLflow runs are "
        "kept, under parent run p")
    assert st.lost(url, ValueError("x"), "p") is None


@pytest.mark.slow
def test_four_workers_on_one_journal_one_sigkilled_run_every_point_once(tmp_path):
    """Four `xrun sweep` processes (four machines on a shared folder) on one journal file and the 4-point grid;
    one is SIGKILLed mid-trial. A live one retries its trial after the grace period: every point finishes once,
    the dead trial's run is KILLED, and no database was made."""
    write(tmp_path, "conv.yaml", FOUR.replace("limit: 128", "limit: 512").replace("epochs: 1", "epochs: 3"))
    uri = store_uri(tmp_path)
    url = f"journal://{tmp_path}/shared/conv.journal"
    args = ["conv.yaml", *GRID, "--tracking-uri", uri, "--storage", url, "--heartbeat", "1", "--grace-period", "8"]
    procs = [worker(tmp_path, *args) for _ in range(4)]
    try:
        doomed = _first_training(uri, procs)
        doomed.send_signal(signal.SIGKILL)
        doomed.communicate()
        outputs = [p.communicate(timeout=500) for p in procs if p is not doomed]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs if p is not doomed] == [0, 0, 0], [e[-2000:] for _, e in outputs]
    (parent,), children = sweep_runs(uri)
    assert parent.status == "FINISHED" and parent.tags["xrun.study_storage"] == url
    killed = [c for c in children if c.status == "KILLED"]
    assert len(killed) == 1 and killed[0].tags["xrun.pid"] == str(doomed.pid)
    assert "its worker stopped" in killed[0].tags["xrun.end_reason"]
    done = sorted(c.tags["xrun.variant"] for c in children if c.status == "FINISHED")
    assert done == sorted(k.replace("kernel_size=29", "kernel_size=5") for k in KEYS)  # each point once
    study = optuna.load_study(study_name=parent.tags["xrun.study"], storage=st.open_storage(
        url, heartbeat=1, grace=8, on_stale=None))
    trials = [t for t in study.trials if not t.user_attrs.get("xrun.surplus")]
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 4 + ["FAIL"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") is not None)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["xrun.variant"] == killed[0].tags["xrun.variant"]
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["conv.journal"]
    assert not list(tmp_path.rglob("optuna.db"))


def _first_training(uri: str, procs: list[subprocess.Popen], timeout: float = 400) -> subprocess.Popen:
    """The worker whose trial is RUNNING in MLflow first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs if p.poll()]
        try:
            pids = {c.tags.get("xrun.pid") for c in sweep_runs(uri)[1] if c.status == "RUNNING"}
        except XrunError:  # the experiment is not made yet
            pids = set()
        for p in procs:
            if str(p.pid) in pids:
                return p
        time.sleep(0.2)
    pytest.fail("no trial started in time")
