"""`xrun sync` beside another one: the journal goes to whichever takes it first, and the other says so."""

import threading
import time

import pytest
from helpers import store_uri
from mlflow import MlflowClient

from runner.records import delivery, journal, store


@pytest.fixture
def db(tmp_path, monkeypatch):
    uri = store_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # sync also looks in ./mlruns: the test's own, not the checkout's
    return uri


def _dead_run(db: str) -> store.Run:
    run = store.Run(db, "exp", "r")
    run.log_metrics({"loss": 0.5}, step=1)
    run._heartbeat.stop()
    run.journal.close()  # what the process's death does to its lock
    return run


def test_the_losing_one_of_two_syncs_says_the_other_delivered_the_run(db, tmp_path, monkeypatch):
    run = _dead_run(db)
    folder = tmp_path / "journal" / run.run_id
    listed = journal.folders(journal.root(db))  # what both syncs saw before either took the journal
    taken = threading.Event()

    def the_other_sync():
        with journal.taken(folder):
            taken.set()
            time.sleep(1)
            delivery._replay(folder)

    other = threading.Thread(target=the_other_sync)
    other.start()
    taken.wait()
    monkeypatch.setattr(journal, "folders", lambda *roots: listed)
    assert store.sync(db) == [(run.run_id, db, "KILLED (delivered by another xrun sync)")]
    other.join()
    assert MlflowClient(db).get_run(run.run_id).info.status == "KILLED" and not folder.exists()


def test_a_sync_that_finds_its_journal_already_delivered_says_so(db, tmp_path, monkeypatch):
    run = _dead_run(db)
    listed = journal.folders(journal.root(db))
    delivery.replay(tmp_path / "journal" / run.run_id)  # the other sync, done before this one takes it
    monkeypatch.setattr(journal, "folders", lambda *roots: listed)
    assert store.sync(db) == [(run.run_id, db, "delivered by another xrun sync")]


def test_a_model_the_store_did_not_take_is_logged_by_sync_and_the_run_is_as_complete(db, monkeypatch):
    import errno

    import keras
    import numpy as np
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    run = store.Run(db, "exp", "r")
    run.log_dataset("mnist", "https://example.com/mnist.npz", "abc123", "mnist", {"train": 8, "test": 2})
    run.log_metrics({"test_accuracy": 0.75}, step=1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    x = np.ones((2, 2), "float32")
    monkeypatch.setattr(LocalArtifactRepository, "log_artifacts", full)
    with pytest.raises(OSError) as refused:
        run.log_model(model, x, model.predict(x, verbose=0), name="m", metadata={"classes": ["a", "b"]},
                      linked_metrics=("test_accuracy",))
    run.keep("the MLflow model", refused.value)  # as the run does
    with pytest.raises(store.StoreFailed):
        run.end("FINISHED")
    monkeypatch.undo()
    assert store.sync(db) == [(run.run_id, db, "FINISHED")]
    c = MlflowClient(db)
    got = c.get_run(run.run_id)
    models = {str(m.status).rsplit(".", 1)[-1]: m for m in c.search_logged_models(experiment_ids=[run.experiment_id])}
    assert got.info.status == "FINISHED" and sorted(models) == ["FAILED", "READY"]
    ready = models["READY"]
    assert got.data.tags["xrun.model_uri"] == ready.model_uri and ready.name == "m"
    assert [(m.key, m.value, m.dataset_name, m.dataset_digest) for m in ready.metrics] == [
        ("test_accuracy", 0.75, "mnist", "abc123")]
    import mlflow

    info = mlflow.models.get_model_info(ready.model_uri)
    assert info.metadata == {"classes": ["a", "b"]}
    np.testing.assert_allclose(mlflow.keras.load_model(ready.model_uri).predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)
