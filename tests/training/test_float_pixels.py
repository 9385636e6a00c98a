"""Issue 22, item 23: float images whose pixels go above 1 (0..16 digits) are taken as they are, with a warning."""

import numpy as np
import pytest

from runner.language.spec import load_spec
from runner.training import sources

MODEL = """model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 3, activation: softmax}
optimizer: Adam
loss: SparseCategoricalCrossentropy
training: {epochs: 1}
"""


def load_with_pixels(tmp_path, x: np.ndarray):
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(len(x)) % 3)
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ndata:\n  source: arrays\n  path: d.npz\n  test_split: 0.3\n" + MODEL)
    return path, sources.load(load_spec(path), None, 0)


def test_float_pixels_above_1_are_taken_as_they_are_and_warned(tmp_path, capsys):
    x = np.linspace(0, 16, 10 * 4 * 4, dtype=np.float64).reshape(10, 4, 4)
    path, data = load_with_pixels(tmp_path, x)
    assert capsys.readouterr().err == (
        f"xrun: warning: {path}:4:3: data.path: x_train holds float pixels up to 16, taken as they are; xrun expects "
        "float pixels in [0, 1] (uint8 0-255 it scales itself); divide the images by 16 before saving them, or save "
        "them as uint8\n")
    assert (data.x_train.dtype, float(max(data.x_train.max(), data.x_test.max()))) == (np.float32, 16.0)


@pytest.mark.parametrize("x", [np.linspace(0, 1, 160, dtype=np.float32).reshape(10, 4, 4),
                               np.arange(160, dtype=np.uint8).reshape(10, 4, 4)], ids=["unit-floats", "uint8"])
def test_unit_floats_and_uint8_pass_without_a_word(tmp_path, capsys, x):
    load_with_pixels(tmp_path, x)
    assert capsys.readouterr().err == ""
