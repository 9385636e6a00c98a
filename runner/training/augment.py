"""ImageDataGenerator-style augmentation in TensorFlow: seeded, batched, on any image size and channel count."""

from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from runner.errors import XrunError
from runner.language.schema import schema, with_defaults
from runner.language.sections import Augmentation, as_mapping
from runner.training import mixing

# ---------------------------------------------------------------------------------------------------------------
# Conventions (checked against keras.src.legacy.preprocessing.image.apply_affine_transform of Keras 3.15, the
# ImageDataGenerator code, with channels-last images; see tests/test_augment.py):
#
# * Coordinates: x = column (to the right), y = row (downwards), pixel centres at integer positions, as in both
#   scipy.ndimage and tf.raw_ops.ImageProjectiveTransformV3. The transform maps an OUTPUT pixel to the INPUT position
#   it samples.
# * IDG builds T = R(theta) @ Shift(tx, ty) @ Shear(s) @ Zoom(zx, zy) in (x, y) order (its "M' = PMP" swap makes the
#   first matrix coordinate the column), about the centre ((W-1)/2, (H-1)/2), then flips the result. Consequences:
#     - rotation_deg > 0 turns the content counter-clockwise on screen (like scipy.ndimage.rotate and np.rot90);
#     - shift_x_px > 0 samples x + t, so the content moves LEFT by t pixels; shift_y_px > 0 moves it UP;
#     - shear_deg s: input = (x - sin(s) y, cos(s) y) about the centre (rows above the centre slide right for s > 0);
#     - zoom_x / zoom_y scale the sampling grid: a value < 1 ENLARGES the content along that axis;
#     - flip_h / flip_v mirror the transformed image (IDG flips after the affine step), folded into the same matrix.
# * IDG's own centre uses the height for both axes after its swap (only wrong for non-square images); we use the
#   true centre of each axis, so results equal IDG exactly for square images such as MNIST.
# * The sampled distributions follow IDG's documented meanings: width_shift_range is a horizontal shift (fraction
#   of W if < 1, else pixels), height_shift_range a vertical one. (Keras 3.15's get_random_transform feeds the
#   height range into `tx`, which its swap turned into a horizontal shift; for square images with equal ranges, as in
#   every seed notebook, the two readings give the same distribution.)
# * Fill modes map to ImageProjectiveTransformV3's. 'nearest' and 'reflect' equal scipy's (IDG's) exactly; with
#   'constant', TF blends cval into a one-pixel band at the edge where scipy cuts hard, and TF's 'wrap' has period n
#   (scipy's legacy 'wrap' has period n - 1), so those two differ from IDG only near the edges of the valid region.
# * No clipping: IDG never clips, and seed 002's noise (IDG preprocessing_function) could leave [0, 1] too. Bilinear
#   resampling alone cannot leave the input's range (except for a constant fill value outside it). Brightness is a
#   plain product (IDG goes through PIL, which clips at 255); the channel shift clips to each image's own min and
#   max, exactly as IDG's apply_channel_shift.
# * Images are [B, H, W, C] with any H, W and C: every step reads the sizes from the batch; a transform moves all
#   channels of a pixel together, and the channel shift adds the same amount to every channel (as IDG does).
# * Order, as IDG applies its steps: random_crop (not in IDG; CIFAR crops first), the affine map with the flips,
#   the channel shift, brightness, then noise and erasing (IDG's preprocessing_function runs after its transform).
#   mixup and cutmix then mix whole batches (make_batch_augmenter), after every per-image step.
# ---------------------------------------------------------------------------------------------------------------

_FILL_MODES = {"nearest": "NEAREST", "constant": "CONSTANT", "reflect": "REFLECT", "wrap": "WRAP"}
# What the section may hold is the schema's to say; make_augmenter checks again for callers that skip validation.
_KNOWN_KEYS = frozenset(schema()["properties"]["augmentation"]["properties"])
# Fixed sub-seed slots, so enabling one transform never changes the draws of another.
# New slots go at the end: stateless_split's first n seeds do not depend on how many are asked for.
_SLOTS = ("rotation", "shift_x", "shift_y", "shear", "zoom_x", "zoom_y", "flip_h", "flip_v", "noise", "erase",
          "crop", "channel_shift", "brightness", "mix")
