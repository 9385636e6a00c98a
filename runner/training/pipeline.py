"""Turn a loaded dataset into the tf.data pipelines that training, validation and testing read."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from runner.errors import XrunError
from runner.training.augment import make_augmenter
from runner.training.data import Dataset


@dataclass
class Splits:
    """The arrays each phase uses, after `limit` and the validation choice (uint8 images, int labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    validation: str              # "split", "test" or "none"


def split(dataset: Dataset, data_spec: dict) -> Splits:
    """Apply `limit` (first N of each split) and hold out validation data as the YAML asks."""
    limit = data_spec.get("limit")
    x_train, y_train = dataset.x_train[:limit], dataset.y_train[:limit]
    x_test, y_test = dataset.x_test[:limit], dataset.y_test[:limit]
    how = data_spec.get("validation", "split")
    if how == "test":
        return Splits(x_train, y_train, x_test, y_test, x_test, y_test, how)
    if how == "none":
        return Splits(x_train, y_train, None, None, x_test, y_test, how)
    # Like Keras's validation_split: the last fraction of the training data, taken before any shuffling.
    n_val = max(1, int(round(len(x_train) * data_spec.get("validation_split", 0.1))))
    if n_val >= len(x_train):
        raise XrunError(f"holding out {n_val} of {len(x_train)} training examples for validation leaves none "
                        "to train on", path="data.validation_split",
                        hint="raise data.limit or lower data.validation_split")
    return Splits(x_train[:-n_val], y_train[:-n_val], x_train[-n_val:], y_train[-n_val:], x_test, y_test, how)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, H, W, 1) in [0, 1], the layout the models take."""
    x = images.astype("float32") / 255.0
    return x[..., None] if x.ndim == 3 else x


def _prepare(one_hot_classes: int | None):
    """The per-batch map from stored uint8 images and int labels to model inputs and targets."""
    def prepare(images, labels):
        x = tf.cast(images, tf.float32) / 255.0
        x = x[..., None] if len(x.shape) == 3 else x
        labels = tf.cast(labels, tf.int32)  # stored as uint8; int32 class indices whatever the loss
        y = tf.one_hot(labels, one_hot_classes) if one_hot_classes else labels
        return x, y
    return prepare


def train_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, shuffle: bool, seed: int,
                  augmentation: dict | None, one_hot_classes: int | None) -> tf.data.Dataset:
    """An endless stream of prepared (and augmented) batches; fit() reads `steps_per_epoch` of them per epoch.

    Shuffling happens before batching and again on every pass; augmentation is stateless, seeded by
    (seed, batch number), so a run is repeatable whatever tf.data's parallelism.
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).repeat().map(_prepare(one_hot_classes), num_parallel_calls=tf.data.AUTOTUNE)
    augment = make_augmenter(augmentation or {})
    if augment is not None:
        ds = ds.enumerate().map(
            lambda i, batch: (augment(batch[0], tf.stack([tf.cast(seed, tf.int64), i])), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, one_hot_classes: int | None) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache().batch(batch_size)
    return ds.map(_prepare(one_hot_classes), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def augmented_preview(x: np.ndarray, augmentation: dict | None, seed: int, n: int = 16):
    """(originals, augmented) float images for a visual check, or None without augmentation."""
    augment = make_augmenter(augmentation or {})
    if augment is None:
        return None
    originals = to_inputs(x[:n])
    out = augment(tf.constant(originals), tf.constant([seed, 0], dtype=tf.int64))
    return originals, np.asarray(out)
