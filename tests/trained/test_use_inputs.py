"""What a trained model is given: image files of its size, of another size resized as training resized them, and
files or data it cannot take, each refused in one line (issue 22, items 2, 5 and 22)."""

import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import DATA_DIR, xrun
from PIL import Image

from runner.errors import XrunError
from runner.model import standalone
from runner.records.models import LoggedModel
from runner.trained import evaluate as ev
from runner.trained import use
from runner.training.sources import ImageFiles


def model_of(height: int, width: int, channels: int = 1, params: dict | None = None) -> use.Model:
    """An untrained conv net made to stand alone, as a run with these data.* params logs it."""
    net = keras.Sequential([keras.Input((height, width, channels)), keras.layers.Conv2D(2, 3),
                            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")], name="net")
    shape = (height, width) if channels == 1 else (height, width, channels)
    logged = LoggedModel("models:/m-1", "net", run_id="0123456789abcdef" * 2, params=params or {})
    return use.Model(standalone.standalone(net, shape), list("0123456789"), "0123abcd", logged)


RESIZED = {"data.image_size": "[28, 28]", "data.interpolation": "bilinear", "data.crop_to_aspect_ratio": "false"}


def bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A small PNG whose header says WIDTHxHEIGHT (its CRC fixed, so Pillow reads the header as valid)."""
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4:start + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[start + 17:start + 21] = zlib.crc32(bytes(data[start:start + 17])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


# --- item 2: a decompression bomb --------------------------------------------------------------------------

def test_a_png_that_claims_20000x20000_pixels_is_refused_in_one_line(tmp_path):
    path = bomb(tmp_path / "bomb.png")
    with pytest.raises(XrunError) as info:
        use.read_inputs([str(path)], use.reader(model_of(28, 28)))
    assert info.value.format() == (
        f"{path}: too large to read safely (Image size (400000000 pixels) exceeds limit of 178956970 pixels, could "
        "be decompression bomb DOS attack.); give images of the model's size, 28x28")


def test_one_past_pillows_warning_limit_is_refused_too(tmp_path):
    path = bomb(tmp_path / "big.png", 10000, 10000)  # 1e8 pixels: over 89,478,485, under twice it
    with pytest.raises(XrunError) as info:
        use.reader(model_of(28, 28)).read(path)
    assert info.value.format() == (
        f"{path}: too large to read safely (Image size (100000000 pixels) exceeds limit of 89478485 pixels, could "
        "be decompression bomb DOS attack.); give images of the model's size, 28x28")


def test_evaluate_on_a_folder_holding_a_bomb_names_the_file(tmp_path):
    bomb((tmp_path / "7").mkdir() or tmp_path / "7" / "b.png")
    with pytest.raises(XrunError) as info:
        ev.labelled_data(model_of(28, 28), str(tmp_path), None, None)
    assert info.value.format().startswith(f"{tmp_path / '7' / 'b.png'}: too large to read safely (Image size")


# --- item 22: images of another size, for a model trained with data.image_size ------------------------------

def test_images_of_another_size_are_resized_as_training_resized_them_and_said_so(tmp_path):
    pixels = np.random.RandomState(0).randint(0, 256, (2, 32, 32)).astype(np.uint8)
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    for path, image in zip(paths, pixels):
        Image.fromarray(image).save(path)
    Image.fromarray(pixels[0][:28, :28]).save(tmp_path / "same.png")
    images = use.read_inputs([str(tmp_path)], use.reader(model_of(28, 28, params=RESIZED)))
    training = ImageFiles(np.array([str(p) for p in paths]), (28, 28), 1, True)[:]  # as training decodes them
    assert images.names == [str(p) for p in paths] + [str(tmp_path / "same.png")]
    np.testing.assert_array_equal(images.pixels[:2], training[..., 0])
    np.testing.assert_array_equal(images.pixels[2], pixels[0][:28, :28])
    assert images.notes == ["resized 2 images to 28x28 (bilinear), as training resized its images (data.image_size)"]


def test_predict_prints_the_resizing_once_on_stderr(tmp_path, monkeypatch):
    Image.fromarray(np.full((32, 30), 200, np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(use, "load", lambda *_: model_of(28, 28, params={**RESIZED, "data.interpolation": "nearest",
                                                                           "data.crop_to_aspect_ratio": "true"}))
    code, out, err = xrun("predict", "0123abcd", tmp_path / "a.png", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "file,class_1,p_1,class_2,p_2,class_3,p_3"
    assert err == ("resized 1 image to 28x28 (nearest, centre-cropped to the aspect ratio), as training resized its "
                   "images (data.image_size)\n")


def test_a_model_trained_without_image_size_still_refuses_another_size(tmp_path):
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(XrunError) as info:
        use.read_inputs([str(tmp_path / "a.png")], use.reader(model_of(28, 28)))
    assert info.value.format() == (f"{tmp_path / 'a.png'}: the image is 30x32 pixels; the model takes 28x28; resize "
                                   "or crop it to 28x28 first")


# --- item 5: a dataset of another size than the model's ------------------------------------------------------

def test_evaluate_on_mnist_of_a_32x32_model_is_refused_in_one_line():
    model = model_of(32, 32, 3)
    with pytest.raises(XrunError) as info:
        ev.labelled_data(model, "mnist", 100, DATA_DIR)
    assert info.value.format() == ("net (run 01234567) takes images of shape 32x32x3; mnist test split, first 100 "
                                   "holds images of shape 28x28; give --data images like those it was trained on: a "
                                   "folder with one sub-folder per class")


def test_mnist_goes_to_a_28x28x1_model_with_its_channel_axis():
    net = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model = use.Model(standalone.standalone(net, (28, 28, 1)), list("0123456789"), "m.keras")
    data = ev.labelled_data(model, "mnist", 5, DATA_DIR)
    assert data.pixels.shape == (5, 28, 28, 1) and ev.evaluate(model, data).matrix.sum() == 5
