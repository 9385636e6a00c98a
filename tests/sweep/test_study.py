"""The study of `xrun sweep` (runner/sweep/study.py), without training: Optuna in memory, trials told made-up
values. Samplers and their seeds, surplus trials, where a study stands, the study's storage and its parent run."""

import optuna
import pytest
from sweep_cases import CONV, GRID, PLAIN, RANDOM, space_of

from runner.errors import XrunError
from runner.sweep import study as st
from runner.sweep.trials import suggest


def test_random_keys_become_optuna_distributions(tmp_path):
    s = space_of(tmp_path, PLAIN + RANDOM.replace("tpe", "random"))
    study = optuna.create_study(sampler=st.sampler(s, 0))
    drawn = [suggest(study.ask(), s) for _ in range(300)]
    lrs = [d["optimizer.learning_rate"] for d in drawn]
    assert all(isinstance(v, float) and 1e-4 <= v <= 1e-1 for v in lrs)
    assert sum(v < 1e-3 for v in lrs) > 50 and sum(v > 1e-2 for v in lrs) > 50  # log-uniform: each decade
    assert {d["model.layers[0].filters"] for d in drawn} == {1, 2, 3, 4}
    assert {d["training.batch_size"] for d in drawn} == {16, 32, 64}
    assert all(0.5 <= d["optimizer.momentum"] <= 0.9 for d in drawn)
    assert study.trials[0].distributions["optimizer.learning_rate"] == \
        optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)


def test_each_trial_draws_from_its_own_seed_and_sweep_seeds_do_not_overlap(tmp_path):
    def first_draw(seed: int, trial: int) -> dict:
        s = space_of(tmp_path, PLAIN + RANDOM.replace("seed: 7", f"seed: {seed}"))
        study = optuna.create_study(sampler=st.sampler(s, trial))
        return suggest(study.ask(), s)

    assert first_draw(0, 1) == first_draw(0, 1)  # the same trial of the same sweep: the same values, on any worker
    assert first_draw(0, 1) != first_draw(1, 0) and first_draw(0, 0) != first_draw(0, 1)


def test_surplus_trials_past_the_grid_are_recognised(tmp_path):
    """Optuna's GridSampler gives trial numbers 0..N-1 the N points; a trial asked for after them (two workers
    asking at once for the last point) is surplus, and so is one past `trials` draws."""
    s = space_of(tmp_path, CONV, GRID[1:])
    study = optuna.create_study(sampler=st.sampler(s, 0))
    trials = [study.ask() for _ in range(5)]
    assert [st.is_surplus(study, t, s) for t in trials] == [False] * 4 + [True]
    assert st.progress(study, s).to_start == 0 and st.progress(study, s).running == 5
    draws = space_of(tmp_path, PLAIN + RANDOM)
    study = optuna.create_study()
    assert [st.is_surplus(study, study.ask(), draws) for _ in range(7)] == [False] * 6 + [True]


def test_study_storage_defaults_beside_the_mlflow_store_and_hides_passwords(tmp_path, monkeypatch):
    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    assert st.storage_url(None, f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.setenv("XRUN_STUDY_STORAGE", "postgresql://u:secret@db:5432/s")
    assert st.storage_url(None, "http://mlflow:5000") == "postgresql://u:secret@db:5432/s"
    assert st.storage_url("sqlite:///x.db", "http://mlflow:5000") == "sqlite:///x.db"
    assert st.redacted("postgresql://u:secret@db:5432/s") == "postgresql://u:***@db:5432/s"
    with pytest.raises(XrunError, match=r"cannot open the study storage nosuchdb://u:\*\*\*@h/s"):
        st.open_storage("nosuchdb://u:pw@h/s", heartbeat=1, grace=2, on_stale=None)


def test_progress_counts_points_not_started_running_and_done(tmp_path):
    s = space_of(tmp_path, CONV, GRID[1:])
    study = optuna.create_study(sampler=st.sampler(s, 0))
    first, second, third = (study.ask() for _ in range(3))
    study.tell(first, 0.5)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    assert st.progress(study, s) == st.Progress(to_start=1, running=1, done={"COMPLETE": 1, "FAIL": 1})
    study.tell(study.ask(), 0.7)
    now = st.progress(study, s)
    assert now == st.Progress(to_start=0, running=1, done={"COMPLETE": 2, "FAIL": 1}) and not now.finished


def test_a_search_is_finished_when_its_draws_are_told(tmp_path):
    s = space_of(tmp_path, PLAIN + RANDOM)
    study = optuna.create_study(sampler=st.sampler(s, 0))
    for n in range(6):
        study.tell(study.ask(), float(n))
    assert st.progress(study, s) == st.Progress(to_start=0, running=0, done={"COMPLETE": 6})
    assert st.progress(study, s).finished


def test_the_first_worker_creates_the_study_and_its_parent_the_others_load_it(tmp_path):
    s = space_of(tmp_path, PLAIN + RANDOM)
    storage, made = optuna.storages.InMemoryStorage(), []
    study, parent = st.create_or_load("s", storage, s, lambda: made.append("first") or "run-1")
    again, parent_again = st.create_or_load("s", storage, s, lambda: made.append("second") or "run-2")
    assert (parent, parent_again, made) == ("run-1", "run-1", ["first"])
    assert again.user_attrs == {"xrun.parent_run_id": "run-1", "xrun.metric": "val_accuracy"}
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
