"""Turn a loaded dataset into the tf.data pipelines that training, validation and testing read."""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from runner.errors import XrunError
from runner.language.sections import Augmentation, Data
from runner.training.augment import make_batch_augmenter
from runner.training.data import Dataset
from runner.training.sources import ImageFiles
from runner.training.splits import fold_of, held_out


@dataclass
class Splits:
    """The examples each phase uses, after `limit` and the validation choice: uint8 or float arrays, or ImageFiles
    streamed from disk; int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    validation: str              # "split", "test" or "none"
    class_names: tuple[str, ...] = ()


def split(dataset: Dataset, data: Data) -> Splits:
    """Apply `limit` (first N of each split) and hold out validation data as the data section asks."""
    splits = _split(dataset, data)
    splits.class_names = tuple(dataset.class_names)
    return splits


def _split(dataset: Dataset, data: Data) -> Splits:
    limit = data.limit
    x_train, y_train = _part(dataset.x_train, slice(limit)), dataset.y_train[:limit]
    x_test, y_test = _part(dataset.x_test, slice(limit)), dataset.y_test[:limit]
    how = data.validation
    given_val = getattr(dataset, "x_val", None)
    if how == "split" and given_val is not None:  # the source's own validation split (a val/ folder)
        return Splits(x_train, y_train, _part(given_val, slice(limit)), dataset.y_val[:limit], x_test, y_test, how)
    if how == "test":
        return Splits(x_train, y_train, x_test, y_test, x_test, y_test, how)
    if how == "none":
        return Splits(x_train, y_train, None, None, x_test, y_test, how)
    # Stratified and seeded: every class in both parts, whatever order the examples come in (a class-sorted file).
    if how == "fold":  # k-fold cross-validation (xrun cv): this fold validates, the others train
        out = fold_of(y_train, data.folds, data.split_seed) == data.fold
        held = f"fold {data.fold} of {data.folds}"
    else:
        out = held_out(y_train, data.validation_split, data.split_seed)
        held = f"validation_split {data.validation_split}"
    if out.all() or not out.any():
        raise XrunError(f"holding out {held} of {len(x_train)} training examples leaves none to train on or none "
                        "to validate on", path=f"data.{'folds' if how == 'fold' else 'validation_split'}",
                        hint="raise data.limit, or change data.validation_split (data.folds)")
    keep, val = np.flatnonzero(~out), np.flatnonzero(out)
    return Splits(_part(x_train, keep), y_train[keep], _part(x_train, val), y_train[val], x_test, y_test, how)


def _part(x, index):
    """Some of the examples: an array's slice, or an ImageFiles subset that stays on disk."""
    return x.subset(index) if isinstance(x, ImageFiles) else x[index]


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, H, W, 1) in [0, 1], the layout the models take; float images as they are."""
    images = np.asarray(images)
    x = images.astype("float32") / 255.0 if images.dtype == np.uint8 else images.astype("float32")
    return x[..., None] if x.ndim == 3 else x


def _prepare(one_hot_classes: int | None):
    """The per-batch map from stored uint8 images and int labels to model inputs and targets."""
    def prepare(images, labels):
        x = tf.cast(images, tf.float32) / 255.0 if images.dtype == tf.uint8 else tf.cast(images, tf.float32)
        x = x[..., None] if len(x.shape) == 3 else x
        if len(labels.shape) == 2:  # multi-label: a 0/1 row per image is already the target
            return x, tf.cast(labels, tf.float32)
        labels = tf.cast(labels, tf.int32)  # stored as uint8; int32 class indices whatever the loss
        y = tf.one_hot(labels, one_hot_classes) if one_hot_classes else labels
        return x, y
    return prepare


def train_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, shuffle: bool, seed: int,  # noqa: PLR0913
                  augmentation: Augmentation | dict | None, one_hot_classes: int | None,
                  balanced: bool = False, start_batch: int = 0) -> tf.data.Dataset:
    """An endless stream of prepared (and augmented) batches; fit() reads `steps_per_epoch` of them per epoch.

    Shuffling happens before batching and again on every pass; augmentation is stateless, seeded by
    (seed, batch number), so a run is repeatable whatever tf.data's parallelism. `balanced` draws each class
    equally often (each class's examples reshuffled on every pass of their own). The stream starts at batch
    `start_batch` of the one a fresh run reads, so a resumed run gets the batches the uninterrupted run would have.
    """
    ds = _balanced(x, y, seed) if balanced else _examples(x, y, shuffle=shuffle, seed=seed)
    # Skipped before the map: the skipped batches are shuffled and batched (so every later permutation is the
    # same) but neither prepared nor augmented. Streamed files are still decoded, so skipping costs them time.
    ds = ds.batch(batch_size).repeat().skip(start_batch)
    ds = ds.map(_prepare(one_hot_classes), num_parallel_calls=tf.data.AUTOTUNE)
    augment = make_batch_augmenter(augmentation)  # per-image steps, then mixup / cutmix on (images, labels)
    if augment is not None:
        ds = ds.enumerate(start=start_batch).map(
            lambda i, batch: augment(batch[0], batch[1], tf.stack([tf.cast(seed, tf.int64), i])),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _balanced(x, y: np.ndarray, seed: int) -> tf.data.Dataset:
    """Examples drawn class by class with equal chances (tf.data's sample_from_datasets), seeded."""
    classes = np.unique(y)
    streams = [_examples(_part(x, np.flatnonzero(y == c)), y[y == c], shuffle=True, seed=seed + i).repeat()
               for i, c in enumerate(classes)]
    return tf.data.Dataset.sample_from_datasets(streams, weights=[1 / len(classes)] * len(classes), seed=seed)


# A shuffle buffer holds decoded images: for data streamed from disk it is bounded by bytes, not examples.
SHUFFLE_BUFFER_BYTES = 256 << 20


def _examples(x, y: np.ndarray, *, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(uint8 or float image, label) pairs, cached as the data says; shuffled again on every pass if asked."""
    if not isinstance(x, ImageFiles):
        ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
        return ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True) if shuffle else ds
    ds = tf.data.Dataset.from_tensor_slices((x.paths, y))
    if shuffle and x.cache == "none":  # the file names are shuffled, then decoded in parallel, in order
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda path, label: (x.decode(path), label), num_parallel_calls=tf.data.AUTOTUNE)
    if x.cache == "memory":
        ds = ds.cache()
    elif x.cache == "disk":
        ds = ds.cache(_cache_file())
    if shuffle and x.cache != "none":
        per_image = max(1, int(np.prod(x.shape[1:])))
        buffer = len(x) if x.cache == "memory" else max(1, min(len(x), SHUFFLE_BUFFER_BYTES // per_image))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def _cache_file() -> str:
    """A fresh cache file prefix under the temp folder, removed when the process ends."""
    folder = tempfile.mkdtemp(prefix="xrun-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(Path(folder) / "images")


def eval_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, one_hot_classes: int | None) -> tf.data.Dataset:
    ds = _examples(x, y, shuffle=False, seed=0).batch(batch_size)
    return ds.map(_prepare(one_hot_classes), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def augmented_preview(x: np.ndarray, augmentation: Augmentation | dict | None, seed: int, n: int = 16):
    """(originals, augmented) float images for a visual check, mixup and cutmix included, or None without
    augmentation."""
    augment = make_batch_augmenter(augmentation)
    if augment is None:
        return None
    originals = to_inputs(x[:n])
    # The picture needs no labels: one placeholder column is mixed along and dropped.
    out, _ = augment(tf.constant(originals), tf.zeros([len(originals), 1]), tf.constant([seed, 0], dtype=tf.int64))
    return originals, np.asarray(out)
