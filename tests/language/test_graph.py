"""The model graph: blocks expanded with their params, names and references checked, each error at its YAML line."""


import pytest
from helpers import RESIDUAL, error_of, spec_of

from runner.language.graph import build_graph, snake

CONV_BN = """\
  blocks:
    conv_bn:
      params: {filters: null, kernel_size: 3}
      layers:
        - {type: Conv2D, name: "conv_${filters}", filters: "${filters}", kernel_size: "${kernel_size}"}
        - {type: BatchNormalization}
"""


# --- blocks --------------------------------------------------------------------------------------------

def test_params_are_substituted_typed_and_embedded(tmp_path):
    spec = spec_of(tmp_path, CONV_BN + "  layers:\n    - {block: conv_bn, name: s1, filters: 8, kernel_size: 5}\n"
                   "    - {type: Flatten}\n    - {type: Dense, units: 10}\n")
    conv = spec.graph.node("s1_conv_8")                        # `conv_${filters}` embedded in a name
    assert conv.args == {"filters": 8, "kernel_size": 5}       # whole-string `${x}` keeps the int
    assert conv.inputs == ["input"] and conv.via == "block 'conv_bn' at model.layers[0]"
    assert [n.name for n in spec.graph.nodes] == ["s1_conv_8", "s1_batch_normalization", "flatten", "dense"]


def test_repeat_numbers_each_copy_and_chains_them(tmp_path):
    spec = spec_of(tmp_path, CONV_BN + "  layers:\n    - {block: conv_bn, name: stage, filters: 4, repeat: 2}\n"
                   "    - {type: Flatten, inputs: stage}\n    - {type: Dense, units: 10}\n")
    names = [n.name for n in spec.graph.nodes]
    assert names[:4] == ["stage_1_conv_4", "stage_1_batch_normalization", "stage_2_conv_4",
                         "stage_2_batch_normalization"]
    assert spec.graph.node("stage_2_conv_4").inputs == ["stage_1_batch_normalization"]
    assert spec.graph.node("flatten").inputs == ["stage_2_batch_normalization"]  # the block's name = its last layer


def test_unnamed_block_uses_get_their_own_names(tmp_path):
    spec = spec_of(tmp_path, CONV_BN + "  layers:\n    - {block: conv_bn, filters: 4}\n"
                   "    - {block: conv_bn, filters: 8}\n    - {type: Flatten}\n    - {type: Dense, units: 10}\n")
    assert [n.name for n in spec.graph.nodes][:4] == ["conv_bn_conv_4", "conv_bn_batch_normalization",
                                                      "conv_bn_1_conv_8", "conv_bn_1_batch_normalization"]




def test_input_inside_a_block_means_the_block_input(tmp_path):
    graph = spec_of(tmp_path, RESIDUAL).graph
    assert graph.node("res_1_sum").inputs == ["res_1_b", "stem"]
    assert graph.node("res_2_sum").inputs == ["res_2_b", "res_1_sum"]
    assert graph.node("res_2_a").inputs == ["res_1_sum"]


def test_a_block_layer_may_name_one_listed_after_it(tmp_path):
    graph = spec_of(tmp_path, """\
  blocks:
    twin:
      layers:
        - {type: Dense, name: left, units: 4, inputs: input}
        - {type: Add, name: sum, inputs: [left, right]}
        - {type: Dense, name: right, units: 4, inputs: input}
  layers:
    - {block: twin, name: t1}
    - {type: Dense, units: 10, inputs: t1_sum}
""").graph
    assert graph.node("t1_sum").inputs == ["t1_left", "t1_right"]


def test_nested_blocks(tmp_path):
    graph = spec_of(tmp_path, """\
  blocks:
    inner:
      params: {u: null}
      layers:
        - {type: Dense, units: "${u}"}
    outer:
      params: {u: 4}
      layers:
        - {block: inner, u: "${u}"}
        - {block: inner, u: 8}
  layers:
    - {block: outer}
    - {type: Dense, units: 10}
""").graph
    assert [(n.name, n.args["units"]) for n in graph.nodes] == [
        ("outer_inner_dense", 4), ("outer_inner_1_dense", 8), ("dense", 10)]