_SLOT = {name: i for i, name in enumerate(_SLOTS)}


def _where(key: str) -> str:
    return f"augmentation.{key}"


def _number(params: dict, key: str, default: float = 0.0) -> float:
    value = params.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise XrunError(f"expected a number, got {value!r}", path=_where(key))
    if not math.isfinite(value) or value < 0:
        raise XrunError(f"expected a finite number >= 0, got {value!r}", path=_where(key))
    return float(value)


def _zoom_bounds(params: dict) -> tuple[float, float]:
    """IDG's zoom_range: a number z gives [1 - z, 1 + z]; a pair gives [lo, hi]."""
    value = params.get("zoom_range", 0)
    if value is None:
        return 1.0, 1.0
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise XrunError(f"expected a number or a pair [lo, hi], got {value!r}", path=_where("zoom_range"))
        lo, hi = float(value[0]), float(value[1])
        if not (0 < lo <= hi):
            raise XrunError(f"expected 0 < lo <= hi, got {value!r}", path=_where("zoom_range"))
        return lo, hi
    z = _number(params, "zoom_range")
    return 1.0 - z, 1.0 + z


def _check(params: dict) -> None:
    unknown = sorted(set(params) - _KNOWN_KEYS)
    if unknown:
        raise XrunError(f"unknown augmentation option '{unknown[0]}'", path=_where(unknown[0]),
                        hint=f"use one of {', '.join(sorted(_KNOWN_KEYS))}")
    mode = params.get("fill_mode")
    if mode is not None and mode not in _FILL_MODES:
        raise XrunError(f"unknown fill_mode {mode!r}", path=_where("fill_mode"),
                        hint=f"use one of {', '.join(_FILL_MODES)}")


def _is_noop(params: dict) -> bool:
    return (_number(params, "rotation_range") == 0 and _number(params, "width_shift_range") == 0
            and _number(params, "height_shift_range") == 0 and _number(params, "shear_range") == 0
            and _zoom_bounds(params) == (1.0, 1.0) and not params.get("horizontal_flip")
            and not params.get("vertical_flip"))


def _uniform(seed: tf.Tensor, n: tf.Tensor, lo: float, hi: float) -> tf.Tensor:
    return tf.random.stateless_uniform([n], seed=seed, minval=lo, maxval=hi, dtype=tf.float32)


def sample_params(params: dict, batch_size, height, width, seed) -> dict[str, tf.Tensor]:
    """Per-image transform parameters, each a float32 tensor of shape [batch_size], drawn as IDG draws them.

    Keys are the keyword arguments of `affine_matrices`; disabled transforms give their identity value (0, or 1 for
    zoom). Stateless: the same seed (int tensor of shape [2]) gives the same parameters.
    """
    _check(params)
    n = tf.cast(batch_size, tf.int32)
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), num=len(_SLOTS))
    zeros = tf.zeros([n], tf.float32)

    def symmetric(slot: str, r: float) -> tf.Tensor:
        return _uniform(seeds[_SLOT[slot]], n, -r, r) if r else zeros

    def shift(slot: str, key: str, size) -> tf.Tensor:
        r = _number(params, key)
        px = symmetric(slot, r)
        # IDG: a range < 1 is a fraction of the image size, otherwise a number of pixels.
        return px * tf.cast(size, tf.float32) if 0 < r < 1 else px

    def flip(slot: str, key: str) -> tf.Tensor:
        if not params.get(key):
            return zeros
        return tf.cast(_uniform(seeds[_SLOT[slot]], n, 0.0, 1.0) < 0.5, tf.float32)  # IDG: random() < 0.5

    lo, hi = _zoom_bounds(params)
    same = (lo, hi) == (1.0, 1.0)
    return {
        "rotation_deg": symmetric("rotation", _number(params, "rotation_range")),
        "shift_x_px": shift("shift_x", "width_shift_range", width),
        "shift_y_px": shift("shift_y", "height_shift_range", height),
        "shear_deg": symmetric("shear", _number(params, "shear_range")),
        # IDG draws zx and zy independently from [lo, hi].
        "zoom_x": tf.ones([n], tf.float32) if same else _uniform(seeds[_SLOT["zoom_x"]], n, lo, hi),
        "zoom_y": tf.ones([n], tf.float32) if same else _uniform(seeds[_SLOT["zoom_y"]], n, lo, hi),
        "flip_h": flip("flip_h", "horizontal_flip"),
        "flip_v": flip("flip_v", "vertical_flip"),
    }


