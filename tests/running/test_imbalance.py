"""Own data with sorted or imbalanced classes: every class in every split, class counts logged, class weights and
balanced sampling applied, each class's recall logged every epoch (issues 22 #14, 23)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import artifact_text, client, experiment, history, only_run, store_uri, train

from runner.errors import XrunError

DENSE = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16, "activation": "relu"},
                    {"type": "Dense", "units": 3, "activation": "softmax"}]}


def sorted_npz(folder: Path, counts=(60, 30, 10)) -> Path:
    """Class-sorted arrays: all 0s, then all 1s, then 2s (as a user's export often is); no test arrays."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), counts).astype(np.uint8)
    x = (rng.integers(0, 60, (len(y), 8, 8)) + y[:, None, None] * 60).astype(np.uint8)  # learnable by brightness
    np.savez(folder / "sorted.npz", x_train=x, y_train=y)
    return folder / "sorted.npz"


def write(folder: Path, training: dict, **data) -> Path:
    doc = experiment(data={"source": "arrays", "path": "sorted.npz", "class_names": ["a", "b", "c"], **data},
                     model=DENSE, training={"epochs": 2, "batch_size": 8, "seed": 3, **training})
    doc["loss"] = "SparseCategoricalCrossentropy"
    path = folder / "imb.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_class_sorted_npz_trains_with_every_class_in_training_validation_and_test(tmp_path):
    sorted_npz(tmp_path)
    result = train(write(tmp_path, {}), uri=store_uri(tmp_path))
    run = only_run(store_uri(tmp_path))
    counts = artifact_text(store_uri(tmp_path), run.info.run_id, "data/class_counts.csv")
    # test_split 0.2 of each class (12, 6, 2), then validation_split 0.1 of what is left (5, 2, 1)
    assert counts == "class,train,val,test\na,43,5,12\nb,22,2,6\nc,7,1,2\ntotal,72,8,20\n"
    assert result.history["val_accuracy"][-1] > 0.0


@pytest.mark.slow
def test_class_weight_auto_logs_each_class_s_recall_every_epoch(tmp_path):
    sorted_npz(tmp_path)
    train(write(tmp_path, {"class_weight": "auto"}), uri=store_uri(tmp_path))
    run = only_run(store_uri(tmp_path))
    assert run.data.params["training.class_weight"] == "auto"
    for key in ("recall_a", "recall_b", "recall_c", "val_recall_a", "val_recall_c"):
        assert len(history(store_uri(tmp_path), run.info.run_id, key)) == 2, key


@pytest.mark.slow
def test_balanced_sampling_trains_and_logs_recall(tmp_path):
    sorted_npz(tmp_path)
    result = train(write(tmp_path, {"sampling": "balanced"}), uri=store_uri(tmp_path))
    assert set(result.history) >= {"recall_a", "recall_b", "recall_c", "val_recall_b"}


def test_a_split_missing_a_class_stops_before_any_run_exists(tmp_path):
    sorted_npz(tmp_path)
    uri = store_uri(tmp_path)
    with pytest.raises(XrunError, match="the training split has no example of class 'b', 'c'"):
        train(write(tmp_path, {}, limit=30, test_split=0.5), uri=uri)
    found = client(uri).get_experiment_by_name("tests")
    assert found is None or client(uri).search_runs([found.experiment_id]) == []
