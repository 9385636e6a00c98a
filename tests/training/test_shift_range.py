"""width_shift_range / height_shift_range mean what they mean in ImageDataGenerator: < 1 a fraction, >= 1 pixels."""

import pytest

from runner.training.settings import import_tensorflow

tf = import_tensorflow()

from runner.training.augment import sample_params  # noqa: E402


def shifts(r: float, size: int = 28) -> tuple[float, float]:
    """The largest horizontal and vertical shifts drawn for 2,000 images with both ranges r."""
    p = sample_params({"width_shift_range": r, "height_shift_range": r}, 2000, size, size, tf.constant([3, 4]))
    return float(tf.reduce_max(tf.abs(p["shift_x_px"]))), float(tf.reduce_max(tf.abs(p["shift_y_px"])))


@pytest.mark.parametrize("r, limit", [(0.25, 7.0), (0.5, 14.0), (1, 1.0), (3, 3.0), (12.5, 12.5)])
def test_a_range_below_one_is_a_fraction_of_the_size_and_one_or_more_is_pixels(r, limit):
    for largest in shifts(r):
        assert limit * 0.98 < largest <= limit  # uniform on [-limit, limit]: 2,000 draws come close to it


def test_the_fraction_is_of_each_axis_own_size():
    p = sample_params({"width_shift_range": 0.5, "height_shift_range": 0.5}, 2000, 10, 40, tf.constant([1, 2]))
    assert 19.5 < float(tf.reduce_max(tf.abs(p["shift_x_px"]))) <= 20.0   # half of the width, 40
    assert 4.8 < float(tf.reduce_max(tf.abs(p["shift_y_px"]))) <= 5.0     # half of the height, 10
