"""ImageDataGenerator-style augmentation: exact geometry against IDG and scipy, sampling ranges, seeding, tf.data."""

import numpy as np
import pytest
import scipy.ndimage as ndi

tf = pytest.importorskip("tensorflow")

from runner.errors import XrunError  # noqa: E402
from runner.training.augment import affine_matrices, erasing_settings, make_augmenter, sample_params, transform_images  # noqa: E402

try:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator, apply_affine_transform
except ImportError:  # pragma: no cover - depends on the installed Keras
    ImageDataGenerator = apply_affine_transform = None

pytestmark = pytest.mark.filterwarnings("ignore:Please import `affine_transform`:DeprecationWarning")
needs_idg = pytest.mark.skipif(apply_affine_transform is None, reason="legacy ImageDataGenerator not importable")

IDENTITY = dict(rotation_deg=0.0, shift_x_px=0.0, shift_y_px=0.0, shear_deg=0.0, zoom_x=1.0, zoom_y=1.0,
                flip_h=0.0, flip_v=0.0)
SEED_002 = dict(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, shear_range=0.2,
                zoom_range=0.1, fill_mode="nearest", gaussian_noise=0.05)


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    """The first 512 verified MNIST training digits as float32 [N, 28, 28, 1] in [0, 1]."""
    return (mnist.x_train[:512].astype(np.float32) / 255.0)[..., None]


@pytest.fixture(scope="module")
def digit(digits) -> np.ndarray:
    return digits[0]


def warp(img: np.ndarray, fill_mode: str = "nearest", **kw) -> np.ndarray:
    """Our single resampling of one [H, W, C] image with the given affine_matrices parameters."""
    h, w = img.shape[:2]
    m = affine_matrices(1, h, w, **{**IDENTITY, **kw})
    return transform_images(tf.constant(img[None]), m, fill_mode).numpy()[0]


def idg(img: np.ndarray, **kw) -> np.ndarray:
    """The legacy ImageDataGenerator transform for a channels-last image."""
    return apply_affine_transform(img, row_axis=0, col_axis=1, channel_axis=2, fill_mode="nearest", order=1, **kw)


def dot_image() -> np.ndarray:
    """One bright pixel at row 2, column 6 of a 9x9 image (centre (4, 4)): up and to the right of the centre."""
    x = np.zeros((9, 9, 1), np.float32)
    x[2, 6, 0] = 1.0
    return x


def peak(img: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(np.argmax(img[..., 0]), img.shape[:2])
    return int(r), int(c)


# --- the geometry ---------------------------------------------------------------------------------------------


def test_rotation_by_90_degrees_is_exactly_rot90(digit):
    out = warp(digit, rotation_deg=90.0)
    np.testing.assert_allclose(out, np.rot90(digit), atol=1e-5)
    np.testing.assert_allclose(warp(digit, rotation_deg=-90.0), np.rot90(digit, k=-1), atol=1e-5)


def test_rotation_by_30_degrees_matches_scipy_rotate(digit):
    out = warp(digit, rotation_deg=30.0)
    expected = ndi.rotate(digit[..., 0], 30, reshape=False, order=1, mode="nearest")
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-4)
    assert np.abs(out - digit).max() > 0.5  # it did move


def test_sign_conventions_on_a_single_dot():
    x = dot_image()
    assert peak(warp(x, rotation_deg=90.0)) == (2, 2)  # counter-clockwise on screen
    assert peak(warp(x, shift_x_px=2.0)) == (2, 4)  # +x samples x + 2: content moves left
    assert peak(warp(x, shift_y_px=2.0)) == (0, 6)  # +y: content moves up
    assert peak(warp(x, zoom_x=0.5)) == (2, 8)  # zoom < 1 enlarges, along columns only
    assert peak(warp(x, zoom_y=0.5)) == (0, 6)  # ... along rows only
    assert peak(warp(x, flip_h=1.0)) == (2, 2)
    assert peak(warp(x, flip_v=1.0)) == (6, 6)
    assert peak(warp(x, shear_deg=30.0))[0] == 2  # shear keeps the row above the centre, moves its column