def affine_matrices(batch_size, height, width, *,  # noqa: PLR0913 - one keyword per transform, as IDG names them
                    rotation_deg, shift_x_px, shift_y_px, shear_deg,
                    zoom_x, zoom_y, flip_h, flip_v) -> tf.Tensor:
    """The [batch_size, 8] float32 output->input projective transforms (ImageProjectiveTransformV3 layout).

    Each parameter is a tensor (or number) broadcastable to [batch_size]; flips are booleans or 0/1. Composed as
    IDG's apply_affine_transform composes them, R(theta) @ Shift @ Shear @ Zoom about the image centre, then the
    flips of apply_transform, so one resampling does everything. See the conventions at the top of this module.
    """
    n = tf.cast(batch_size, tf.int32)

    def vec(v) -> tf.Tensor:
        return tf.broadcast_to(tf.cast(v, tf.float32), [n])

    theta = vec(rotation_deg) * (math.pi / 180.0)
    shear = vec(shear_deg) * (math.pi / 180.0)
    tx, ty = vec(shift_x_px), vec(shift_y_px)
    zx, zy = vec(zoom_x), vec(zoom_y)
    fx = 1.0 - 2.0 * vec(flip_h)  # -1 mirrors x about the centre
    fy = 1.0 - 2.0 * vec(flip_v)
    cos, sin = tf.cos(theta), tf.sin(theta)

    # Linear part A = R(theta) @ [[1, -sin s], [0, cos s]] @ diag(zx, zy) @ diag(fx, fy), which simplifies to
    # [[cos(t) zx, -sin(t + s) zy], [sin(t) zx, cos(t + s) zy]] with the flip signs on the columns.
    a00 = cos * zx * fx
    a01 = -tf.sin(theta + shear) * zy * fy
    a10 = sin * zx * fx
    a11 = tf.cos(theta + shear) * zy * fy
    # Translation R(theta) @ (tx, ty), then conjugation by the move to the centre: b = c - A c + R t.
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    bx = cx - (a00 * cx + a01 * cy) + (cos * tx - sin * ty)
    by = cy - (a10 * cx + a11 * cy) + (sin * tx + cos * ty)
    zeros = tf.zeros_like(a00)
    return tf.stack([a00, a01, bx, a10, a11, by, zeros, zeros], axis=1)


def transform_images(images: tf.Tensor, transforms: tf.Tensor, fill_mode: str = "nearest",
                     cval: float = 0.0) -> tf.Tensor:
    """Resample a float batch [B, H, W, C] once with per-image transforms [B, 8]."""
    shape = tf.shape(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=shape[1:3],
        fill_value=tf.constant(cval, tf.float32),
        interpolation="BILINEAR",  # IDG uses spline order 1 (scipy.ndimage order=1), i.e. bilinear.
        fill_mode=_FILL_MODES[fill_mode],
    )


def erasing_settings(value: dict | None) -> dict | None:
    """`augmentation.random_erasing` with the schema's defaults for what it leaves out; None when it never erases."""
    if value is None:
        return None
    options = schema()["properties"]["augmentation"]["properties"]["random_erasing"]["properties"]
    settings = {key: value.get(key, option["default"]) for key, option in options.items()}
    return settings if settings["probability"] > 0 else None


