"""runner.training.splits: stratified, seeded hold-outs; class counts; the checks every split must pass."""

import numpy as np
import pytest

from runner.errors import XrunError
from runner.training import splits

SORTED = np.repeat(np.arange(3), [10, 6, 2])  # class-sorted labels: 10 of class 0, 6 of class 1, 2 of class 2


def test_a_hold_out_takes_its_fraction_of_each_class_and_at_least_one():
    out = splits.held_out(SORTED, 0.2, seed=0)
    assert splits.class_counts(SORTED[out], 3) == [2, 1, 1]     # round(2.0), round(1.2), at least one
    assert splits.class_counts(SORTED[~out], 3) == [8, 5, 1]    # never a class's last example
    assert splits.class_counts(SORTED[splits.held_out(SORTED, 0.5, 0)], 3) == [5, 3, 1]


def test_a_hold_out_is_seeded():
    first, again = splits.held_out(SORTED, 0.3, seed=4), splits.held_out(SORTED, 0.3, seed=4)
    np.testing.assert_array_equal(first, again)
    assert np.flatnonzero(first).tolist() == np.flatnonzero(splits.held_out(SORTED, 0.3, 4)).tolist()
    assert any(not np.array_equal(first, splits.held_out(SORTED, 0.3, seed)) for seed in range(5, 10))


def test_a_class_with_one_example_stays_in_training():
    out = splits.held_out(np.array([0, 0, 0, 1]), 0.5, seed=0)
    assert out.tolist()[3] is False and out.sum() == 2


def test_class_counts_of_a_missing_split_are_zero():
    assert splits.class_counts(None, 3) == [0, 0, 0]
    assert splits.class_counts(np.array([2, 2, 0]), 4) == [1, 0, 2, 0]


def test_a_split_without_a_class_is_an_error_naming_the_classes():
    with pytest.raises(XrunError) as caught:
        splits.check_classes("training", np.array([0, 0, 1]), ("cat", "dog", "eel", "fox"), "data.limit", "raise it")
    assert caught.value.line() == ("data.limit: the training split has no example of class 'eel', 'fox' (2 of 4 "
                                   "classes missing, 3 examples); raise it")
    splits.check_classes("training", np.array([0, 1, 2, 3]), ("cat", "dog", "eel", "fox"), "data.limit", "")
