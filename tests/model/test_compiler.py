"""Compiling specs into Keras models: small graphs build with the right shapes, and a layer that cannot take its
input is reported at its YAML line in the YAML's terms."""

from pathlib import Path

import pytest
from helpers import REPO, RESIDUAL

from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.training.settings import import_tensorflow

BASE = REPO / "experiments" / "base" / "seed004.yaml"
HEAD = f"extends: {BASE}\nname: t\nmodel:\n"  # model's keys start on line 4


@pytest.fixture(scope="module", autouse=True)
def tensorflow():
    return import_tensorflow()


def spec_of(tmp_path: Path, model: str):
    path = tmp_path / "t.yaml"
    path.write_text(HEAD + model)
    return load_spec(path)


def build(tmp_path: Path, model: str):
    from runner.model.compiler import build_model
    return build_model(spec_of(tmp_path, model))


def error_of(tmp_path: Path, model: str) -> str:
    with pytest.raises(XrunError) as info:
        build(tmp_path, model)
    return info.value.format().replace(f"{tmp_path / 't.yaml'}:", "")


def test_a_stack_is_sequential_and_a_graph_functional(tmp_path):
    import keras
    stack = build(tmp_path, "  layers:\n    - {type: Flatten}\n    - {type: Dense, units: 10}\n")
    assert isinstance(stack, keras.Sequential)
    graph = build(tmp_path, "  layers:\n    - {type: Flatten, name: f}\n    - {type: Flatten, name: g, inputs: input}\n"
                  "    - {type: Add, name: s, inputs: [f, g]}\n    - {type: Dense, units: 10}\n")
    assert not isinstance(graph, keras.Sequential)
    assert [layer.name for layer in graph.layers] == ["input", "f", "g", "s", "dense"]


def test_a_residual_block_builds(tmp_path):
    model = build(tmp_path, RESIDUAL)
    add = model.get_layer("res_2_sum")
    assert [t.name for t in _inbound(add)] == ["res_2_b", "res_1_sum"]
    assert tuple(add.output.shape) == (None, 28, 28, 8)
    assert model.count_params() == 80 + 4 * 584 + 28 * 28 * 8 * 10 + 10


def _inbound(layer) -> list:
    """The layers whose outputs `layer` takes."""
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation for t in node.input_tensors]


def test_the_output_layer_computes_in_float32(tmp_path):
    model = build(tmp_path, "  layers:\n    - {type: Flatten}\n    - {type: Dense, units: 10, activation: softmax}\n")
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"


def test_frozen_layers_and_regularizers(tmp_path):
    model = build(tmp_path, "  layers:\n    - {type: Flatten}\n"
                  "    - {type: Dense, units: 10, trainable: false, kernel_regularizer: {l2: 0.001}}\n")
    dense = model.layers[-1]
    assert not dense.trainable and dense.kernel_regularizer.l2 == pytest.approx(0.001)


def test_separable_and_depthwise_convolutions_take_their_own_arguments(tmp_path):
    model = build(tmp_path, """\
  layers:
    - {type: SeparableConv2D, filters: 4, kernel_size: 3, depthwise_initializer: he_normal,
       pointwise_regularizer: {l2: 0.01}}
    - {type: DepthwiseConv2D, kernel_size: 3, depthwise_regularizer: {l1: 0.01}}
    - {type: Flatten}
    - {type: Dense, units: 10}
""")
    assert [tuple(layer.output.shape) for layer in model.layers[:2]] == [(None, 26, 26, 4), (None, 24, 24, 4)]


# --- KerasLayer ----------------------------------------------------------------------------------------

def test_any_keras_layer_by_class_name(tmp_path):
    model = build(tmp_path, "  layers:\n"
                  "    - {type: KerasLayer, class_name: LayerNormalization, config: {epsilon: 0.01}}\n"
                  "    - {type: Flatten}\n    - {type: Dense, units: 10}\n")
    norm = model.layers[0]
    assert type(norm).__name__ == "LayerNormalization" and norm.epsilon == 0.01 and norm.name == "keras_layer"


def test_a_keras_layer_that_merges(tmp_path):
    model = build(tmp_path, "  layers:\n    - {type: Flatten, name: f}\n    - {type: Flatten, name: g, inputs: input}\n"
                  "    - {type: KerasLayer, name: diff, class_name: Subtract, inputs: [f, g]}\n"
                  "    - {type: Dense, units: 10}\n")
    assert type(model.get_layer("diff")).__name__ == "Subtract"