@needs_idg
@pytest.mark.parametrize("ours, theirs", [
    (dict(rotation_deg=30.0), dict(theta=30)),
    (dict(rotation_deg=-7.5), dict(theta=-7.5)),
    (dict(shift_x_px=3.3), dict(tx=3.3)),
    (dict(shift_y_px=-2.5), dict(ty=-2.5)),
    (dict(shear_deg=20.0), dict(shear=20)),
    (dict(zoom_x=0.8, zoom_y=1.2), dict(zx=0.8, zy=1.2)),
    (dict(rotation_deg=10.0, shift_x_px=2.0, shift_y_px=-1.4, shear_deg=15.0, zoom_x=0.9, zoom_y=1.1),
     dict(theta=10, tx=2, ty=-1.4, shear=15, zx=0.9, zy=1.1)),
])
def test_matches_idg_apply_affine_transform(digit, ours, theirs):
    expected = idg(digit, **theirs)
    out = warp(digit, **ours)
    assert np.abs(out - digit).max() > 0.1
    np.testing.assert_allclose(out, expected, atol=1e-4)  # whole image, borders included (fill_mode nearest)


@needs_idg
@pytest.mark.parametrize("mode", ["nearest", "reflect"])
def test_matches_idg_with_flips_and_fill_modes(digit, mode):
    gen = ImageDataGenerator(fill_mode=mode)
    theirs = dict(theta=-12.0, tx=4.0, ty=3.0, shear=8.0, zx=1.25, zy=1.15, flip_horizontal=True, flip_vertical=True)
    expected = gen.apply_transform(digit.copy(), theirs)
    out = warp(digit, mode, rotation_deg=-12.0, shift_x_px=4.0, shift_y_px=3.0, shear_deg=8.0, zoom_x=1.25,
               zoom_y=1.15, flip_h=1.0, flip_v=1.0)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_one_resampling_for_the_whole_batch(digits):
    """Per-image parameters in one call equal image-by-image calls."""
    x = digits[:4]
    p = dict(IDENTITY, rotation_deg=tf.constant([0.0, 10.0, -20.0, 5.0]), shift_x_px=tf.constant([0.0, 1.5, 0, -2]),
             zoom_y=tf.constant([1.0, 0.9, 1.1, 1.0]))
    batch = transform_images(tf.constant(x), affine_matrices(4, 28, 28, **p), "nearest").numpy()
    for i in range(4):
        one = {k: (v[i] if isinstance(v, tf.Tensor) else v) for k, v in p.items()}
        np.testing.assert_allclose(batch[i], warp(x[i], **one), atol=1e-6)
    np.testing.assert_allclose(batch[0], x[0], atol=1e-6)  # identity row is exact


# --- the random parameters ------------------------------------------------------------------------------------


def test_sampled_angles_cover_the_configured_range():
    p = sample_params({"rotation_range": 10}, 4096, 28, 28, tf.constant([1, 2]))
    angles = p["rotation_deg"].numpy()
    assert angles.shape == (4096,)
    assert angles.min() >= -10 and angles.max() <= 10
    assert angles.min() < -9.8 and angles.max() > 9.8 and abs(angles.mean()) < 0.5
    assert np.histogram(angles, bins=10, range=(-10, 10))[0].min() > 300  # roughly uniform
    for key in ("shift_x_px", "shift_y_px", "shear_deg"):
        assert not p[key].numpy().any()
    assert (p["zoom_x"].numpy() == 1).all() and (p["zoom_y"].numpy() == 1).all()