BLOCK_ERRORS = {
    "missing param": (
        CONV_BN + "  layers:\n    - {block: conv_bn, name: s1}\n    - {type: Dense, units: 10}\n",
        "11:7: model.layers[0]: block 'conv_bn' needs param 'filters'; add 'filters: VALUE' to this block use"),
    "unknown param": (
        CONV_BN + "  layers:\n    - {block: conv_bn, filters: 8, kernel_sise: 3}\n    - {type: Dense, units: 10}\n",
        "11:36: model.layers[0].kernel_sise: block 'conv_bn' has no param 'kernel_sise'; did you mean 'kernel_size'?"),
    "param of a block without params": (
        "  blocks:\n    b:\n      layers:\n        - {type: Dense, units: 3}\n"
        "  layers:\n    - {block: b, units: 1}\n    - {type: Dense, units: 10}\n",
        "9:18: model.layers[0].units: block 'b' has no param 'units'; it takes no params"),
    "unknown ${ref}": (
        "  blocks:\n    b:\n      params: {filters: null}\n      layers:\n"
        '        - {type: Conv2D, filters: "${filtres}", kernel_size: 3}\n'
        "  layers:\n    - {block: b, filters: 8}\n    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "8:35: model.blocks.b.layers[0].filters: unknown block param '${filtres}'; did you mean 'filters'?"),
    "unknown ${ref} embedded": (
        "  blocks:\n    b:\n      params: {u: null}\n      layers:\n"
        '        - {type: Dense, units: 3, name: "d_${x}"}\n'
        "  layers:\n    - {block: b, u: 1}\n    - {type: Dense, units: 10}\n",
        "8:41: model.blocks.b.layers[0].name: unknown block param '${x}'; declared params: u"),
    "unknown block": (
        CONV_BN + "  layers:\n    - {block: conv_nb, filters: 8}\n    - {type: Dense, units: 10}\n",
        "11:15: model.layers[0].block: unknown block 'conv_nb'; did you mean 'conv_bn'?"),
    "unknown block, none defined": (
        "  layers:\n    - {block: cb}\n    - {type: Dense, units: 10}\n",
        "5:15: model.layers[0].block: unknown block 'cb'; define it under model.blocks"),
    "a block in itself": (
        "  blocks:\n    b:\n      layers:\n        - {block: b}\n  layers:\n    - {block: b}\n"
        "    - {type: Dense, units: 10}\n",
        "7:19: model.blocks.b.layers[0].block: block 'b' uses itself; a block may not contain itself"),
    "a param of the wrong type": (
        CONV_BN + "  layers:\n    - {block: conv_bn, filters: eight}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        # at the value given, not at the block's layer that uses it
        "11:33: model.layers[0].filters (used in model.blocks.conv_bn.layers[0].filters): "
        "expected an integer, got string 'eight'"),
    "a bad layer type in a block": (
        "  blocks:\n    b:\n      layers:\n        - {type: Dens, units: 3}\n"
        "  layers:\n    - {block: b}\n    - {type: Dense, units: 10}\n",
        "7:18: model.blocks.b.layers[0].type (in block 'b' at model.layers[0]): unknown layer type 'Dens'; "
        "did you mean 'Dense'?"),
    "a block layer without a type": (
        "  blocks:\n    b:\n      layers:\n        - {units: 3}\n"
        "  layers:\n    - {block: b}\n    - {type: Dense, units: 10}\n",
        "7:11: model.blocks.b.layers[0] (in block 'b' at model.layers[0]): missing required key 'type'; "
        "add 'type:' here"),
    "a block layer with a numeric name": (
        "  blocks:\n    b:\n      layers:\n        - {type: Dense, name: 3, units: 3}\n"
        "  layers:\n    - {block: b}\n    - {type: Dense, units: 10}\n",
        "7:31: model.blocks.b.layers[0].name (in block 'b' at model.layers[0]): expected a string, got integer 3"),
    "repeat from a param of the wrong type": (
        "  blocks:\n    b:\n      layers:\n        - {type: Dense, units: 3}\n"
        "    c:\n      params: {n: 2}\n      layers:\n        - {block: b, repeat: \"${n}\"}\n"
        "  layers:\n    - {block: c, n: two}\n    - {type: Dense, units: 10}\n",
        "13:21: model.layers[0].n (used in model.blocks.c.layers[0].repeat): expected an integer, got string 'two'"),
    "a block given two inputs": (
        "  blocks:\n    b:\n      layers:\n        - {type: Dense, units: 3}\n  layers:\n"
        "    - {type: Flatten, name: f}\n    - {type: Flatten, name: g, inputs: input}\n"
        "    - {block: b, inputs: [f, g]}\n    - {type: Dense, units: 10}\n",
        "11:26: model.layers[2].inputs: block 'b' takes one input, got 2; "
        "merge them first with Concatenate or Add, or declare the block's inputs: model.blocks.b.inputs: [NAME, NAME]"),
    "a block given an unknown input": (
        "  blocks:\n    b:\n      layers:\n        - {type: Dense, units: 3}\n  layers:\n"
        "    - {type: Flatten, name: f}\n    - {block: b, inputs: ff}\n    - {type: Dense, units: 10}\n",
        "10:26: model.layers[1].inputs: unknown layer 'ff' in inputs; did you mean 'f'?"),
    "a bad reference inside a block": (
        RESIDUAL.replace("inputs: [b, input]", "inputs: [bb, input]"),
        "10:42: model.blocks.residual.layers[2].inputs (in block 'residual' at model.layers[1]): "
        "unknown layer 'bb' in inputs; did you mean 'b'?"),
}


@pytest.mark.parametrize("model, expected", BLOCK_ERRORS.values(), ids=BLOCK_ERRORS.keys())
def test_block_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


# --- references ----------------------------------------------------------------------------------------

def test_a_graph_with_branches(tmp_path):
    graph = spec_of(tmp_path, """\
  layers:
    - {type: Conv2D, name: a, inputs: input, filters: 4, kernel_size: 1}
    - {type: Conv2D, name: b, inputs: input, filters: 4, kernel_size: 1}
    - {type: Concatenate, name: m, inputs: [a, b]}
    - {type: Flatten}
    - {type: Dense, units: 10}
""").graph
    assert [n.name for n in graph.nodes] == ["a", "b", "m", "flatten", "dense"]
    assert graph.node("m").inputs == ["a", "b"] and graph.outputs == ["dense"]


def test_layers_come_after_their_inputs(tmp_path):
    graph = spec_of(tmp_path, """\
  outputs: out
  layers:
    - {type: Dense, name: out, units: 10, inputs: mid}
    - {type: Flatten, name: mid, inputs: input}
""").graph
    assert [n.name for n in graph.nodes] == ["mid", "out"]


GRAPH_ERRORS = {
    "unknown name": (
        "  layers:\n    - {type: Conv2D, name: conv, filters: 8, kernel_size: 3}\n"
        "    - {type: Flatten, inputs: cnov}\n    - {type: Dense, units: 10}\n",
        "6:31: model.layers[1].inputs: unknown layer 'cnov' in inputs; did you mean 'conv'?"),
    "unknown name, no near miss": (
        "  layers:\n    - {type: Flatten, inputs: zzz}\n    - {type: Dense, units: 10}\n",
        "5:31: model.layers[0].inputs: unknown layer 'zzz' in inputs; inputs name the layers of this model, "
        "or 'input'"),
    "misspelt input": (
        "  layers:\n    - {type: Flatten, inputs: inptu}\n    - {type: Dense, units: 10}\n",
        "5:31: model.layers[0].inputs: unknown layer 'inptu' in inputs; did you mean 'input'?"),
    "a cycle": (
        "  layers:\n    - {type: Dense, name: d1, units: 8, inputs: d2}\n"
        "    - {type: Dense, name: d2, units: 8, inputs: d1}\n    - {type: Dense, units: 10, inputs: d2}\n",
        "5:49: model.layers[0].inputs: layers form a cycle: d1 -> d2 -> d1; "
        "a layer may only take inputs from layers that do not depend on it"),
    "its own input": (
        "  layers:\n    - {type: Dense, name: d1, units: 8, inputs: d1}\n    - {type: Dense, units: 10}\n",
        "5:49: model.layers[0].inputs: layer 'd1' takes its own output; a layer's inputs must be other layers"),
    "an unused branch": (
        "  layers:\n    - {type: Flatten, name: f}\n    - {type: Dense, name: side, units: 8, inputs: f}\n"
        "    - {type: Dense, units: 10, inputs: f}\n",
        "6:7: model.layers[1]: the output of layer 'side' is never used; "
        "list it in another layer's inputs or in model.outputs, or remove it"),
    "a duplicate name": (
        "  layers:\n    - {type: Flatten, name: f}\n    - {type: Dense, name: f, units: 10}\n",
        "6:27: model.layers[1].name: the name 'f' is used twice; give each layer a unique name"),
    "the reserved name input": (
        "  layers:\n    - {type: Flatten, name: input}\n    - {type: Dense, units: 10}\n",
        "5:29: model.layers[0].name: the name 'input' is taken: it means the model input (in a block, "
        "the block's input); give this layer another name"),
    "Concatenate with one input": (
        "  layers:\n    - {type: Flatten, name: f}\n    - {type: Concatenate, inputs: [f]}\n"
        "    - {type: Dense, units: 10}\n",
        "6:35: model.layers[1].inputs: Concatenate merges 2 or more inputs, got 1; "
        "list the layers to merge, e.g. inputs: [branch_a, branch_b]"),
    "Add with the one above": (
        "  layers:\n    - {type: Flatten}\n    - {type: Add}\n    - {type: Dense, units: 10}\n",
        "6:7: model.layers[1].inputs: Add merges 2 or more inputs, got 1; "
        "list the layers to merge, e.g. inputs: [branch_a, branch_b]"),
    "Dense with two inputs": (
        "  layers:\n    - {type: Flatten, name: f}\n    - {type: Flatten, name: g, inputs: input}\n"
        "    - {type: Dense, units: 10, inputs: [f, g]}\n",
        "7:40: model.layers[2].inputs: Dense takes one input, got 2; merge them first with Concatenate or Add"),
    "unknown output": (
        "  outputs: dnse\n  layers:\n    - {type: Flatten}\n    - {type: Dense, name: dense, units: 10}\n",
        "4:12: model.outputs: unknown layer 'dnse' in outputs; did you mean 'dense'?"),
}


@pytest.mark.parametrize("model, expected", GRAPH_ERRORS.values(), ids=GRAPH_ERRORS.keys())
def test_graph_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


@pytest.mark.parametrize("type_name, name", [("Conv2D", "conv2d"), ("MaxPooling2D", "max_pooling2d"),
                                             ("BatchNormalization", "batch_normalization"), ("ReLU", "re_lu"),
                                             ("GlobalAveragePooling2D", "global_average_pooling2d")])
def test_default_names_follow_keras(type_name, name):
    assert snake(type_name) == name


def test_nested_repeats_cannot_expand_without_bound(tmp_path):
    message = error_of(tmp_path, """\
  blocks:
    a:
      layers:
        - {block: b, repeat: 1000}
    b:
      layers:
        - {block: c, repeat: 1000}
    c:
      layers:
        - {type: Dropout, rate: 0.1}
  layers:
    - {type: Flatten}
    - {block: a, repeat: 1000}
    - {type: Dense, units: 10}
""")
    assert message == ("16:7: model.layers[1]: the model expands to more than 10,000 layers; "
                       "check the repeat: of this block use and of the blocks it uses")


def test_a_long_chain_written_bottom_up():
    # Deeper than Python's recursion limit: the ordering must not recurse.
    n = 3000
    layers = [{"type": "Dense", "name": "out", "units": 10, "inputs": "d0"}]
    layers += [{"type": "Dropout", "name": f"d{i}", "rate": 0.1, "inputs": f"d{i + 1}"} for i in range(n)]
    layers += [{"type": "Flatten", "name": f"d{n}", "inputs": "input"}]
    graph = build_graph({"layers": layers, "outputs": "out"}, lambda *a, **k: None, set())
    assert graph.nodes[0].name == f"d{n}" and graph.nodes[-1].name == "out"
