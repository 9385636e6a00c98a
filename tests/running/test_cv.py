"""`xrun cv`: K fold runs nested under one parent, whose metrics are the folds' mean, std, min and max; a parent
ends KILLED or FAILED as a sweep's does; bad input is one line."""

import math

import numpy as np
import pytest
from helpers import DATA_DIR, client, store_uri, tiny_yaml, xrun

from runner.errors import XrunError
from runner.records import names, query
from runner.running import cv


def test_the_statistics_are_over_the_metrics_every_fold_has():
    got = cv.stats([{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"a": 2.0, "b": 5.0}])
    assert got == {"a_mean": 2.0, "a_std": math.sqrt(2 / 3), "a_min": 1.0, "a_max": 3.0}   # no b: fold 1 lacks it
    assert cv.stats([]) == {}


def test_fold_overrides_set_the_data_section():
    assert cv.fold_overrides(5, 2) == ["data.validation=fold", "data.folds=5", "data.fold=2"]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_yaml(experiment="cv", limit=100, epochs=1, batch_size=32,
                              tracking=", log_model: false, log_images: false",
                              extra="augmentation: {horizontal_flip: true}\n"))
    return path


def test_fewer_than_two_folds_is_one_line_before_anything_runs(tiny):
    code, out, err = xrun("cv", tiny, "--folds", "1", "--tracking-uri", store_uri(tiny.parent))
    assert (code, out) == (2, "")
    assert err == f"{tiny}: --folds 1: cross-validation needs 2 folds or more; give --folds 5 (or 10)\n"
    code, _, err = xrun("cv", tiny.parent / "nope.yaml")
    assert code == 2 and err.count("\n") == 1 and "no such file" in err


@pytest.mark.parametrize(("raised", "status", "reason"), [
    (KeyboardInterrupt(), "KILLED", "a fold's run ended: interrupted"),
    (XrunError("the loss became NaN", where="tiny.yaml"), "FAILED", "a fold's run ended: tiny.yaml: the loss became NaN"),
])
def test_a_stopped_or_failed_fold_ends_the_parent_so(tiny, monkeypatch, raised, status, reason):
    def fold(spec, number, *args):
        raise raised
    monkeypatch.setattr(cv, "_train_fold", fold)
    uri = store_uri(tiny.parent)
    with pytest.raises(type(raised)):
        cv.run_cv(tiny, [], 3, uri=uri)
    parent, = query.find_runs(uri, experiments=["cv"])
    assert (parent.status, parent.tags[names.END_REASON], parent.tags[names.CV], parent.tags[names.CV_FOLDS]) == (
        status, reason, "parent", "3")
    assert parent.params == {"cv.folds": "3", "data.split_seed": "0"}


@pytest.mark.slow
def test_the_parents_metrics_are_the_mean_and_spread_of_its_folds_runs(tiny):
    uri = store_uri(tiny.parent)
    report = cv.run_cv(tiny, ["training.tta=true"], 2, uri=uri, data_dir=DATA_DIR)
    c = client(uri)
    parent = c.get_run(report.parent_id)
    children = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{report.parent_id}'")
    assert parent.info.status == "FINISHED" and len(children) == 2
    by_fold = {int(r.data.tags[names.CV_FOLD]): r for r in children}
    assert sorted(by_fold) == [0, 1]
    for fold, run in by_fold.items():
        assert (run.data.params["data.validation"], run.data.params["data.folds"], run.data.params["data.fold"]) == (
            "fold", "2", str(fold))
        assert run.info.run_name == f"tiny [fold {fold}]" and run.data.tags[names.TTA] == "identity, flip_h"
    # The first 100 training images, dealt class by class round 2 folds: 50 and 50, each fold validating one half
    assert sorted(int(r.data.params["data.val_examples"]) for r in children) == [50, 50]
    assert {int(r.data.params["data.train_examples"]) for r in children} == {50}
    for metric in ("test_accuracy", "test_loss", "best_val_accuracy", "val_loss", "test_accuracy_tta", "epochs_run"):
        values = np.sort([r.data.metrics[metric] for r in children])
        assert [parent.data.metrics[f"{metric}_{s}"] for s in ("mean", "std", "min", "max")] == [
            float(np.mean(values)), float(np.std(values)), float(values[0]), float(values[1])], metric
    assert report.stats == {k: v for k, v in parent.data.metrics.items()}


def test_the_cli_table_shows_the_main_metrics_that_the_folds_have():
    from runner.cli import _cv_table

    stats = {**cv.stats([{"test_accuracy": 0.5, "recall_0": 1.0}, {"test_accuracy": 0.75, "recall_0": 0.5}])}
    assert _cv_table(stats) == ("metric                  mean       std       min       max\n"
                                "test_accuracy         0.6250    0.1250    0.5000    0.7500\n")


def test_while_folds_train_the_parent_is_marked_as_this_process_s_live_run(tiny, monkeypatch):
    """Process tags, a heartbeat and a kept journal: what lets `xrun sync` end the parent of a killed `xrun cv`."""
    import os

    from runner.records import journal

    uri = store_uri(tiny.parent)
    seen = []

    def fold(spec, number, folds, parent_id, *args):
        parent, = query.find_runs(uri, run_ids=[parent_id])
        kept = sorted(p.name for p in journal.root(uri).iterdir() if not p.name.startswith("."))
        seen.append((parent.tags[names.PID], parent_id in kept))
        return number, parent_id, 0.5
    monkeypatch.setattr(cv, "_train_fold", fold)
    report = cv.run_cv(tiny, [], 2, uri=uri)
    assert seen == [(str(os.getpid()), True)] * 2
    assert not (journal.root(uri) / report.parent_id).exists()   # discarded once the parent is ended


@pytest.mark.slow
def test_a_sigkilled_cv_leaves_a_parent_that_sync_ends_killed(tiny):
    import os
    import subprocess
    import sys
    import time

    uri = store_uri(tiny.parent)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen([sys.executable, "-m", "runner.cli", "cv", str(tiny), "--folds", "2", "-q",
                                "--tracking-uri", uri, "--set", "training.epochs=500"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not [r for r in _runs(uri) if r.tags.get(names.CV_FOLD) == "0" and r.status == "RUNNING"]:
            assert time.monotonic() < deadline and process.poll() is None, "fold 0 never started"
            time.sleep(0.5)
    finally:
        process.kill()
        process.wait()
    code, _, err = xrun("sync", "--tracking-uri", uri)
    parent, = [r for r in _runs(uri) if r.tags.get(names.CV) == "parent"]
    fold, = [r for r in _runs(uri) if r.tags.get(names.CV_FOLD) == "0"]
    assert (code, parent.status, fold.status) == (0, "KILLED", "KILLED")
    assert f"run {parent.run_id[:8]} ({uri}): KILLED\n" in err


def _runs(uri: str) -> list:
    try:
        return query.find_runs(uri, experiments=["cv"])
    except XrunError:   # before the cv has made its experiment
        return []