def test_sampled_seed_002_parameters_stay_in_idg_ranges():
    p = {k: v.numpy() for k, v in sample_params(SEED_002, 4096, 28, 32, tf.constant([3, 4])).items()}
    assert np.abs(p["shift_x_px"]).max() <= 0.1 * 32 and np.abs(p["shift_x_px"]).max() > 0.09 * 32  # width
    assert np.abs(p["shift_y_px"]).max() <= 0.1 * 28 and np.abs(p["shift_y_px"]).max() > 0.09 * 28  # height
    assert np.abs(p["shear_deg"]).max() <= 0.2 and np.abs(p["shear_deg"]).max() > 0.19  # degrees, not radians
    for key in ("zoom_x", "zoom_y"):
        assert p[key].min() >= 0.9 and p[key].max() <= 1.1 and p[key].min() < 0.91 and p[key].max() > 1.09
    assert abs(np.corrcoef(p["zoom_x"], p["zoom_y"])[0, 1]) < 0.1  # drawn independently
    assert abs(np.corrcoef(p["shift_x_px"], p["shift_y_px"])[0, 1]) < 0.1
    assert not p["flip_h"].any() and not p["flip_v"].any()


def test_zoom_pair_and_flips():
    p = sample_params({"zoom_range": [0.5, 0.8], "horizontal_flip": True, "vertical_flip": True},
                      2000, 28, 28, tf.constant([5, 6]))
    zx = p["zoom_x"].numpy()
    assert zx.min() >= 0.5 and zx.max() <= 0.8
    for key in ("flip_h", "flip_v"):
        f = p[key].numpy()
        assert set(np.unique(f)) == {0.0, 1.0} and 0.45 < f.mean() < 0.55


def test_enabling_one_transform_does_not_change_the_draws_of_another():
    seed = tf.constant([7, 8])
    a = sample_params({"rotation_range": 10}, 64, 28, 28, seed)["rotation_deg"]
    b = sample_params({"rotation_range": 10, "zoom_range": 0.2}, 64, 28, 28, seed)["rotation_deg"]
    np.testing.assert_array_equal(a.numpy(), b.numpy())


# --- make_augmenter -------------------------------------------------------------------------------------------


def test_no_op_sections_give_none():
    assert make_augmenter({}) is None
    assert make_augmenter(None) is None
    assert make_augmenter({"rotation_range": 0, "zoom_range": 0, "fill_mode": "constant", "cval": 1.0,
                           "horizontal_flip": False, "gaussian_noise": 0}) is None
    assert make_augmenter({"zoom_range": [1, 1]}) is None
    assert make_augmenter({"gaussian_noise": 0.1}) is not None


def test_bad_options_raise_xrun_error():
    with pytest.raises(XrunError, match="rotation_rnage"):
        make_augmenter({"rotation_rnage": 10})
    with pytest.raises(XrunError, match="fill_mode"):
        make_augmenter({"rotation_range": 10, "fill_mode": "mirror"})


def test_same_seed_same_output_other_seed_other_output(digits):
    augment = make_augmenter(SEED_002)
    x = tf.constant(digits[:32])
    a = augment(x, tf.constant([1, 0], tf.int64))
    b = augment(x, tf.constant([1, 0], tf.int64))
    c = augment(x, tf.constant([1, 1], tf.int64))
    assert a.shape == x.shape and a.dtype == tf.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - c.numpy()).mean() > 1e-3
    assert np.abs(a.numpy() - digits[:32]).mean() > 1e-3


def test_dtype_and_single_image_are_preserved(digits):
    augment = make_augmenter({"rotation_range": 10})
    half = augment(tf.constant(digits[:4], tf.float16), tf.constant([1, 2]))
    assert half.dtype == tf.float16 and half.shape == (4, 28, 28, 1)
    one = augment(tf.constant(digits[0]), tf.constant([1, 2]))
    assert one.shape == (28, 28, 1)