KERAS_LAYER_ERRORS = {
    "unknown class": (
        "  layers:\n    - {type: KerasLayer, class_name: LayerNormalisation}\n    - {type: Dense, units: 10}\n",
        "5:38: model.layers[0].class_name: unknown layer 'LayerNormalisation'; did you mean 'LayerNormalization'?"),
    "misspelt argument": (
        "  layers:\n    - {type: KerasLayer, class_name: LayerNormalization, config: {epsilonn: 0.01}}\n"
        "    - {type: Dense, units: 10}\n",
        "5:67: model.layers[0].config.epsilonn: LayerNormalization has no argument 'epsilonn'; "
        "did you mean 'epsilon'?"),
    "name in config": (
        "  layers:\n    - {type: KerasLayer, class_name: LayerNormalization, config: {name: n}}\n"
        "    - {type: Dense, units: 10}\n",
        "5:67: model.layers[0].config.name: 'name' does not belong in config; "
        "write name: beside class_name, as for any layer"),
    "bad argument value": (
        "  layers:\n    - {type: KerasLayer, class_name: Dropout, config: {rate: 2}}\n"
        "    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "5:14: model.layers[0]: Dropout rejects its arguments: Invalid value received for argument `rate`. "
        "Expected a float value between 0 and 1. Received: rate=2; "
        "check the argument names and values against the Keras documentation"),
}


@pytest.mark.parametrize("model, expected", KERAS_LAYER_ERRORS.values(), ids=KERAS_LAYER_ERRORS.keys())
def test_keras_layer_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


@pytest.mark.parametrize("class_name, reason", [
    ("Lambda", "it runs Python code, and an experiment file holds data only"),
    ("TFSMLayer", "it loads and runs a saved model's code, and an experiment file holds data only"),
])
def test_layers_that_run_code_are_refused_before_anything_is_built(tmp_path, class_name, reason):
    with pytest.raises(XrunError) as info:
        spec_of(tmp_path, f"  layers:\n    - {{type: KerasLayer, class_name: {class_name}, config: {{}}}}\n"
                "    - {type: Dense, units: 10}\n")
    assert info.value.format() == (f"{tmp_path / 't.yaml'}:5:38: model.layers[0].class_name: the layer "
                                   f"'{class_name}' is not allowed; {reason}")


# --- shape errors --------------------------------------------------------------------------------------

