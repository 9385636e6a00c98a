"""runner.training.splits.fold_of: k-fold cross-validation's folds, stratified and seeded with data.split_seed."""

import numpy as np

from runner.training import splits

TEN_BY_FIVE = np.repeat(np.arange(10), 5)  # class-sorted: 5 examples of each of 10 classes


def test_ten_classes_of_five_in_five_folds_put_one_of_each_class_in_every_fold():
    fold = splits.fold_of(TEN_BY_FIVE, 5, seed=0)
    for k in range(5):
        assert splits.class_counts(TEN_BY_FIVE[fold == k], 10) == [1] * 10


def test_the_folds_partition_the_examples_exactly():
    y = np.repeat(np.arange(3), [10, 6, 2])
    fold = splits.fold_of(y, 4, seed=3)
    assert sorted(np.concatenate([np.flatnonzero(fold == k) for k in range(4)]).tolist()) == list(range(18))
    # Dealt on from class to class: 18 examples in 4 folds are 5, 5, 4, 4; class 0's 10 are 3, 3, 2, 2.
    assert np.bincount(fold, minlength=4).tolist() == [5, 5, 4, 4]
    assert np.bincount(fold[y == 0], minlength=4).tolist() == [3, 3, 2, 2]
    assert np.bincount(fold[y == 1], minlength=4).tolist() == [1, 1, 2, 2]   # the deal goes on at fold 2
    assert np.bincount(fold[y == 2], minlength=4).tolist() == [1, 1, 0, 0]


def test_the_folds_are_seeded_and_shuffled_within_each_class():
    first = splits.fold_of(TEN_BY_FIVE, 5, seed=1)
    np.testing.assert_array_equal(first, splits.fold_of(TEN_BY_FIVE, 5, seed=1))
    assert not np.array_equal(first, splits.fold_of(TEN_BY_FIVE, 5, seed=2))
    # The same draw as held_out's: class by class in label order, each class's members permuted by one generator.
    rng = np.random.default_rng(1)
    expected = np.zeros(50, np.int64)
    for label in range(10):
        expected[rng.permutation(np.flatnonzero(TEN_BY_FIVE == label))] = np.arange(5)
    np.testing.assert_array_equal(first, expected)
