"""What the block language's new forms build: initialisers with arguments, dropout masks, asymmetric padding, and
the size guard counting every layer with weights before anything is allocated."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.training.settings import import_tensorflow

# 8x8 RGB images from a folder that need not exist: image_size and color_mode give the shape.
HEAD = """\
name: t
data: {source: image_folder, path: no_such_folder, image_size: [8, 8], color_mode: rgb}
optimizer: Adam
loss: CategoricalCrossentropy
training: {epochs: 1, batch_size: 8}
model:
  layers:
"""  # the first layer is on line 8


@pytest.fixture(scope="module", autouse=True)
def tensorflow():
    return import_tensorflow()


def spec_of(tmp_path: Path, layers: str):
    path = tmp_path / "t.yaml"
    path.write_text(HEAD + layers)
    return load_spec(path, data_must_exist=False)  # the model is the point: its data is not made


def build(tmp_path: Path, layers: str):
    from runner.model.compiler import build_model
    return build_model(spec_of(tmp_path, layers))


def error_of(tmp_path: Path, layers: str) -> str:
    with pytest.raises(XrunError) as info:
        build(tmp_path, layers)
    return info.value.format().replace(f"{tmp_path / 't.yaml'}:", "")


def test_initializers_with_arguments(tmp_path):
    import keras
    model = build(tmp_path, """\
    - {type: Conv2D, name: c, filters: 4, kernel_size: 3, kernel_initializer: {type: HeNormal, seed: 1},
       bias_initializer: {type: Constant, value: 0.5}}
    - {type: Flatten}
    - {type: Dense, name: d, units: 10, kernel_initializer: he_uniform,
       bias_initializer: {type: RandomUniform, minval: 2, maxval: 3}}
""")
    conv = model.get_layer("c")
    assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal) and conv.kernel_initializer.seed == 1
    assert conv.bias.numpy().tolist() == [0.5] * 4
    again = keras.initializers.HeNormal(seed=1)(conv.kernel.shape)  # a seed gives the same start on every run
    assert conv.kernel.numpy().tolist() == again.numpy().tolist()
    dense = model.get_layer("d")
    assert isinstance(dense.kernel_initializer, keras.initializers.HeUniform)
    assert ((dense.bias.numpy() >= 2) & (dense.bias.numpy() <= 3)).all()


def test_a_dropout_mask_shared_over_height_and_width(tmp_path):
    import numpy as np
    model = build(tmp_path, """\
    - {type: Dropout, name: drop, rate: 0.5, noise_shape: [null, 1, 1, null], seed: 3}
    - {type: Flatten}
    - {type: Dense, units: 10}
""")
    drop = model.get_layer("drop")
    out = drop(np.ones((2, 8, 8, 3), "float32"), training=True).numpy()
    # each image's channel is dropped (0) or kept (2 = 1 / (1 - rate)) as a whole
    assert all(len(set(out[b, :, :, c].ravel().tolist())) == 1 for b in range(2) for c in range(3))
    assert set(out.ravel().tolist()) <= {0.0, 2.0}


def test_asymmetric_padding(tmp_path):
    model = build(tmp_path, """\
    - {type: ZeroPadding2D, name: p1, padding: [[0, 1], [0, 1]]}
    - {type: ZeroPadding2D, name: p2, padding: [2, [0, 3]]}
    - {type: DepthwiseConv2D, name: dw, kernel_size: 3, strides: 2}
    - {type: Flatten}
    - {type: Dense, units: 10}
""")
    assert tuple(model.get_layer("p1").output.shape) == (None, 9, 9, 3)
    assert tuple(model.get_layer("p2").output.shape) == (None, 13, 12, 3)  # rows 2 + 2, columns 0 + 3
    assert tuple(model.get_layer("dw").output.shape) == (None, 6, 5, 3)


# --- the size guard ----------------------------------------------------------------------------------------

def test_the_size_guard_counts_every_layer_with_weights(tmp_path):
    from runner.model import compiler
    spec = spec_of(tmp_path, """\
    - {type: Conv2D, filters: 6, kernel_size: 3}
    - {type: SeparableConv2D, filters: 8, kernel_size: 3, depth_multiplier: 2}
    - {type: DepthwiseConv2D, kernel_size: 3, padding: same}
    - {type: BatchNormalization}
    - {type: KerasLayer, class_name: LayerNormalization}
    - {type: PReLU}
    - {type: Conv2DTranspose, filters: 4, kernel_size: 2}
    - {type: Flatten}
    - {type: Dense, units: 10}