SHAPE_ERRORS = {
    "Concatenate of different sizes": (
        "  layers:\n    - {type: Conv2D, name: a, inputs: input, filters: 4, kernel_size: 3}\n"
        "    - {type: Conv2D, name: b, inputs: input, filters: 4, kernel_size: 3, padding: same}\n"
        "    - {type: Concatenate, name: m, inputs: [a, b]}\n    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "7:14: model.layers[2]: Concatenate needs inputs that agree on every axis but the last (channels), "
        "got a (None, 26, 26, 4), b (None, 28, 28, 4); "
        "make the branches' height and width match (the same padding and strides in each)"),
    "Add of different channels": (
        "  layers:\n    - {type: Conv2D, name: a, inputs: input, filters: 4, kernel_size: 1}\n"
        "    - {type: Conv2D, name: b, inputs: input, filters: 8, kernel_size: 1}\n"
        "    - {type: Add, name: m, inputs: [a, b]}\n    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "7:14: model.layers[2]: Add needs inputs of one shape, got a (None, 28, 28, 4), b (None, 28, 28, 8); "
        "make the branches' filters or units and strides match, or give one a 1x1 Conv2D to match the other"),
    "a 5x5 valid conv on a 4x4 map (stack)": (
        "  layers:\n    - {type: MaxPooling2D, pool_size: 7}\n    - {type: Conv2D, filters: 4, kernel_size: 5}\n"
        "    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "6:14: model.layers[1]: Conv2D's 5x5 kernel does not fit its 4x4 input (None, 4, 4, 1); "
        "use padding: same, a smaller kernel_size, or down-sample less before this layer"),
    "a 5x5 valid conv on a 4x4 map (graph)": (
        "  layers:\n    - {type: MaxPooling2D, name: p, pool_size: 7}\n"
        "    - {type: Conv2D, name: c, filters: 4, kernel_size: 5, inputs: p}\n"
        "    - {type: Flatten, inputs: c}\n    - {type: Dense, units: 10}\n",
        "6:14: model.layers[1]: Conv2D's 5x5 kernel does not fit its 4x4 input (None, 4, 4, 1); "
        "use padding: same, a smaller kernel_size, or down-sample less before this layer"),
    "a dilated kernel": (
        "  layers:\n    - {type: MaxPooling2D, pool_size: 4}\n"
        "    - {type: Conv2D, filters: 4, kernel_size: 3, dilation_rate: 4}\n"
        "    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "6:14: model.layers[1]: Conv2D's 3x3 kernel (dilated to 9x9) does not fit its 7x7 input (None, 7, 7, 1); "
        "use padding: same, a smaller kernel_size, or down-sample less before this layer"),
    "a pool larger than the map": (
        "  layers:\n    - {type: MaxPooling2D, pool_size: 14}\n    - {type: MaxPooling2D, pool_size: [3, 2]}\n"
        "    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "6:14: model.layers[1]: MaxPooling2D's 3x2 pool does not fit its 2x2 input (None, 2, 2, 1); "
        "use padding: same, a smaller pool_size, or down-sample less before this layer"),
    "a conv after Flatten": (
        "  layers:\n    - {type: Flatten}\n    - {type: Conv2D, filters: 4, kernel_size: 3}\n"
        "    - {type: Dense, units: 10}\n",
        "6:14: model.layers[1]: Conv2D needs a 4D input (batch, height, width, channels), got 2D (None, 784); "
        "put it before Flatten and Dense layers, or Reshape its input to 4D"),
    "a Reshape to another size": (
        "  layers:\n    - {type: Reshape, target_shape: [10, 10]}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        "5:14: model.layers[0]: Reshape cannot turn its input (None, 28, 28, 1) (784 values) into target_shape "
        "[10, 10] (100 values); give target_shape the same number of values; -1 for one axis works it out"),
    "a Reshape that cannot divide": (
        "  layers:\n    - {type: Reshape, target_shape: [-1, 5]}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        "5:14: model.layers[0]: Reshape cannot turn its input (None, 28, 28, 1) (784 values) into target_shape "
        "[-1, 5] (a multiple of 5 values); give target_shape the same number of values; -1 for one axis works it out"),
    "a shape error inside a block": (
        "  blocks:\n    c:\n      layers:\n        - {type: Conv2D, filters: 4, kernel_size: 5}\n"
        "  layers:\n    - {type: MaxPooling2D, pool_size: 7}\n    - {block: c}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        "7:18: model.blocks.c.layers[0] (in block 'c' at model.layers[1]): Conv2D's 5x5 kernel does not fit its "
        "4x4 input (None, 4, 4, 1); use padding: same, a smaller kernel_size, or down-sample less before this layer"),
    "a bad argument combination": (
        "  layers:\n    - {type: Conv2D, filters: 4, kernel_size: 3, groups: 3}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        "5:14: model.layers[0]: Conv2D rejects its arguments: The number of filters must be evenly divisible by the "
        "number of groups. Received: groups=3, filters=4; check the argument names and values against the Keras "
        "documentation"),
    "a one-input KerasLayer given two": (
        "  layers:\n    - {type: Flatten, name: f}\n    - {type: Flatten, name: g, inputs: input}\n"
        "    - {type: KerasLayer, class_name: LayerNormalization, inputs: [f, g]}\n    - {type: Dense, units: 10}\n",
        "7:14: model.layers[2]: LayerNormalization cannot take inputs f (None, 784), g (None, 784): Cannot convert "
        "'((None, 784),)' to a shape. Found invalid dimension '(None, 784)' of type '<class 'tuple'>'; "
        "if it takes one input, merge its inputs first with Concatenate or Add"),
}


@pytest.mark.parametrize("model, expected", SHAPE_ERRORS.values(), ids=SHAPE_ERRORS.keys())
def test_shape_errors_point_at_the_layer(tmp_path, model, expected):
    message = error_of(tmp_path, model)
    assert message == expected
    assert "\x1b" not in message and "Arguments received" not in message


def test_a_dense_layer_on_an_image_works(tmp_path):
    # Not an error: Keras applies Dense to the last axis.
    model = build(tmp_path, "  layers:\n    - {type: Dense, units: 3}\n    - {type: Flatten}\n"
                  "    - {type: Dense, units: 10}\n")
    assert tuple(model.layers[0].output.shape) == (None, 28, 28, 3)


def test_input_shape_is_the_models_input(tmp_path):
    # One the data does not fit is refused by validate at its line (tests/language/test_sections.py).
    model = build(tmp_path, "  input_shape: [28, 28]\n  layers:\n    - {type: Flatten}\n"
                  "    - {type: Dense, units: 10}\n")
    assert tuple(model.input_shape) == (None, 28, 28)