def test_gaussian_noise_is_added_after_the_geometry(digits):
    seed = tf.constant([11, 12])
    x = tf.constant(digits[:256])
    geometric = make_augmenter({k: v for k, v in SEED_002.items() if k != "gaussian_noise"})(x, seed).numpy()
    noisy = make_augmenter(SEED_002)(x, seed).numpy()
    diff = noisy - geometric
    assert abs(diff.std() - 0.05) < 0.002 and abs(diff.mean()) < 0.002
    # Not clipped to [0, 1], as IDG: the noise on black and on white pixels is as symmetric as anywhere (a clip
    # would move its mean by about 0.02 there). Asserted where such pixels are, not on the whole batch's extremes.
    black, white = geometric < 0.05, geometric > 0.95
    assert black.sum() > 100_000 and white.sum() > 5_000
    for where in (black, white):
        assert abs(diff[where].mean()) < 0.002 and abs(diff[where].std() - 0.05) < 0.002
    only_noise = make_augmenter({"gaussian_noise": 0.05})(x, seed).numpy() - digits[:256]
    assert abs(only_noise.std() - 0.05) < 0.002


@pytest.mark.slow  # long tf.data pipelines
def test_tf_function_and_tf_data_parallel_map_equal_eager(digits):
    augment = make_augmenter(SEED_002)
    base = tf.constant(1234, tf.int64)
    x = digits[:500]  # 4 batches of 128 and a short one of 116

    def with_seed(i, images):
        return augment(images, tf.stack([base, i]))

    ds = (tf.data.Dataset.from_tensor_slices(x).batch(128).enumerate()
          .map(with_seed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2))
    piped = np.concatenate([b.numpy() for b in ds])
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in ds]), piped)  # bit-identical on a rerun
    eager = np.concatenate([with_seed(tf.constant(i, tf.int64), tf.constant(x[i * 128:(i + 1) * 128])).numpy()
                            for i in range(4)])
    assert piped.shape == x.shape
    # Graph and eager kernels may round the matrix entries differently in the last bit: equal to ~1e-6.
    np.testing.assert_allclose(piped, eager, atol=1e-5)

    traced = tf.function(augment)
    np.testing.assert_allclose(traced(tf.constant(x[:128]), tf.stack([base, tf.constant(0, tf.int64)])).numpy(),
                               eager[:128], atol=1e-5)


# --- random erasing -------------------------------------------------------------------------------------------


def test_erasing_defaults_come_from_the_schema():
    assert erasing_settings({}) == {"probability": 0.5, "area": [0.02, 0.4], "aspect_ratio": [0.3, 3.3], "value": 0}
    assert erasing_settings({"probability": 0}) is None
    assert erasing_settings(None) is None
    assert make_augmenter({"random_erasing": {"probability": 0}}) is None


def test_erasing_sets_one_rectangle_in_about_the_given_share_of_images():
    x = tf.ones([4000, 28, 28, 1])
    erased = make_augmenter({"random_erasing": {"probability": 0.3, "area": [0.1, 0.2], "value": -1}})(
        x, tf.constant([5, 6])).numpy() == -1
    areas = erased.reshape(len(x), -1).mean(axis=1)
    assert abs((areas > 0).mean() - 0.3) < 0.03
    # Whole-pixel sides and clipping move the area a little off [0.1, 0.2] of 784 pixels.
    assert 0.08 < areas[areas > 0].min() and areas.max() < 0.23 and abs(areas[areas > 0].mean() - 0.15) < 0.01
    for image in erased[:50, ..., 0]:
        rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        assert image.sum() == len(rows) * len(cols)  # a filled rectangle, nothing else


def test_erasing_comes_last_and_leaves_the_other_draws_alone(digits):
    seed, x = tf.constant([7, 8]), tf.constant(digits[:64])
    plain = make_augmenter(SEED_002)(x, seed).numpy()
    erased = make_augmenter({**SEED_002, "random_erasing": {"probability": 1, "value": 9}})(x, seed).numpy()
    hit = erased == 9
    assert hit.reshape(64, -1).any(axis=1).all()
    np.testing.assert_array_equal(erased[~hit], plain[~hit])


# --- any image size and channel count -------------------------------------------------------------------------

EVERYTHING = dict(SEED_002, horizontal_flip=True, vertical_flip=True, brightness_range=[0.8, 1.2],
                  channel_shift_range=20, random_crop={"padding": 4}, random_erasing={"probability": 0.5})
