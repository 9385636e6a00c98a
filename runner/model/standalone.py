"""A trained model made to stand alone: raw uint8 images in, class probabilities out, loadable without xrun."""

from __future__ import annotations

import keras

# The input layer's name, which MLflow's signature, the served JSON and the exported formats show.
INPUT_NAME = "pixels"
# The output's name where a format names it (ONNX; Keras's converter would call it `Identity:0`).
OUTPUT_NAME = "probabilities"
PIXEL_DTYPE = "uint8"


def standalone(trained: keras.Model, image_shape: tuple[int, ...], name: str | None = None,
               dtype: str = PIXEL_DTYPE) -> keras.Model:
    """`trained` with training's preprocessing in front of it: uint8 images of `image_shape` (as the dataset stores
    them), scaled to [0, 1] and given the model's channel axis, then the model's class probabilities. Data stored
    as floats (an `arrays` source) is not scaled in training, nor here: give its `dtype`.

    The result is a copy, never compiled: it carries no optimizer (a Yogi-trained model needs no xrun class to load)
    and only Keras's own layers, so a Python without xrun loads it.
    """
    if is_standalone(trained):
        return trained
    pixels = keras.Input(shape=tuple(image_shape), dtype=str(dtype), name=INPUT_NAME)
    x = pixels
    if str(dtype) == PIXEL_DTYPE:
        # Rescaling casts to float32 first, as the training pipeline's `cast(images, float32) / 255` does.
        x = keras.layers.Rescaling(1.0 / 255, dtype="float32", name="scale_to_unit")(pixels)
    # float32 as well: under a global mixed policy it would round the scaled pixels to 16 bits.
    x = keras.layers.Reshape(tuple(trained.input_shape[1:]), dtype="float32", name="channels")(x)
    return keras.Model(pixels, float32_copy(trained)(x), name=name or trained.name)


def float32_copy(trained: keras.Model) -> keras.Model:
    """The architecture again, from its config, with the trained weights, computing in float32 whatever precision
    it trained in; uncompiled. (keras.models.clone_model would copy the compiled state too, and with it the
    optimizer, xrun's Yogi, that a Python without xrun cannot load.)"""
    copy = type(trained).from_config(_in_float32(trained.get_config()))
    copy.set_weights(trained.get_weights())
    return copy


def computes_in_float32(model: keras.Model) -> bool:
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers)


def _in_float32(config):
    """A model config with every mixed-precision dtype policy made float32: the weights are float32 either way,
    and float32 is what a CPU, TFLite and ONNX run (mixed float16 is slow or unsupported there)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name")).startswith("mixed"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _in_float32(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_in_float32(v) for v in config]
    return config


def metadata(experiment: str, dataset: str, class_names, image_shape, dtype: str = PIXEL_DTYPE,  # noqa: PLR0913
             multi_label: bool = False) -> dict:
    """What a user of the model needs to know, kept in its MLmodel file: what goes in, what comes out (for
    multi-label data, one independent probability per label, and `multi_label: true`)."""
    shape = ", ".join(str(d) for d in image_shape)
    given = (f"{dtype} pixels 0-255 (integers), or floats in [0, 1] (pixels / 255), shape (N, {shape}): raw images, "
             "scaled inside the model as in training; other values are refused" if dtype == PIXEL_DTYPE
             else f"{dtype} values as training read them, shape (N, {shape})")
    if multi_label:
        return {"experiment": experiment, "dataset": dataset, "class_names": [str(c) for c in class_names],
                "input": given, "multi_label": True,
                "output": f"one probability per label (sigmoid), shape (N, {len(class_names)}), in class_names "
                          "order; a label is present where its probability reaches a threshold (0.5 by default)"}
    return {"experiment": experiment, "dataset": dataset, "class_names": [str(c) for c in class_names],
            "input": given,
            "output": f"class probabilities, shape (N, {len(class_names)}), in class_names order"}


def is_standalone(model: keras.Model) -> bool:
    """True for a model made by `standalone` (its input layer is `pixels`; a compiled model's is `input`)."""
    return len(model.inputs) == 1 and bool(model.layers) and model.layers[0].name == INPUT_NAME


def image_shape(model: keras.Model) -> tuple[int, ...]:
    """The shape of one image the model takes (without the batch axis)."""
    return tuple(model.inputs[0].shape[1:])


def num_classes(model: keras.Model) -> int:
    return int(model.outputs[0].shape[-1])
