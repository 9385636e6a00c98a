"""Test-time augmentation: a model's class probabilities averaged over each image as it is and its deterministic
variants from `augmentation`: mirrored (horizontal_flip, vertical_flip) and shifted by the whole width_shift_range /
height_shift_range each way, rounded to whole pixels, so every view is an exact resampling of the stored pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from runner.language.schema import with_defaults
from runner.language.sections import Augmentation, as_mapping
from runner.training.augment import affine_matrices, transform_images

EPSILON = 1e-7  # Keras's: probabilities are clipped to [eps, 1 - eps] before the log, as its cross-entropy does


@dataclass(frozen=True)
class View:
    """One variant: flips, and a shift in whole pixels with augment.py's sign (shift_x > 0 samples x + shift_x:
    the content moves left; shift_y > 0 moves it up)."""

    name: str
    flip_h: bool = False
    flip_v: bool = False
    shift_x: int = 0
    shift_y: int = 0


def shift_pixels(r: float | None, size: int) -> int:
    """A shift range in whole pixels, as augmentation reads it: below 1 a fraction of the size, else pixels."""
    if not r:
        return 0
    return int(round(r * size)) if r < 1 else int(round(r))


def views(augmentation: Augmentation | dict | None, height: int, width: int) -> list[View]:
    """The identity, then each flip the section asks for, then each shift both ways ("left 3" moves the content
    3 pixels left). Shifts that round to 0 pixels are left out."""
    params = as_mapping(augmentation) if isinstance(augmentation, Augmentation) else dict(augmentation or {})
    out = [View("identity")]
    out += [View("flip_h", flip_h=True)] if params.get("horizontal_flip") else []
    out += [View("flip_v", flip_v=True)] if params.get("vertical_flip") else []
    dx = shift_pixels(params.get("width_shift_range"), width)
    dy = shift_pixels(params.get("height_shift_range"), height)
    out += [View(f"left {dx}", shift_x=dx), View(f"right {dx}", shift_x=-dx)] if dx else []
    out += [View(f"up {dy}", shift_y=dy), View(f"down {dy}", shift_y=-dy)] if dy else []
    return out


def fill(augmentation: Augmentation | dict | None) -> tuple[str, float]:
    """(fill_mode, cval) of the section, the schema's defaults where it says nothing; cval on the [0, 1] scale."""
    params = as_mapping(augmentation) if isinstance(augmentation, Augmentation) else dict(augmentation or {})
    params = with_defaults({k: v for k, v in params.items() if v is not None}, "#/properties/augmentation")
    return params["fill_mode"], float(params["cval"])


def transform(images: tf.Tensor, view: View, fill_mode: str, cval: float) -> tf.Tensor:
    """A float batch [B, H, W, C] seen as `view`: one resampling at whole-pixel positions, so pixels are copied
    exactly (bilinear weights are 0 and 1) and those brought in from outside are filled as `fill_mode` says."""
    if view == View("identity"):
        return images
    shape = tf.shape(images)
    matrices = affine_matrices(shape[0], shape[1], shape[2], rotation_deg=0.0, shift_x_px=float(view.shift_x),
                               shift_y_px=float(view.shift_y), shear_deg=0.0, zoom_x=1.0, zoom_y=1.0,
                               flip_h=float(view.flip_h), flip_v=float(view.flip_v))
    return transform_images(tf.cast(images, tf.float32), matrices, fill_mode, cval)


def view_pixels(pixels: np.ndarray, view: View, fill_mode: str, cval: float) -> np.ndarray:
    """Stored images (uint8 0-255, or floats; [N, H, W] or [N, H, W, C]) seen as `view`, in their own dtype; for
    uint8 the fill value cval (on [0, 1]) is cval x 255."""
    x = np.asarray(pixels)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    batch = x[..., None] if x.ndim == 3 else x
    out = transform(tf.constant(batch, tf.float32), view, fill_mode, cval * scale).numpy()
    out = out[..., 0] if x.ndim == 3 else out
    return np.rint(out).astype(x.dtype) if x.dtype == np.uint8 else out.astype(x.dtype)


def averaged(predict: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, chosen: list[View], fill_mode: str,
             cval: float) -> np.ndarray:
    """The mean of `predict`'s class probabilities over the views of `pixels` (stored images)."""
    return np.mean([np.asarray(predict(view_pixels(pixels, v, fill_mode, cval)), np.float64) for v in chosen], axis=0)


def averaged_dataset(predict: Callable[[tf.data.Dataset], np.ndarray], dataset: tf.data.Dataset, chosen: list[View],
                     fill_mode: str, cval: float) -> np.ndarray:
    """The same for a prepared (images on [0, 1], labels) dataset, the run's test set: each view mapped onto it."""
    def seen(view: View) -> tf.data.Dataset:
        return dataset.map(lambda x, y: (transform(x, view, fill_mode, cval), y))
    return np.mean([np.asarray(predict(seen(v)), np.float64) for v in chosen], axis=0)


def loss_and_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Cross-entropy of the (renormalised, clipped) probabilities and the share of argmax hits."""
    labels = np.asarray(labels, np.int64)
    p = np.clip(probabilities / probabilities.sum(axis=1, keepdims=True), EPSILON, 1 - EPSILON)
    loss = float(-np.mean(np.log(p[np.arange(len(labels)), labels])))
    return loss, float(np.mean(probabilities.argmax(axis=1) == labels))


def score_dataset(model, dataset: tf.data.Dataset, labels: np.ndarray, augmentation: Augmentation | dict | None,
                  image_shape: tuple) -> tuple[list[View], float, float]:
    """training.tta in a run: the views of the section and the test set's (loss, accuracy) on their average."""
    chosen = views(augmentation, image_shape[0], image_shape[1])
    probabilities = averaged_dataset(lambda ds: model.predict(ds, verbose=0), dataset, chosen, *fill(augmentation))
    return (chosen, *loss_and_accuracy(probabilities, labels))