GEOMETRY = {k: v for k, v in SEED_002.items() if k != "gaussian_noise"}


def smooth_images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """n float32 [h, w, c] images in [0, 1] with structure at several scales (so every transform shows)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, h // 4 + 1, w // 4 + 1, c), dtype=np.float32)
    x = ndi.zoom(coarse, (1, 4, 4, 1), order=1)[:, :h, :w]
    return np.clip(x + 0.1 * rng.random((n, h, w, c), dtype=np.float32), 0, 1).astype(np.float32)


@pytest.mark.parametrize("shape", [(32, 32, 3), (24, 40, 3), (24, 40, 1), (20, 30, 5)])
def test_every_option_works_on_any_size_and_channel_count_and_repeats_with_its_seed(shape):
    x = tf.constant(smooth_images(16, *shape))
    augment = make_augmenter(EVERYTHING)
    a, b = augment(x, tf.constant([3, 4])), augment(x, tf.constant([3, 4]))
    other = augment(x, tf.constant([3, 5]))
    assert a.shape == (16, *shape) and a.dtype == tf.float32 and np.isfinite(a.numpy()).all()
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - other.numpy()).mean() > 0.05 and np.abs(a.numpy() - x.numpy()).mean() > 0.05


@pytest.mark.parametrize("shape", [(32, 32, 3), (24, 40, 3)])
def test_the_channels_of_a_pixel_move_together(shape):
    # Each channel of an RGB batch is transformed exactly as that channel alone would be, with the same seed.
    x = smooth_images(8, *shape)
    augment = make_augmenter({**GEOMETRY, "horizontal_flip": True, "random_crop": {"padding": 3},
                              "random_erasing": {"probability": 1, "value": -1}})
    seed = tf.constant([9, 1])
    rgb = augment(tf.constant(x), seed).numpy()
    for c in range(shape[2]):
        np.testing.assert_allclose(rgb[..., c:c + 1], augment(tf.constant(x[..., c:c + 1]), seed).numpy(), atol=1e-6)
    erased = rgb == -1
    assert erased.any() and (erased.all(axis=-1) == erased.any(axis=-1)).all()  # a rectangle spans every channel


def test_exact_geometry_on_a_non_square_rgb_image():
    img = smooth_images(1, 24, 40, 3)[0]
    np.testing.assert_allclose(warp(img, rotation_deg=180.0), img[::-1, ::-1], atol=1e-5)  # each axis' own centre
    np.testing.assert_array_equal(warp(img, flip_h=1.0), img[:, ::-1])
    np.testing.assert_array_equal(warp(img, flip_v=1.0), img[::-1])
    shifted = warp(img, shift_x_px=3.0, shift_y_px=-2.0)  # content 3 px left, 2 px down
    np.testing.assert_allclose(shifted[2:, :-3], img[:-2, 3:], atol=1e-6)
    expected = np.stack([ndi.rotate(img[..., c], 30, reshape=False, order=1, mode="nearest") for c in range(3)], -1)
    np.testing.assert_allclose(warp(img, rotation_deg=30.0), expected, atol=1e-4)


def test_a_fractional_shift_is_of_the_width_and_the_height_of_a_non_square_image():
    p = sample_params({"width_shift_range": 0.25, "height_shift_range": 0.25}, 4000, 24, 40, tf.constant([1, 1]))
    assert 9.9 < float(tf.reduce_max(tf.abs(p["shift_x_px"]))) <= 10.0   # a quarter of the width, 40
    assert 5.9 < float(tf.reduce_max(tf.abs(p["shift_y_px"]))) <= 6.0    # a quarter of the height, 24


# --- brightness_range, channel_shift_range, random_crop ---------------------------------------------------------


def test_brightness_one_to_one_is_the_identity():
    x = smooth_images(8, 24, 40, 3)
    same = make_augmenter({"brightness_range": [1.0, 1.0]})(tf.constant(x), tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(same, x)
    seed = tf.constant([5, 6])
    with_it = make_augmenter({**GEOMETRY, "brightness_range": [1, 1]})(tf.constant(x), seed).numpy()
    np.testing.assert_array_equal(with_it, make_augmenter(GEOMETRY)(tf.constant(x), seed).numpy())


def test_brightness_multiplies_each_image_by_one_uniform_factor():
    x = smooth_images(3000, 4, 6, 3) + 0.5  # no zeros, so out / in is the factor at every pixel
    out = make_augmenter({"brightness_range": [0.5, 1.5]})(tf.constant(x), tf.constant([7, 7])).numpy()
    factor = out / x
    per_image = factor.reshape(len(x), -1)
    np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], 1), rtol=1e-6)
    f = per_image[:, 0]
    assert 0.5 <= f.min() < 0.51 and 1.49 < f.max() <= 1.5 and abs(f.mean() - 1) < 0.02
    assert abs(np.std(f) - 1 / np.sqrt(12)) < 0.01  # uniform on a width of 1
    assert out.max() > 2.0  # not clipped


@needs_idg
def test_channel_shift_is_idgs_apply_channel_shift_on_the_0_1_scale():
    from keras.src.legacy.preprocessing.image import apply_channel_shift

    from runner.training.augment import shift_channels

    img255 = smooth_images(1, 24, 40, 3)[0] * 200 + 20  # pixels 20..220 on IDG's 0-255 scale
    for intensity in (40.0, -35.0):
        theirs = apply_channel_shift(img255, intensity, channel_axis=2) / 255
        ours = shift_channels(tf.constant(img255[None] / 255, tf.float32), tf.constant([intensity / 255])).numpy()[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
        assert (ours == theirs.max()).sum() > 10 or (ours == theirs.min()).sum() > 10  # some pixels were clipped


def test_channel_shift_range_is_in_0_255_units_one_shift_per_image_for_all_channels():
    x = 0.25 + 0.5 * smooth_images(3000, 4, 6, 3)
    x[:, 0, 0, 0], x[:, 0, 1, 1] = 0.0, 1.0  # each image's own min and max: the clip never touches the rest
    out = make_augmenter({"channel_shift_range": 51})(tf.constant(x), tf.constant([2, 3])).numpy()
    delta = np.delete((out - x).reshape(len(x), -1), [0, 4], axis=1)  # all but the two fixed values
    np.testing.assert_allclose(delta, delta[:, :1].repeat(delta.shape[1], 1), atol=1e-6)
    d = delta[:, 0]
    assert np.abs(d).max() <= 0.2 + 1e-6 and np.abs(d).max() > 0.198 and abs(d.mean()) < 0.01  # 51 / 255 = 0.2
    # Clipped to the image's own range: its darkest pixel never goes below 0, nor its brightest above 1.
    np.testing.assert_allclose(out[:, 0, 0, 0], np.maximum(d, 0), atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1, 1], np.minimum(1 + d, 1), atol=1e-6)


@pytest.mark.parametrize("shape", [(32, 32, 3), (24, 40, 3)])
def test_random_crop_is_a_zero_pad_and_a_crop_at_a_uniform_offset(shape):
    from runner.training.augment import random_crop

    h, w, _ = shape
    x = np.random.default_rng(1).random((2000, *shape), dtype=np.float32) + 1  # unique values, none of them 0
    out = random_crop(tf.constant(x), tf.constant([4, 2]), 4).numpy()
    offsets = []
    for image, cropped in zip(x, out):
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if np.array_equal(padded[dy:dy + h, dx:dx + w], cropped)]
        assert len(found) == 1
        offsets.append(found[0])
    assert set(offsets) == {(dy, dx) for dy in range(9) for dx in range(9)}  # all 81 offsets occur
    # Uniform: the black band of each image (a dx-wide column strip) has width 0..4 on each side, mean 20/9.
    black_columns = (out[..., 0] == 0).all(axis=1).sum(axis=1)
    assert abs(black_columns.mean() - 20 / 9) < 0.1
    assert make_augmenter({"random_crop": {}})(tf.constant(x[:8]), tf.constant([1, 1])).shape == (8, *shape)


def test_the_new_steps_follow_the_geometry_in_idgs_order_and_leave_its_draws_alone():
    x, seed = tf.constant(smooth_images(16, 24, 40, 3)), tf.constant([3, 1])
    plain = make_augmenter(GEOMETRY)(x, seed).numpy()
    # Each step's draw, read off alone with the same seed: a factor (from ones) and a shift (from mid-grey).
    factor = make_augmenter({"brightness_range": [0.5, 1.5]})(tf.ones([16, 1, 1, 1]), seed).numpy()
    grey = np.full((16, 1, 3, 1), 0.5, np.float32)
    grey[:, 0, 0], grey[:, 0, 2] = 0.0, 1.0
    shift = make_augmenter({"channel_shift_range": 30})(tf.constant(grey), seed).numpy()[:, :1, 1:2] - 0.5
    both = make_augmenter({**GEOMETRY, "brightness_range": [0.5, 1.5], "channel_shift_range": 30})(x, seed).numpy()
    lo, hi = plain.min(axis=(1, 2, 3), keepdims=True), plain.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(both, np.clip(plain + shift, lo, hi) * factor, atol=1e-6)
    assert np.abs(factor - 1).min() > 0 and np.abs(shift).min() > 0


# --- mixup and cutmix -----------------------------------------------------------------------------------------


def indexed_batch(n: int = 64, h: int = 24, w: int = 40, c: int = 3):
    """Image i is all i (every pixel, every channel) and its label the one-hot of class i: mixing shows in both."""
    images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, h, w, c)).copy()
    return tf.constant(images), tf.one_hot(tf.range(n), n)


def mix_of(label_row: np.ndarray, i: int) -> tuple[float, int]:
    """(own weight, partner) of an indexed batch's mixed label row i."""
    others = [j for j in np.flatnonzero(label_row > 1e-7) if j != i]
    return float(label_row[i]), (others[0] if others else i)


