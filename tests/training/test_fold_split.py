"""pipeline.split with `data.validation: fold`: fold data.fold validates, the other folds train, the test set stays."""

import numpy as np
import pytest

from runner.errors import XrunError
from runner.language.schema import default_sections
from runner.language.sections import Data, sections_of
from runner.training import pipeline, splits
from runner.training.data import Dataset


def fake_dataset(n_train: int, n_test: int) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(name="fake", x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                   y_train=(np.arange(n_train) % 10).astype(np.uint8),
                   x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                   y_test=(np.arange(n_test) % 10).astype(np.uint8),
                   source="memory", fingerprint="0", class_names=tuple(str(i) for i in range(10)))


def section(**given) -> Data:
    document = {"optimizer": "Adam", "loss": "CategoricalCrossentropy", "metrics": ["accuracy"], "training": {},
                "tracking": {}, "data": {"source": "builtin", "dataset": "mnist", **given}}
    return sections_of(default_sections(document), {}).data


def test_each_fold_validates_on_its_own_examples_and_the_folds_cover_training_once():
    data = fake_dataset(n_train=300, n_test=120)
    seen = []
    for k in range(3):
        s = pipeline.split(data, section(validation="fold", folds=3, fold=k, split_seed=5))
        assert (len(s.x_train), len(s.x_val), len(s.x_test), s.validation) == (200, 100, 120, "fold")
        assert np.bincount(s.y_val).tolist() == [10] * 10       # 30 of each class in 3 folds
        fold = splits.fold_of(data.y_train, 3, 5)
        np.testing.assert_array_equal(s.x_val, data.x_train[fold == k])
        np.testing.assert_array_equal(s.x_train, data.x_train[fold != k])
        seen.append(s.x_val)
    assert sorted(map(bytes, np.concatenate(seen))) == sorted(map(bytes, data.x_train))


def test_folds_of_too_few_examples_are_an_error():
    data = fake_dataset(n_train=300, n_test=120)
    with pytest.raises(XrunError, match=r"data.folds: holding out fold 0 of 2 of 1 training examples leaves none"):
        pipeline.split(data, section(validation="fold", folds=2, fold=0, limit=1))
