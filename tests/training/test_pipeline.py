"""runner.pipeline: splits for `limit` and the validation choices, and the tf.data streams training reads."""

import numpy as np
import pytest
import tensorflow as tf

from runner.errors import XrunError
from runner.language.schema import default_sections
from runner.language.sections import Data, sections_of
from runner.training import pipeline, splits
from runner.training.data import Dataset


def fake_dataset(n_train: int = 300, n_test: int = 120) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(name="fake", x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                   y_train=(np.arange(n_train) % 10).astype(np.uint8),
                   x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                   y_test=(np.arange(n_test) % 10).astype(np.uint8),
                   source="memory", fingerprint="0", class_names=tuple(str(i) for i in range(10)))


@pytest.fixture(scope="module")
def data() -> Dataset:
    return fake_dataset()


def section(**given) -> Data:
    """The typed data section a run's Config holds, the schema's defaults under what is given."""
    return sections_of(default_sections({**DOCUMENT, "data": {"source": "builtin", "dataset": "mnist", **given}}), {}).data


DOCUMENT = {"optimizer": "Adam", "loss": "CategoricalCrossentropy", "metrics": ["accuracy"], "training": {},
            "tracking": {}}


def sizes(s: pipeline.Splits):
    return (len(s.x_train), None if s.x_val is None else len(s.x_val), len(s.x_test))


def test_split_holds_out_a_seeded_fraction_of_each_class(data):
    s = pipeline.split(data, section(validation="split", validation_split=0.2))
    assert sizes(s) == (240, 60, 120) and s.validation == "split"
    assert np.bincount(s.y_val).tolist() == [6] * 10 and np.bincount(s.y_train).tolist() == [24] * 10
    held = splits.held_out(data.y_train, 0.2, 0)
    np.testing.assert_array_equal(s.x_val, data.x_train[held])
    np.testing.assert_array_equal(s.y_train, data.y_train[~held])
    other = pipeline.split(data, section(validation="split", validation_split=0.2, split_seed=1))
    assert not np.array_equal(other.x_val, s.x_val)  # data.split_seed draws another split


def test_split_defaults_to_a_tenth(data):
    assert sizes(pipeline.split(data, section())) == (270, 30, 120)


def test_limit_takes_the_first_n_of_each_split_before_holding_out(data):
    s = pipeline.split(data, section(limit=100, validation="split", validation_split=0.25))
    assert sizes(s) == (70, 30, 100)  # 10 of each class, 2.5 of each held out: rounded up
    np.testing.assert_array_equal(s.x_test, data.x_test[:100])


def test_validation_on_the_test_set_and_none(data):
    on_test = pipeline.split(data, section(limit=50, validation="test"))
    assert sizes(on_test) == (50, 50, 50) and on_test.x_val is on_test.x_test
    none = pipeline.split(data, section(validation="none"))
    assert sizes(none) == (300, None, 120) and none.y_val is None


def test_a_split_that_leaves_nothing_to_train_on_is_an_xrun_error(data):
    with pytest.raises(XrunError, match="leaves none") as caught:
        pipeline.split(data, section(limit=1, validation="split", validation_split=0.5))
    assert caught.value.path == "data.validation_split"


@pytest.mark.parametrize("n, batch, steps", [(256, 64, 4), (257, 64, 5), (10, 64, 1), (1, 1, 1)])
def test_steps_per_epoch_covers_every_example_once(n, batch, steps):
    assert pipeline.steps_per_epoch(n, batch) == steps


def first_batches(ds: tf.data.Dataset, n: int):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def train_ds(data, **kw):
    args = dict(batch_size=32, shuffle=True, seed=3, augmentation=None, one_hot_classes=10)
    args.update(kw)
    return pipeline.train_dataset(data.x_train[:100], data.y_train[:100], **args)