def test_mixup_blends_images_and_labels_by_the_same_weight_and_labels_sum_to_one():
    from runner.training.augment import make_batch_augmenter

    images, labels = indexed_batch()
    x, y = (t.numpy() for t in make_batch_augmenter({"mixup": {"alpha": 0.4}})(images, labels, tf.constant([1, 2])))
    assert x.shape == (64, 24, 40, 3) and y.shape == (64, 64)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    assert ((y > 1e-7).sum(axis=1) <= 2).all() and (y.min() >= 0)
    partners = set()
    for i in range(64):
        own, partner = mix_of(y[i], i)
        partners.add(partner)
        np.testing.assert_allclose(x[i], own * i + (1 - own) * partner, atol=1e-4)
    assert len(partners) > 50  # partners are a permutation of the batch


def test_cutmix_pastes_a_rectangle_and_labels_follow_the_pixel_shares():
    from runner.training.augment import make_batch_augmenter

    images, labels = indexed_batch(128)
    x, y = (t.numpy() for t in make_batch_augmenter({"cutmix": {}})(images, labels, tf.constant([3, 3])))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    for i in range(128):
        own, partner = mix_of(y[i], i)
        pasted = x[i, ..., 0] == partner
        assert np.isin(x[i], [i, partner]).all() and (x[i] == x[i, ..., :1]).all()
        if partner != i:
            np.testing.assert_allclose(own, 1 - pasted.mean(), atol=1e-6)
            rows, cols = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
            assert pasted.sum() == len(rows) * len(cols)  # one filled rectangle
    shares = 1 - y[np.arange(128), np.arange(128)]
    assert 0.3 < shares.mean() < 0.6  # alpha 1: about half pasted on average, less where clipped at an edge