def erase_rectangles(x: tf.Tensor, seed: tf.Tensor, *, probability: float, area, aspect_ratio,
                     value: float) -> tf.Tensor:
    """Random erasing on a float batch [B, H, W, C]: per image, with `probability`, one rectangle set to `value`.

    The rectangle's area is a uniform fraction of the image in `area` and its height/width ratio log-uniform in
    `aspect_ratio`; a rectangle larger than the image is clipped to it (Zhong et al. redraw instead, which needs a
    data-dependent loop).
    """
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    pixels = _uniform(seeds[0], b, area[0], area[1]) * hf * wf
    ratio = tf.exp(_uniform(seeds[1], b, math.log(aspect_ratio[0]), math.log(aspect_ratio[1])))
    height = tf.clip_by_value(tf.round(tf.sqrt(pixels * ratio)), 1.0, hf)
    width = tf.clip_by_value(tf.round(tf.sqrt(pixels / ratio)), 1.0, wf)
    top = tf.floor(_uniform(seeds[2], b, 0.0, 1.0) * (hf - height + 1.0))
    left = tf.floor(_uniform(seeds[3], b, 0.0, 1.0) * (wf - width + 1.0))
    chosen = _uniform(seeds[4], b, 0.0, 1.0) < probability

    def inside(start, length, size):  # [B, size]: which rows (or columns) the rectangle covers
        index = tf.range(size, dtype=tf.float32)[tf.newaxis]
        return (index >= start[:, tf.newaxis]) & (index < (start + length)[:, tf.newaxis])

    mask = inside(top, height, h)[:, :, tf.newaxis] & inside(left, width, w)[:, tf.newaxis, :]
    mask = mask & chosen[:, tf.newaxis, tf.newaxis]
    return tf.where(mask[..., tf.newaxis], tf.constant(value, x.dtype), x)


def random_crop(x: tf.Tensor, seed: tf.Tensor, padding: int) -> tf.Tensor:
    """Pad a float batch [B, H, W, C] with `padding` zeros on every side and crop each image back to H x W at a
    random offset: an exact whole-pixel shift of -padding..padding each way, drawn uniformly per image and axis."""
    b = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    dx, dy = (tf.cast(tf.random.stateless_uniform([b], seed=seeds[i], minval=-padding, maxval=padding + 1,
                                                  dtype=tf.int32), tf.float32) for i in range(2))
    ones, zeros = tf.ones_like(dx), tf.zeros_like(dx)
    # Output pixel (x, y) reads input (x + dx, y + dy); NEAREST at whole-pixel offsets copies values exactly.
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=tf.stack([ones, zeros, dx, zeros, ones, dy, zeros, zeros], axis=1),
        output_shape=tf.shape(x)[1:3], fill_value=tf.constant(0.0), interpolation="NEAREST", fill_mode="CONSTANT")


def shift_channels(x: tf.Tensor, intensity: tf.Tensor) -> tf.Tensor:
    """IDG's apply_channel_shift on a float batch: each image's `intensity` (shape [B]) added to all its channels,
    then clipped to that image's own minimum and maximum."""
    lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value(x + intensity[:, tf.newaxis, tf.newaxis, tf.newaxis], lo, hi)


def _brightness_bounds(params: dict) -> tuple[float, float] | None:
    """IDG's brightness_range [lo, hi], or None without one."""
    value = params.get("brightness_range")
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise XrunError(f"expected a pair [lo, hi], got {value!r}", path=_where("brightness_range"))
    lo, hi = float(value[0]), float(value[1])
    if not 0 <= lo <= hi:
        raise XrunError(f"expected 0 <= lo <= hi, got {value!r}", path=_where("brightness_range"),
                        hint="write the smaller factor first")
    return lo, hi


def _padding(params: dict) -> int | None:
    crop = params.get("random_crop")
    if crop is None:
        return None
    padding = crop.get("padding") if isinstance(crop, dict) else crop
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
        raise XrunError(f"expected a whole number of pixels >= 1, got {padding!r}", path=_where("random_crop.padding"))
    return padding


# --- the steps, each (float batch, seed, slot seeds) -> batch, or None when the section leaves it out ----------------

def _crop_step(params: dict):
    padding = _padding(params)
    return None if padding is None else lambda x, seed, seeds: random_crop(x, seeds[_SLOT["crop"]], padding)


def _geometric_step(params: dict):
    if _is_noop(params):
        return None
    fill_mode, cval = params["fill_mode"], params["cval"]
    if isinstance(cval, bool) or not isinstance(cval, (int, float)):
        raise XrunError(f"expected a number, got {cval!r}", path=_where("cval"))

    def geometric(x, seed, seeds):
        shape = tf.shape(x)
        p = sample_params(params, shape[0], shape[1], shape[2], seed)
        return transform_images(x, affine_matrices(shape[0], shape[1], shape[2], **p), fill_mode, float(cval))
    return geometric


