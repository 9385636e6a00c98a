"""runner.training.tta: the views of an augmentation section, each an exact resampling, and the averaged
probabilities of a model whose outputs are its inputs (so every view's output is known by hand)."""

import math

import keras
import numpy as np
import pytest

from runner.training import tta

A, B, C, D = 0.5, 0.25, 0.125, 0.125  # one 1x4 image; dyadic, so every sum below is exact in float32
IMAGE = np.array([[[[A], [B], [C], [D]]]], np.float32)  # [1, 1, 4, 1]


def identity_model() -> keras.Model:
    """Flatten, then Dense(4) with the identity kernel and no bias: the output is the view's four pixels."""
    inputs = keras.Input((1, 4, 1))
    dense = keras.layers.Dense(4, use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([np.eye(4, dtype=np.float32)])
    return model


def test_views_follow_the_sections_flips_and_shifts_in_whole_pixels():
    names = [v.name for v in tta.views({"horizontal_flip": True, "vertical_flip": True, "width_shift_range": 0.1,
                                        "height_shift_range": 2}, height=28, width=28)]
    assert names == ["identity", "flip_h", "flip_v", "left 3", "right 3", "up 2", "down 2"]  # 0.1 x 28 = 2.8 -> 3
    assert tta.views({"rotation_range": 10, "width_shift_range": 0.01}, 28, 28) == [tta.View("identity")]  # 0.28 -> 0
    assert tta.views(None, 28, 28) == [tta.View("identity")]


def test_each_view_copies_pixels_exactly_and_fills_as_the_section_says():
    x = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)  # uint8 [N, H, W], as images are stored
    flip_h, flip_v, left, down = (tta.View("flip_h", flip_h=True), tta.View("flip_v", flip_v=True),
                                  tta.View("left 1", shift_x=1), tta.View("down 1", shift_y=-1))
    np.testing.assert_array_equal(tta.view_pixels(x, flip_h, "nearest", 0.0), x[:, :, ::-1])
    np.testing.assert_array_equal(tta.view_pixels(x, flip_v, "nearest", 0.0), x[:, ::-1, :])
    assert tta.view_pixels(x, left, "nearest", 0.0)[0].tolist() == [[1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]]
    assert tta.view_pixels(x, left, "constant", 0.2)[0].tolist() == [[1, 2, 3, 51], [5, 6, 7, 51], [9, 10, 11, 51]]
    assert tta.view_pixels(x, down, "constant", 0.0)[0].tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [4, 5, 6, 7]]
    assert tta.view_pixels(x, left, "nearest", 0.0).dtype == np.uint8


def test_the_average_over_views_is_the_hand_computed_one():
    chosen = tta.views({"horizontal_flip": True, "width_shift_range": 1}, 1, 4)
    assert [v.name for v in chosen] == ["identity", "flip_h", "left 1", "right 1"]
    model = identity_model()
    got = tta.averaged(lambda x: model.predict(x, verbose=0), IMAGE, chosen, "constant", 0.0)
    # identity [A, B, C, D], flip [D, C, B, A], left 1 [B, C, D, 0], right 1 [0, A, B, C]
    expected = [(A + D + B + 0) / 4, (B + C + C + A) / 4, (C + B + D + B) / 4, (D + A + 0 + C) / 4]
    assert got.tolist() == [expected]
    assert expected == [0.21875, 0.25, 0.1875, 0.1875]


def test_the_run_path_maps_each_view_onto_the_prepared_test_set():
    import tensorflow as tf

    chosen = tta.views({"horizontal_flip": True}, 1, 4)
    model = identity_model()
    dataset = tf.data.Dataset.from_tensor_slices((IMAGE, np.array([0]))).batch(1)
    got = tta.averaged_dataset(lambda ds: model.predict(ds, verbose=0), dataset, chosen, "nearest", 0.0)
    assert got.tolist() == [[(A + D) / 2, (B + C) / 2, (C + B) / 2, (D + A) / 2]]


def test_loss_and_accuracy_of_averaged_probabilities():
    loss, accuracy = tta.loss_and_accuracy(np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]), np.array([0, 1, 1]))
    assert accuracy == 2 / 3   # the tie's argmax is the first class: right; 0.9 against class 1: wrong
    assert loss == pytest.approx(-(math.log(0.5) + math.log(0.75) + math.log(0.1)) / 3, rel=1e-15)
