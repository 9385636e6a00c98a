"""The model as it is used: training's preprocessing inside it, no optimizer, loadable by a Python without xrun."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from runner.model import standalone
from runner.model.yogi import Yogi
from runner.training import settings

PIXELS = np.random.RandomState(0).randint(0, 256, (16, 28, 28)).astype("uint8")


def trained(dtype=None) -> keras.Model:
    """A small conv net compiled with Yogi and trained one step, as a Yogi run's model is."""
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu", dtype=dtype),
                              keras.layers.Flatten(dtype=dtype), keras.layers.Dense(10, activation="softmax")],
                             name="tiny")
    model.compile(optimizer=Yogi(), loss="sparse_categorical_crossentropy")
    model.fit(PIXELS[..., None] / 255.0, np.arange(16) % 10, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def yogi_model():
    return trained()


def test_it_takes_raw_uint8_images_and_returns_what_the_model_returns_on_scaled_ones(yogi_model):
    served = standalone.standalone(yogi_model, (28, 28), "tiny_yogi")
    assert served.name == "tiny_yogi" and not served.compiled and not served.get_layer("tiny").compiled
    assert [layer.name for layer in served.layers] == ["pixels", "scale_to_unit", "channels", "tiny"]
    assert served.inputs[0].dtype == "uint8" and tuple(served.inputs[0].shape) == (None, 28, 28)
    assert standalone.is_standalone(served) and not standalone.is_standalone(yogi_model)
    assert standalone.image_shape(served) == (28, 28) and standalone.num_classes(served) == 10
    np.testing.assert_allclose(served.predict(PIXELS, verbose=0),
                               yogi_model.predict(PIXELS[..., None].astype("float32") / 255, verbose=0),
                               rtol=0, atol=1e-6)
    assert standalone.standalone(served, (28, 28)) is served  # already stands alone


def test_it_is_a_copy_so_training_on_does_not_change_it(yogi_model):
    served = standalone.standalone(yogi_model, (28, 28))
    before = served.predict(PIXELS, verbose=0)
    yogi_model.fit(PIXELS[..., None] / 255.0, np.arange(16) % 10, epochs=1, verbose=0)
    np.testing.assert_array_equal(served.predict(PIXELS, verbose=0), before)


def test_data_stored_as_floats_goes_in_unscaled_as_training_read_it(yogi_model):
    served = standalone.standalone(yogi_model, (28, 28), dtype="float32")
    assert [layer.name for layer in served.layers] == ["pixels", "channels", "tiny"]
    assert standalone.is_standalone(served) and served.inputs[0].dtype == "float32"
    scaled = PIXELS.astype("float32") / 255
    np.testing.assert_allclose(served.predict(scaled, verbose=0), yogi_model.predict(scaled[..., None], verbose=0),
                               rtol=0, atol=1e-6)
    assert standalone.metadata("x", "arrays", "ab", (28, 28), dtype="float32")["input"] == (
        "float32 values as training read them, shape (N, 28, 28)")


def test_mixed_precision_layers_compute_in_float32_in_the_standalone_model():
    served = standalone.standalone(trained(dtype="mixed_float16"), (28, 28))
    inner = served.get_layer("tiny")
    assert [layer.dtype_policy.name for layer in inner.layers] == ["float32", "float32", "float32"]


def test_made_while_a_mixed_policy_is_set_every_layer_computes_in_float32_and_pixels_keep_their_precision(
        yogi_model):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as it is while a bfloat16 run logs its model
    try:
        served = standalone.standalone(yogi_model, (28, 28))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    computing = [served.get_layer("scale_to_unit"), served.get_layer("channels"), *served.get_layer("tiny").layers]
    assert [layer.dtype_policy.compute_dtype for layer in computing] == ["float32"] * 5
    scaled = PIXELS.astype("float32") / 255
    np.testing.assert_allclose(served.predict(PIXELS, verbose=0), yogi_model.predict(scaled[..., None], verbose=0),
                               rtol=0, atol=1e-6)


def test_the_metadata_says_what_goes_in_and_what_comes_out():
    assert standalone.metadata("seed000_yogi", "mnist", tuple("0123456789"), (28, 28)) == {
        "experiment": "seed000_yogi", "dataset": "mnist", "class_names": list("0123456789"),
        "input": "uint8 pixels 0-255 (integers), or floats in [0, 1] (pixels / 255), shape (N, 28, 28): raw images, "
                 "scaled inside the model as in training; other values are refused",
        "output": "class probabilities, shape (N, 10), in class_names order"}


CLEAN = """
import sys
import keras
import numpy as np
model = keras.saving.load_model(sys.argv[1])
got = model.predict(np.load(sys.argv[2]), verbose=0)
print(sorted(m for m in sys.modules if m == "runner" or m.startswith("runner.")))
print(float(np.abs(got - np.load(sys.argv[3])).max()))
"""


@pytest.mark.slow
def test_a_yogi_trained_model_saved_standalone_loads_in_a_python_without_xrun(yogi_model, tmp_path):
    # The compiled Yogi model itself cannot: "Could not locate class 'Yogi'" (issue 15).
    served = standalone.standalone(yogi_model, (28, 28))
    served.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", PIXELS)
    np.save(tmp_path / "p.npy", served.predict(PIXELS, verbose=0))
    # That Python computes with the kernels this one does (xrun switches oneDNN's on where TensorFlow would not), so
    # the same model gives the same predictions to the last bit.
    kernels = {settings.ONEDNN_SWITCH: "1" if settings.onednn_enabled() else "0"}
    out = subprocess.run([sys.executable, "-c", CLEAN, "m.keras", "x.npy", "p.npy"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env={**os.environ, **kernels})
    assert out.returncode == 0, out.stderr[-3000:]
    imported, difference = out.stdout.strip().splitlines()[-2:]
    assert imported == "[]" and float(difference) == 0.0
