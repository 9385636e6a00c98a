"""`{type: Application, ...}`: a keras.applications network as a backbone, its weights from a local file, frozen;
ImageNet weights a clear error where they cannot be downloaded."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.training.settings import import_tensorflow

HEAD = """\
name: t
data: {source: image_folder, path: no_such_folder, image_size: [32, 32], color_mode: rgb}
optimizer: Adam
loss: CategoricalCrossentropy
training: {epochs: 1, batch_size: 8}
model:
  layers:
"""  # the first layer is on line 8
BACKBONE = ("    - {type: Application, name: backbone, class_name: MobileNetV2, weights: %s, include_top: false,\n"
            "       pooling: avg, trainable: false, config: {alpha: 0.35}}\n"
            "    - {type: Dense, units: 10, activation: softmax}\n")
# MobileNetV2 at width 0.35 without its classifier; 14,080 of them batch-norm statistics.
BACKBONE_PARAMS = 410_208


@pytest.fixture(scope="module", autouse=True)
def tensorflow():
    return import_tensorflow()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A MobileNetV2 backbone's weights in a file, as a user would have them, and the network they came from."""
    import keras
    twin = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    twin.save_weights(path)
    return path, twin


def build(tmp_path: Path, layers: str):
    from runner.model.compiler import build_model
    path = tmp_path / "t.yaml"
    path.write_text(HEAD + layers)
    return build_model(load_spec(path, data_must_exist=False))  # the model is the point: its data is not made


def error_of(tmp_path: Path, layers: str) -> str:
    with pytest.raises(XrunError) as info:
        build(tmp_path, layers)
    return info.value.format().replace(f"{tmp_path / 't.yaml'}:", "").replace(f"{tmp_path}/", "")


@pytest.mark.slow
def test_a_frozen_backbone_with_weights_from_a_file(tmp_path, saved):
    path, twin = saved
    (tmp_path / "backbone.weights.h5").write_bytes(path.read_bytes())  # relative to the YAML file
    model = build(tmp_path, BACKBONE % "backbone.weights.h5")
    backbone = model.get_layer("backbone")
    assert twin.count_params() == backbone.count_params() == BACKBONE_PARAMS
    assert all((a.numpy() == b.numpy()).all() for a, b in zip(backbone.weights, twin.weights))
    assert model.count_params() == BACKBONE_PARAMS + 1280 * 10 + 10
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]  # only the classifier learns
    assert tuple(backbone.output.shape) == (None, 1280)


def test_a_backbone_from_scratch(tmp_path, saved):
    model = build(tmp_path, BACKBONE.replace("trainable: false, ", "") % "null")
    frozen = sum(int(w.numpy().size) for w in saved[1].non_trainable_weights)  # batch-norm statistics
    assert model.count_params() == BACKBONE_PARAMS + 12_810
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == BACKBONE_PARAMS + 12_810 - frozen
    assert frozen == 14_080


def test_imagenet_weights_offline(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin, **kwargs):  # what Keras raises when the download fails
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")
    monkeypatch.setattr(file_utils, "get_file", offline)
    assert error_of(tmp_path, BACKBONE.replace(", config: {alpha: 0.35}", "") % "imagenet") == (
        "8:77: model.layers[0].weights: cannot download the ImageNet weights of MobileNetV2: [Errno -2] Name or "
        "service not known; run once where the internet is reachable (Keras keeps them in ~/.keras/models), "
        "or give weights: the path of a weights file")


ERRORS = {
    "a missing weights file": (
        BACKBONE % "missing.weights.h5",
        "8:77: model.layers[0].weights: no weights file missing.weights.h5; give the path of a .weights.h5 file "
        "(relative to this file), 'imagenet', or null"),
    "an unknown network": (
        BACKBONE.replace("MobileNetV2", "MobileNetv2") % "null",
        "8:55: model.layers[0].class_name: unknown application 'MobileNetv2'; did you mean 'MobileNetV2'?"),
    "a misspelt argument": (
        BACKBONE.replace("alpha", "alhpa") % "null",
        "9:49: model.layers[0].config.alhpa: MobileNetV2 has no argument 'alhpa'; did you mean 'alpha'?"),
    "the input shape in config": (
        BACKBONE.replace("alpha: 0.35", "input_shape: [32, 32, 3]") % "null",
        "9:49: model.layers[0].config.input_shape: 'input_shape' does not belong in config; the input comes from "
        "the data (model.input_shape gives it another shape)"),
    "weights left out": (
        BACKBONE.replace("weights: %s, ", ""),
        "8:7: model.layers[0]: missing required key 'weights'; add 'weights:' here"),
}


@pytest.mark.parametrize("layers, expected", ERRORS.values(), ids=ERRORS.keys())
def test_application_errors(tmp_path, layers, expected):
    assert error_of(tmp_path, layers) == expected


def test_weights_of_another_network(tmp_path, saved):
    message = error_of(tmp_path, BACKBONE.replace("alpha: 0.35", "alpha: 0.5") % saved[0])
    assert message.startswith(f"8:77: model.layers[0].weights: MobileNetV2 cannot load {saved[0]}: ")
    assert message.endswith("; give a file saved from this MobileNetV2, built with the same include_top and config "
                            "(model.save_weights)")


@pytest.mark.slow
def test_training_leaves_a_frozen_backbone_as_it_was(tmp_path, saved):
    """One epoch on 256 digits, made 32x32x3 for the network: only the classifier's weights move."""
    from helpers import TINY, experiment, train, write_experiment
    (tmp_path / "backbone.weights.h5").write_bytes(saved[0].read_bytes())
    document = experiment(model={"layers": [
        {"type": "Conv2D", "filters": 3, "kernel_size": 1},             # 1 channel to 3
        {"type": "ZeroPadding2D", "padding": 2},                        # 28x28 to 32x32
        {"type": "Application", "name": "backbone", "class_name": "MobileNetV2", "weights": "backbone.weights.h5",
         "include_top": False, "pooling": "avg", "trainable": False, "config": {"alpha": 0.35}},
        {"type": "Dense", "units": 10, "activation": "softmax"}]},
        data={**TINY["data"], "limit": 256}, training={**TINY["training"], "epochs": 1})
    result = train(write_experiment(tmp_path, document))
    assert result.status == "FINISHED" and result.epochs_run == 1
    backbone = result.model.get_layer("backbone")
    # batch-norm statistics included: a frozen network runs in inference mode
    assert all((a.numpy() == b.numpy()).all() for a, b in zip(backbone.weights, saved[1].weights))
