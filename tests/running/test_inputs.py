"""runner.running.inputs: class weights from the training split, the class-count table and line, and the checks
that run before any MLflow run exists."""

from pathlib import Path

import numpy as np
import pytest

from runner.errors import XrunError
from runner.language.config import Settings, resolve
from runner.language.spec import load_spec
from runner.running.inputs import Inputs, class_weight
from runner.training.pipeline import Splits

SETTINGS = Settings("float32", False, 1, "CPU", 0, True, True)
NAMES = ("cat", "dog", "eel")
Y_TRAIN = np.array([0] * 6 + [1] * 2 + [2] * 2)


def config(tmp_path: Path, training: str):
    path = tmp_path / "x.yaml"
    path.write_text(f"""\
name: x
data: {{dataset: mnist}}
model:
  layers:
    - {{type: Flatten}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: Adam
loss: SparseCategoricalCrossentropy
training: {{epochs: 1, {training}}}
""")
    return resolve(load_spec(path), SETTINGS)


def splits(y_val=None) -> Splits:
    return Splits(np.zeros((10, 2)), Y_TRAIN, None if y_val is None else np.zeros((len(y_val), 2)), y_val,
                  np.zeros((3, 2)), np.array([0, 1, 2]), "split" if y_val is not None else "none", NAMES)


def test_auto_class_weights_are_inverse_frequency_averaging_one(tmp_path):
    weights = class_weight(config(tmp_path, "class_weight: auto"), splits())
    assert weights == {0: 10 / 18, 1: 10 / 6, 2: 10 / 6}
    assert sum(weights[y] for y in Y_TRAIN) / len(Y_TRAIN) == pytest.approx(1.0)


def test_named_class_weights_and_the_rest_weigh_one(tmp_path):
    assert class_weight(config(tmp_path, "class_weight: {eel: 3}"), splits()) == {0: 1.0, 1: 1.0, 2: 3.0}
    assert class_weight(config(tmp_path, "batch_size: 4"), splits()) is None


def test_a_weight_for_a_class_the_data_lacks_is_an_error_at_its_key(tmp_path):
    with pytest.raises(XrunError) as caught:
        class_weight(config(tmp_path, "class_weight: {eels: 3}"), splits())
    assert caught.value.format() == (f"{tmp_path / 'x.yaml'}:9:38: training.class_weight.eels: the data has no class "
                                     "'eels'; did you mean 'eel'?")


def test_class_counts_as_a_table_and_a_line():
    inputs = Inputs(dataset=None, splits=splits(np.array([0, 1, 2, 0])))
    assert inputs.counts() == {"train": [6, 2, 2], "val": [2, 1, 1], "test": [1, 1, 1]}
    assert inputs.counts_csv() == "class,train,val,test\ncat,6,2,1\ndog,2,1,1\neel,2,1,1\ntotal,10,4,3\n"
    assert inputs.summary_line() == ("data: 3 classes; train 10 (fewest: 2 of 'dog'), val 4 (fewest: 1 of 'dog'), "
                                     "test 3 (fewest: 1 of 'cat')")


def test_class_weight_and_balanced_sampling_together_are_refused(tmp_path):
    with pytest.raises(XrunError) as caught:
        config(tmp_path, "class_weight: auto, sampling: balanced")
    assert caught.value.format().startswith(f"{tmp_path / 'x.yaml'}:9:23: training.class_weight: class_weight and "
                                            "sampling: balanced both correct for imbalanced classes")