def test_beta_draws_follow_beta_alpha_alpha():
    from scipy import stats

    from runner.training.mixing import beta

    for alpha in (0.2, 1.0):
        lam = beta(tf.constant([5, 5]), 5000, alpha).numpy()
        assert lam.min() >= 0 and lam.max() <= 1
        assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).statistic < 0.03


def test_mixup_and_cutmix_together_give_each_image_one_of_the_two():
    from runner.training.augment import make_batch_augmenter

    images, labels = indexed_batch(256, 8, 8, 1)
    seed = tf.constant([8, 9])
    both = [t.numpy() for t in make_batch_augmenter({"mixup": {}, "cutmix": {}})(images, labels, seed)]
    again = [t.numpy() for t in make_batch_augmenter({"mixup": {}, "cutmix": {}})(images, labels, seed)]
    np.testing.assert_array_equal(both[0], again[0])
    # The same partners and draws as either alone: each image is exactly its mixup-only or its cutmix-only result.
    alone = {name: [t.numpy() for t in make_batch_augmenter({name: {}})(images, labels, seed)]
             for name in ("mixup", "cutmix")}
    same = {name: np.array([np.array_equal(both[0][i], out[0][i]) and np.array_equal(both[1][i], out[1][i])
                            for i in range(256)]) for name, out in alone.items()}
    assert (same["mixup"] | same["cutmix"]).all()
    assert 0.4 < (same["mixup"] & ~same["cutmix"]).mean() < 0.6
    np.testing.assert_allclose(both[1].sum(axis=1), 1.0, atol=1e-6)
    other = make_batch_augmenter({"mixup": {}, "cutmix": {}})(images, labels, tf.constant([8, 10]))[0].numpy()
    assert not np.array_equal(other, both[0])