def test_train_batches_are_float_images_in_unit_range_with_one_hot_labels(data):
    x, y = first_batches(train_ds(data), 1)[0]
    assert x.shape == (32, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert y.shape == (32, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(y.sum(axis=1), np.ones(32))


def test_sparse_losses_get_int_class_indices(data):
    x, y = first_batches(train_ds(data, one_hot_classes=None), 1)[0]
    assert y.shape == (32,) and y.dtype == np.int32 and set(y) <= set(range(10))


def test_the_stream_is_endless_and_each_pass_is_one_epoch_of_every_example(data):
    batches = first_batches(train_ds(data, one_hot_classes=None, shuffle=False), 8)  # 2 passes of 4 batches
    assert [len(y) for _, y in batches] == [32, 32, 32, 4] * 2
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches[:4]]), data.y_train[:100])


def test_shuffling_is_reproducible_for_a_seed_and_differs_between_passes(data):
    a = first_batches(train_ds(data, one_hot_classes=None), 8)
    b = first_batches(train_ds(data, one_hot_classes=None), 8)
    c = first_batches(train_ds(data, one_hot_classes=None, seed=4), 8)
    labels = lambda batches: np.concatenate([y for _, y in batches])  # noqa: E731
    np.testing.assert_array_equal(labels(a), labels(b))
    assert not np.array_equal(labels(a), labels(c))
    assert not np.array_equal(labels(a)[:100], labels(a)[100:])               # reshuffled each pass
    assert sorted(labels(a)[:100]) == sorted(data.y_train[:100])


AUGMENT = {"rotation_range": 20, "width_shift_range": 0.1, "zoom_range": 0.1}


def test_augmentation_changes_the_images_and_is_reproducible_for_a_seed(data):
    plain = first_batches(train_ds(data, shuffle=False), 2)
    augmented = first_batches(train_ds(data, shuffle=False, augmentation=AUGMENT), 2)
    again = first_batches(train_ds(data, shuffle=False, augmentation=AUGMENT), 2)
    other_seed = first_batches(train_ds(data, shuffle=False, augmentation=AUGMENT, seed=4), 2)
    for (px, py), (ax, ay), (gx, _), (ox, _) in zip(plain, augmented, again, other_seed):
        assert ax.shape == px.shape and ax.dtype == np.float32
        np.testing.assert_array_equal(ay, py)                                   # labels untouched
        assert np.abs(ax - px).mean() > 0.01
        np.testing.assert_array_equal(ax, gx)
        assert not np.array_equal(ax, ox)
    assert not np.array_equal(augmented[0][0], augmented[1][0][:32])          # each batch its own transforms


def test_an_augmentation_that_does_nothing_leaves_the_stream_alone(data):
    plain = first_batches(train_ds(data, shuffle=False), 1)[0][0]
    noop = first_batches(train_ds(data, shuffle=False, augmentation={"rotation_range": 0}), 1)[0][0]
    np.testing.assert_array_equal(plain, noop)


def test_eval_dataset_keeps_order_and_covers_every_example_once(data):
    ds = pipeline.eval_dataset(data.x_test, data.y_test, batch_size=50, one_hot_classes=None)
    batches = first_batches(ds, 10)
    assert [len(y) for _, y in batches] == [50, 50, 20]
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), data.y_test)
    np.testing.assert_allclose(batches[0][0][..., 0], data.x_test[:50] / 255.0, rtol=1e-6)


def test_to_inputs_matches_the_pipeline(data):
    x = pipeline.to_inputs(data.x_test[:4])
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.float32
    ds = pipeline.eval_dataset(data.x_test[:4], data.y_test[:4], batch_size=4, one_hot_classes=10)
    np.testing.assert_array_equal(x, first_batches(ds, 1)[0][0])


def test_augmented_preview_pairs_originals_with_the_first_batchs_transforms(data):
    assert pipeline.augmented_preview(data.x_train, None, seed=3) is None
    originals, augmented = pipeline.augmented_preview(data.x_train, AUGMENT, seed=3, n=8)
    assert originals.shape == augmented.shape == (8, 28, 28, 1)
    first = first_batches(train_ds(data, shuffle=False, augmentation=AUGMENT, batch_size=8), 1)[0][0]
    np.testing.assert_allclose(augmented, first, atol=1e-6)
