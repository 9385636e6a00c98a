"""mixup and cutmix: batch operations that blend the images of a training batch and their one-hot labels."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from runner.errors import XrunError

# Fixed sub-seed slots, so adding cutmix to mixup never changes mixup's draws (and the reverse).
_SLOTS = ("partner", "mixup", "cutmix", "choice")
_SLOT = {name: i for i, name in enumerate(_SLOTS)}


def beta(seed: tf.Tensor, n, alpha: float) -> tf.Tensor:
    """n float32 draws from Beta(alpha, alpha), as G1 / (G1 + G2) of two Gamma(alpha) draws."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    # float64: a Gamma(0.2) draw underflows float32 about once in 10^8; divide_no_nan covers 0/0 all the same.
    g1, g2 = (tf.random.stateless_gamma([n], seed=seeds[i], alpha=alpha, dtype=tf.float64) for i in range(2))
    return tf.cast(tf.math.divide_no_nan(g1, g1 + g2), tf.float32)


def partners(seed: tf.Tensor, n) -> tf.Tensor:
    """A uniformly random permutation of range(n): image i is mixed with image partners[i] of the same batch."""
    return tf.argsort(tf.random.stateless_uniform([n], seed=seed))


def mixup(images: tf.Tensor, labels: tf.Tensor, partner: tf.Tensor, lam: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """x = lam x + (1 - lam) x[partner], and the labels likewise (Zhang et al. 2018); lam has shape [B]."""
    return blend(images, partner, lam), blend(labels, partner, lam)


def blend(x: tf.Tensor, partner: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """weight * x + (1 - weight) * x[partner], with one weight per example (shape [B])."""
    weight = tf.reshape(tf.cast(weight, x.dtype), [-1] + [1] * (x.shape.rank - 1))
    return weight * x + (1 - weight) * tf.gather(x, partner)


def cutmix(images: tf.Tensor, labels: tf.Tensor, partner: tf.Tensor, lam: tf.Tensor,
           seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A rectangle of 1 - lam of each image's area, centred at a uniform point and clipped to the image, taken
    from its partner; the labels mixed by the share of pixels each keeps after the clipping (Yun et al. 2019)."""
    shape = tf.shape(images)
    b, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    side = tf.sqrt(1.0 - lam)
    rows = _span(tf.random.stateless_uniform([b], seed=seeds[0]) * h, side * h, h)
    cols = _span(tf.random.stateless_uniform([b], seed=seeds[1]) * w, side * w, w)
    mask = _covers(*rows, shape[1])[:, :, tf.newaxis] & _covers(*cols, shape[2])[:, tf.newaxis, :]
    mixed = tf.where(mask[..., tf.newaxis], tf.gather(images, partner), images)
    kept = 1.0 - (rows[1] - rows[0]) * (cols[1] - cols[0]) / (h * w)
    return mixed, blend(labels, partner, kept)


def _span(centre: tf.Tensor, length: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """[start, end) in whole pixels of a span of `length` about `centre`, clipped to [0, size]."""
    return (tf.clip_by_value(tf.round(centre - length / 2), 0.0, size),
            tf.clip_by_value(tf.round(centre + length / 2), 0.0, size))


def _covers(start: tf.Tensor, end: tf.Tensor, size) -> tf.Tensor:
    """[B, size]: which rows (or columns) fall in [start, end)."""
    index = tf.range(size, dtype=tf.float32)[tf.newaxis]
    return (index >= start[:, tf.newaxis]) & (index < end[:, tf.newaxis])


def make_mixer(alphas: dict[str, float]) -> Callable | None:
    """A `mix(images, labels, seed)` for {"mixup": alpha, "cutmix": alpha} (either or both), or None for neither.

    Labels must be one-hot (or soft) float [B, classes]. With both, each image gets one of the two at even odds
    (timm's switch_prob 0.5, per image); both share the same partners.
    """
    if not alphas:
        return None

    def mix(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        _check_labels(labels, next(iter(alphas)))
        b = tf.shape(images)[0]
        seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), num=len(_SLOTS))
        partner = partners(seeds[_SLOT["partner"]], b)
        out = {}
        if "mixup" in alphas:
            out["mixup"] = mixup(images, labels, partner, beta(seeds[_SLOT["mixup"]], b, alphas["mixup"]))
        if "cutmix" in alphas:
            cut_seeds = tf.random.experimental.stateless_split(seeds[_SLOT["cutmix"]], num=2)
            lam = beta(cut_seeds[0], b, alphas["cutmix"])
            out["cutmix"] = cutmix(images, labels, partner, lam, cut_seeds[1])
        if len(out) == 1:
            return next(iter(out.values()))
        return _either(out["mixup"], out["cutmix"], tf.random.stateless_uniform([b], seed=seeds[_SLOT["choice"]]))
    return mix


def _either(first: tuple, second: tuple, draw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per image, `first`'s (images, labels) where draw < 0.5, else `second`'s."""
    def pick(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.where(tf.reshape(draw < 0.5, [-1] + [1] * (a.shape.rank - 1)), a, b)
    return pick(first[0], second[0]), pick(first[1], second[1])


def _check_labels(labels: tf.Tensor, name: str) -> None:
    # load_spec refuses mixing with a Sparse* loss at the YAML line; this guards callers that skip validation.
    if labels.dtype.is_integer or labels.shape.rank != 2:
        raise XrunError(f"{name} mixes the labels of two images, which needs one-hot labels, but these are class "
                        "numbers", path=f"augmentation.{name}",
                        hint="use a loss on one-hot labels such as CategoricalCrossentropy, not "
                             "SparseCategoricalCrossentropy")