def _channel_shift_step(params: dict):
    # IDG's range is in 0-255 pixel units; xrun's pixels are on [0, 1] (uint8 / 255), so the range is too.
    r = _number(params, "channel_shift_range") / 255.0
    if not r:
        return None
    return lambda x, seed, seeds: shift_channels(x, _uniform(seeds[_SLOT["channel_shift"]], tf.shape(x)[0], -r, r))


def _brightness_step(params: dict):
    bounds = _brightness_bounds(params)
    if bounds is None:
        return None

    def brightness(x, seed, seeds):
        factor = _uniform(seeds[_SLOT["brightness"]], tf.shape(x)[0], *bounds)
        return x * factor[:, tf.newaxis, tf.newaxis, tf.newaxis]
    return brightness


def _noise_step(params: dict):
    noise = _number(params, "gaussian_noise")
    if not noise:
        return None
    return lambda x, seed, seeds: x + tf.random.stateless_normal(tf.shape(x), seed=seeds[_SLOT["noise"]],
                                                                 stddev=noise, dtype=tf.float32)


def _erasing_step(params: dict):
    erasing = erasing_settings(params.get("random_erasing"))
    return None if erasing is None else lambda x, seed, seeds: erase_rectangles(x, seeds[_SLOT["erase"]], **erasing)


_STEPS = (_crop_step, _geometric_step, _channel_shift_step, _brightness_step, _noise_step, _erasing_step)


def _params(params: Augmentation | dict | None) -> dict:
    """The typed section of a Config, or a mapping of the same keys (tests, benchmarks)."""
    return as_mapping(params) if isinstance(params, Augmentation) else dict(params or {})


def make_augmenter(params: Augmentation | dict | None) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None:
    """An `augment(images, seed)` function for the per-image steps of `augmentation:`, or None when it does nothing.

    `images` is a float batch [B, H, W, C] of any size and channel count (a single [H, W, C] image also works) and
    `seed` an int32/int64 tensor of shape [2]; the result has the same shape and dtype and depends only on (images,
    seed), so a tf.data pipeline that maps batches with seed (base_seed, batch_counter) is reproducible at any
    parallelism. Works eagerly, under tf.function and in Dataset.map. The output is not clipped (IDG does not clip).
    mixup and cutmix need the labels too: make_batch_augmenter applies them.
    """
    params = with_defaults(_params(params), "#/properties/augmentation")
    _check(params)
    steps = [step for step in (make(params) for make in _STEPS) if step is not None]
    if not steps:
        return None

    def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        images = tf.convert_to_tensor(images)
        single = images.shape.rank == 3
        x = tf.cast(images[tf.newaxis] if single else images, tf.float32)
        seed = tf.convert_to_tensor(seed)
        seeds = tf.random.experimental.stateless_split(seed, num=len(_SLOTS))
        for step in steps:
            x = step(x, seed, seeds)
        return tf.cast(x[0] if single else x, images.dtype)

    return augment


def mixing_alphas(params: Augmentation | dict | None) -> dict[str, float]:
    """{"mixup": alpha, "cutmix": alpha} for the batch operations the section asks for, defaults from the schema."""
    params = with_defaults(_params(params), "#/properties/augmentation")
    alphas = {}
    for name in ("mixup", "cutmix"):
        if params.get(name) is not None:
            alpha = params[name].get("alpha") if isinstance(params[name], dict) else None
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
                raise XrunError(f"expected a number > 0, got {alpha!r}", path=_where(f"{name}.alpha"))
            alphas[name] = float(alpha)
    return alphas


def make_batch_augmenter(params: Augmentation | dict | None) -> Callable | None:
    """An `apply(images, labels, seed) -> (images, labels)` for whole training batches: the per-image steps, then
    mixup / cutmix on the images and their one-hot labels; None when the section does nothing."""
    augment = make_augmenter(params)
    mix = mixing.make_mixer(mixing_alphas(params))
    if augment is None and mix is None:
        return None

    def apply(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seed = tf.convert_to_tensor(seed)
        if augment is not None:
            images = augment(images, seed)
        if mix is not None:
            images, labels = mix(images, labels, tf.random.experimental.stateless_split(seed, num=len(_SLOTS))[
                _SLOT["mix"]])
        return images, labels

    return apply