def test_mixing_class_numbers_is_an_error_saying_what_to_use():
    from runner.training.augment import make_batch_augmenter

    images, _ = indexed_batch(4)
    with pytest.raises(XrunError) as error:
        make_batch_augmenter({"cutmix": {}})(images, tf.range(4), tf.constant([1, 1]))
    assert error.value.line() == (
        "augmentation.cutmix: cutmix mixes the labels of two images, which needs one-hot labels, but these are class "
        "numbers; use a loss on one-hot labels such as CategoricalCrossentropy, not SparseCategoricalCrossentropy")


@pytest.mark.slow  # long tf.data pipelines
def test_the_training_pipeline_mixes_rgb_batches_reproducibly():
    from runner.training import pipeline

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (96, 24, 40, 3), dtype=np.uint8), (np.arange(96) % 10).astype(np.uint8)

    def batches():
        ds = pipeline.train_dataset(x, y, batch_size=32, shuffle=True, seed=5, one_hot_classes=10, augmentation={
            "random_crop": {"padding": 4}, "horizontal_flip": True, "channel_shift_range": 10,
            "brightness_range": [0.9, 1.1], "mixup": {}, "cutmix": {}})
        return [(a.numpy(), b.numpy()) for a, b in ds.take(4)]

    first, second = batches(), batches()
    for (a, b), (c, d) in zip(first, second):
        assert a.shape == (32, 24, 40, 3) and b.shape == (32, 10)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
        np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-6)
    assert any(((b > 0) & (b < 1)).any() for _, b in first)  # labels really were mixed


def test_the_logged_preview_shows_cutmix_on_rgb_images():
    from runner.training import pipeline

    x = (smooth_images(8, 24, 40, 3) * 255).astype(np.uint8)
    originals, shown = pipeline.augmented_preview(x, {"cutmix": {}}, seed=4, n=8)
    assert originals.shape == shown.shape == (8, 24, 40, 3)
    pasted = (shown != originals).any(axis=-1)
    assert pasted.any()
    for image, i in zip(pasted, range(8)):  # each pasted area is one rectangle, taken from another image
        rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        assert image.sum() <= len(rows) * len(cols)
        if image.any():
            assert any(np.array_equal(shown[i][image], originals[j][image]) for j in range(8) if j != i)