""")
    shape = tuple(compiler.input_shape(spec))
    layers = {n.name: compiler.make_layer(n, spec) for n in spec.graph.nodes}
    estimated = {node.name: count for node, count in compiler._weight_counts(spec.graph, shape, layers)}
    model = compiler.build_model(spec)
    assert estimated == {layer.name: layer.count_params() for layer in model.layers}
    assert estimated["separable_conv2d"] == 9 * 6 * 2 + 12 * 8 + 8  # depthwise, pointwise, bias: none counted before
    assert estimated["depthwise_conv2d"] == 9 * 8 + 8
    assert estimated["keras_layer"] == 2 * 8
    assert sum(estimated.values()) == model.count_params() == 1_778


# A 1x1 convolution to 65,536 channels, then a layer too large for a (pretended) 16 GiB machine.
HUGE = {
    "separable": (
        "    - {type: SeparableConv2D, filters: 65536, kernel_size: 1}\n",
        "9:14: model.layers[1]: the model would have 4,295,360,512 parameters (16.0 GiB of float32 weights; "
        "this layer alone 4,295,098,368), more than this machine's memory allows (8.0 GiB); "
        "make this layer smaller, or pool/stride before it"),
    "depthwise": (
        "    - {type: DepthwiseConv2D, kernel_size: 3, depth_multiplier: 4096}\n",
        "9:14: model.layers[1]: the model would have 2,684,616,704 parameters (10.0 GiB of float32 weights; "
        "this layer alone 2,684,354,560), more than this machine's memory allows (8.0 GiB); "
        "make this layer smaller, or pool/stride before it"),
    "any Keras layer": (
        "    - {type: KerasLayer, class_name: EinsumDense, config: {equation: 'abcd,de->abce', "
        "output_shape: [8, 8, 65536], bias_axes: e}}\n",
        "9:14: model.layers[1]: the model would have 4,295,294,976 parameters (16.0 GiB of float32 weights; "
        "this layer alone 4,295,032,832), more than this machine's memory allows (8.0 GiB); "
        "make this layer smaller, or pool/stride before it"),
}


@pytest.mark.parametrize("layers, expected", HUGE.values(), ids=HUGE.keys())
def test_a_layer_too_large_for_memory_is_refused_before_allocating(tmp_path, monkeypatch, layers, expected):
    from keras.src.backend.common import global_state

    from runner.model import compiler
    monkeypatch.setattr(compiler, "_memory_bytes", lambda: 16 << 30)
    pending = len(global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True))
    assert error_of(tmp_path, "    - {type: Conv2D, filters: 65536, kernel_size: 1}\n" + layers) == expected
    # the variables counted were never made, and Keras will not make them later
    assert len(global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)) == pending


def test_a_block_with_two_inputs_builds(tmp_path):
    model = build(tmp_path, """\
    - {type: Flatten, name: f}
    - {type: Dense, name: d, units: 4}
    - {block: gate, name: g, inputs: [d, f], repeat: 2}
    - {type: Dense, units: 10}
  blocks:
    gate:
      inputs: [x, context]
      layers:
        - {type: Dense, name: proj, units: 4, inputs: context}
        - {type: Multiply, inputs: [x, proj]}
""")
    assert [t.name for t in _inbound(model.get_layer("g_2_multiply"))] == ["g_1_multiply", "g_2_proj"]
    assert [t.name for t in _inbound(model.get_layer("g_2_proj"))] == ["f"]
    assert model.count_params() == 3 * (192 * 4 + 4) + 4 * 10 + 10


def _inbound(layer) -> list:
    """The layers whose outputs `layer` takes."""
    node = layer._inbound_nodes[0]
    inputs = node.input_tensors if isinstance(node.input_tensors, (list, tuple)) else [node.input_tensors]
    return [t._keras_history.operation for t in inputs]
