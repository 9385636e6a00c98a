"""The block language: arithmetic in params, `first:` overrides, `repeat: 0`, blocks with several inputs, the
layer arguments the reference architectures need, and bad values reported where they are written."""


import pytest
from helpers import error_of, spec_of

from runner.language.expressions import ExpressionError, evaluate, names_in


def nodes(spec) -> list[tuple]:
    return [(n.name, n.args, n.inputs) for n in spec.graph.nodes]


# --- the expression grammar ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("width * 4", 32), ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("width - 2 - 3", 3), ("-width + 10", 2),
    ("width / 2", 4), ("width / 3", 8 / 3), ("width // 3", 2), ("-7 // 2", -4), ("width * 0.5", 4.0),
    ("2 - -1", 3), ("((width))", 8), ("1e3 / 10", 100.0), (" width*width ", 64), ("8 / 4 / 2", 1),
])
def test_arithmetic(text, value):
    result = evaluate(text, {"width": 8})
    assert result == value and type(result) is type(value)  # an exact `/` stays an integer


@pytest.mark.parametrize("text, message", [
    ("width *", "'width *' ends too soon"),
    ("width 4", "cannot read 'width 4': expected an operator (+ - * / //), found '4'"),
    ("(width + 1", "cannot read '(width + 1': expected ')', found the end"),
    ("width ** 2", "cannot read 'width ** 2': expected a number, a param or '(', found '*'"),
    ("width % 2", "cannot read 'width % 2': expected an operator (+ - * / //), found '%'"),
    ("width / (width - 8)", "division by zero"),
    ("", "the expression is empty"),
    ("(" * 40 + "1" + ")" * 40, "parentheses nested deeper than 32"),
    ("1" + " + 1" * 200, "the expression is 801 characters long"),
    ("1e308 * 10", "'1e308 * 10' is inf"),
    ("name * 2", "param 'name' is the string 'conv', and arithmetic needs a number"),
    ("flag + 1", "param 'flag' is boolean True, and arithmetic needs a number"),
])
def test_arithmetic_errors(text, message):
    with pytest.raises(ExpressionError) as info:
        evaluate(text, {"width": 8, "name": "conv", "flag": True})
    assert info.value.message == message


def test_names_in_order_of_use():
    assert names_in("(a + b) * a // c2") == ["a", "b", "c2"]


# --- arithmetic in a model -------------------------------------------------------------------------------

WIDE = """\
  blocks:
    b:
      params: {width: null}
      layers:
        - {type: Dense, units: "${width * 4 + (width - 2) // 3}", name: "d_${width / 2}"}
  layers:
    - {type: Flatten}
    - {block: b, width: 8}
    - {type: Dense, units: 10}
"""


def test_params_in_arithmetic_and_in_names(tmp_path):
    assert nodes(spec_of(tmp_path, WIDE))[1] == ("b_d_4", {"units": 34}, ["flatten"])


BLOCK = "  blocks:\n    b:\n      params: {width: null}\n      layers:\n        - {type: Dense, units: \"%s\"}\n"
USE = "  layers:\n    - {type: Flatten}\n    - {block: b, width: %s}\n    - {type: Dense, units: 10}\n"

EXPRESSION_ERRORS = {
    "a result out of range, at the value given": (
        BLOCK % "${width * 4}" + USE % "-1",
        "11:25: model.layers[1].width (used in model.blocks.b.layers[0].units = ${width * 4}): -4 is out of range; "
        "must be >= 1"),
    "a fraction where an integer is needed": (
        BLOCK % "${width / 3}" + USE % "4",
        "11:25: model.layers[1].width (used in model.blocks.b.layers[0].units = ${width / 3}): "
        "expected an integer, got number 1.3333333333333333"),
    "a string in arithmetic, at the value given": (
        BLOCK % "${width * 2}" + USE % "wide",
        "11:25: model.layers[1].width (used in model.blocks.b.layers[0].units = ${width * 2}): param 'width' is the "
        "string 'wide', and arithmetic needs a number; give 'width' a number, or use it alone as \"${width}\""),
    "a syntax error, at the expression": (
        BLOCK % "${width * }" + USE % "2",
        "8:32: model.blocks.b.layers[0].units: 'width *' ends too soon; finish it with a number or a param"),
    "division by zero": (
        BLOCK % "${width // (width - 2)}" + USE % "2",
        "8:32: model.blocks.b.layers[0].units: division by zero; check the params this expression divides by"),
    "an unknown name in an expression": (
        BLOCK % "${widht * 2}" + USE % "3",
        "8:32: model.blocks.b.layers[0].units: unknown block param 'widht' in '${widht * 2}'; did you mean 'width'?"),
}


@pytest.mark.parametrize("model, expected", EXPRESSION_ERRORS.values(), ids=EXPRESSION_ERRORS.keys())
def test_expression_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


# --- bad values where they are written -------------------------------------------------------------------

VALUE_ERRORS = {
    "a bad default, at the default": (
        "  blocks:\n    b:\n      params: {width: 4, rate: 1.5}\n      layers:\n"
        '        - {type: Dense, units: "${width}"}\n        - {type: Dropout, rate: "${rate}"}\n'
        "  layers:\n    - {type: Flatten}\n    - {block: b}\n    - {type: Dense, units: 10}\n",
        "6:32: model.blocks.b.params.rate (used in model.blocks.b.layers[1].rate): 1.5 is out of range; must be < 1"),
    "through a nested block, at the outermost value": (
        "  blocks:\n    inner:\n      params: {u: null}\n      layers:\n        - {type: Dense, units: \"${u}\"}\n"
        "    outer:\n      params: {w: null}\n      layers:\n        - {block: inner, u: \"${w}\"}\n"
        "  layers:\n    - {type: Flatten}\n    - {block: outer, w: 0}\n    - {type: Dense, units: 10}\n",
        "15:25: model.layers[1].w (used in model.blocks.inner.layers[0].units): 0 is out of range; must be >= 1"),
    "a key inside a mapping given as a param": (
        "  blocks:\n    b:\n      params: {init: he_normal}\n      layers:\n"
        '        - {type: Dense, units: 10, kernel_initializer: "${init}"}\n'
        "  layers:\n    - {type: Flatten}\n    - {block: b, init: {type: HeNormal, sed: 3}}\n",
        "11:41: model.layers[1].init.sed (used in model.blocks.b.layers[0].kernel_initializer): "
        "unknown key 'sed' for HeNormal; did you mean 'seed'?"),
    "a value under first:": (
        "  blocks:\n    b:\n      params: {units: 4}\n      layers:\n        - {type: Dense, units: \"${units}\"}\n"
        "  layers:\n    - {type: Flatten}\n    - {block: b, repeat: 2, first: {units: -8}}\n"
        "    - {type: Dense, units: 10}\n",
        "11:44: model.layers[1].first.units (used in model.blocks.b.layers[0].units): -8 is out of range; "
        "must be >= 1"),
}


@pytest.mark.parametrize("model, expected", VALUE_ERRORS.values(), ids=VALUE_ERRORS.keys())
def test_bad_values_are_reported_where_they_are_written(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


# --- first: --------------------------------------------------------------------------------------------------

REPEATED = """\
  blocks:
    b:
      params: {units: 4, rate: 0.1}
      layers:
        - {type: Dense, units: "${units}"}
        - {type: Dropout, rate: "${rate}"}
  layers:
    - {type: Flatten}
    - {block: b, name: s, repeat: 3, first: {units: 8}}
    - {type: Dense, units: 10}
"""


def test_first_overrides_params_of_the_first_repeat_only(tmp_path):
    dense = [(name, args) for name, args, _ in nodes(spec_of(tmp_path, REPEATED)) if "dense" in name]
    assert dense == [("s_1_dense", {"units": 8}), ("s_2_dense", {"units": 4}), ("s_3_dense", {"units": 4}),
                     ("dense", {"units": 10})]


def test_a_param_given_under_first_is_enough_for_one_repeat(tmp_path):
    model = REPEATED.replace("{units: 4, rate: 0.1}", "{units: null, rate: 0.1}")
    assert nodes(spec_of(tmp_path, model.replace("repeat: 3, ", "")))[1] == ("s_dense", {"units": 8}, ["flatten"])
    assert error_of(tmp_path, model) == ("12:7: model.layers[1]: block 'b' needs param 'units'; "
                                         "add 'units: VALUE' to this block use")


def test_first_names_declared_params(tmp_path):
    assert error_of(tmp_path, REPEATED.replace("first: {units", "first: {unist")) == (
        "12:46: model.layers[1].first.unist: block 'b' has no param 'unist'; did you mean 'units'?")


# --- repeat: 0 -------------------------------------------------------------------------------------------------

OPTIONAL = """\
  blocks:
    projection:
      params: {units: null}
      layers:
        - {type: Dense, units: "${units}"}
    residual:
      params: {units: 8, project: 0}
      layers:
        - {block: projection, name: shortcut, inputs: input, units: "${units}", repeat: "${project}"}
        - {type: Dense, name: body, inputs: input, units: "${units}"}
        - {type: Add, inputs: [shortcut, body]}
  layers:
    - {type: Flatten}
    - {type: Dense, units: 8}
    - {block: residual, name: r, repeat: 2, first: {project: 1}}
    - {type: Dense, units: 10}
"""


def test_repeat_0_makes_a_part_optional(tmp_path):
    spec = spec_of(tmp_path, OPTIONAL)
    assert [(name, inputs) for name, _, inputs in nodes(spec)] == [
        ("flatten", ["input"]), ("dense", ["flatten"]),
        ("r_1_shortcut_dense", ["dense"]), ("r_1_body", ["dense"]), ("r_1_add", ["r_1_shortcut_dense", "r_1_body"]),
        ("r_2_body", ["r_1_add"]), ("r_2_add", ["r_1_add", "r_2_body"]),  # no projection: the input itself
        ("dense_1", ["r_2_add"])]


REPEAT_0 = "  blocks:\n    b:\n      layers:\n        - {type: Dense, units: 3}\n"


def test_a_block_used_0_times_passes_its_input_on(tmp_path):
    spec = spec_of(tmp_path, REPEAT_0 + "  layers:\n    - {type: Flatten, name: f}\n"
                   "    - {block: b, name: skipped, repeat: 0}\n    - {type: Dense, units: 10, inputs: skipped}\n")
    assert nodes(spec) == [("f", {}, ["input"]), ("dense", {"units": 10}, ["f"])]


REPEAT_0_ERRORS = {
    "nothing left": (
        REPEAT_0 + "  layers:\n    - {block: b, repeat: 0}\n",
        "9:5: model.layers: the model has no layers; its block uses repeat 0 times: give one repeat: 1 or more, "
        "or add a layer"),
    "the output is the input": (
        REPEAT_0 + "  outputs: [nothing]\n  layers:\n    - {type: Flatten, name: f}\n"
        "    - {type: Dense, units: 10, inputs: f}\n    - {block: b, name: nothing, inputs: input, repeat: 0}\n",
        "8:12: model.outputs: the model's output is its input; end the model with a layer (a block that repeats "
        "0 times adds none)"),
    "a negative repeat": (
        REPEAT_0 + "  layers:\n    - {type: Flatten}\n    - {block: b, repeat: -1}\n",
        "10:26: model.layers[1].repeat: -1 is out of range; must be >= 0"),
}


@pytest.mark.parametrize("model, expected", REPEAT_0_ERRORS.values(), ids=REPEAT_0_ERRORS.keys())
def test_repeat_0_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


# --- blocks with several inputs ----------------------------------------------------------------------------

GATE = """\
  blocks:
    gate:
      inputs: [x, context]
      layers:
        - {type: Dense, name: proj, units: 4, inputs: context}
        - {type: Multiply, inputs: [x, proj]}
  layers:
    - {type: Flatten, name: f}
    - {type: Dense, name: d, units: 4}
    - {block: gate, name: g, inputs: [d, f], repeat: 2}
    - {type: Dense, units: 10}
"""


def test_a_block_with_two_inputs_chains_the_first(tmp_path):
    assert [(name, inputs) for name, _, inputs in nodes(spec_of(tmp_path, GATE))] == [
        ("f", ["input"]), ("d", ["f"]),
        ("g_1_proj", ["f"]), ("g_1_multiply", ["d", "g_1_proj"]),
        ("g_2_proj", ["f"]), ("g_2_multiply", ["g_1_multiply", "g_2_proj"]),  # each repeat: the one before, and f
        ("dense", ["g_2_multiply"])]


def test_a_block_with_two_inputs_used_0_times_passes_the_first_on(tmp_path):
    spec = spec_of(tmp_path, GATE.replace("repeat: 2", "repeat: 0"))
    assert [(name, inputs) for name, _, inputs in nodes(spec)] == [("f", ["input"]), ("d", ["f"]), ("dense", ["d"])]


INPUT_ERRORS = {
    "one input given, two declared": (
        GATE.replace("inputs: [d, f], repeat: 2", "inputs: d"),
        "13:38: model.layers[2].inputs: block 'gate' takes 2 inputs (x, context), got 1; "
        "list them in this block use: inputs: [LAYER, LAYER]"),
    "none given, two declared": (
        GATE.replace("inputs: [d, f], repeat: 2", "repeat: 2"),
        "13:7: model.layers[2]: block 'gate' takes 2 inputs (x, context), got 1; "
        "list them in this block use: inputs: [LAYER, LAYER]"),
    "a layer named as an input": (
        GATE.replace("name: proj", "name: context").replace("[x, proj]", "[x, context]"),
        "8:31: model.blocks.gate.layers[0].name: the name 'context' is taken: it is an input of block 'gate'; "
        "give this layer another name"),
    "a misspelt input inside the block": (
        GATE.replace("inputs: context}", "inputs: contxt}"),
        "8:55: model.blocks.gate.layers[0].inputs (in block 'gate' at model.layers[2]): unknown layer 'contxt' in "
        "inputs; did you mean 'context'?"),
    "an input declared twice": (
        GATE.replace("[x, context]", "[x, x]"),
        "6:15: model.blocks.gate.inputs: 'x' is listed twice; list each once"),
}


@pytest.mark.parametrize("model, expected", INPUT_ERRORS.values(), ids=INPUT_ERRORS.keys())
def test_block_input_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected


# --- layer arguments: asymmetric padding, initialisers with arguments, noise_shape ---------------------------

ARGUMENTS = """\
  layers:
    - {type: ZeroPadding2D, padding: [[0, 1], [0, 1]]}
    - {type: ZeroPadding2D, padding: [1, [0, 2]]}
    - {type: Conv2D, filters: 4, kernel_size: 3, kernel_initializer: {type: HeNormal, seed: 1}}
    - {type: Dropout, rate: 0.2, noise_shape: [null, 1, 1, 4]}
    - {type: Flatten}
    - {type: Dense, units: 10, kernel_initializer: {type: VarianceScaling, scale: 2.0, mode: fan_out}}
"""


def test_layer_arguments_of_the_reference_architectures(tmp_path):
    args = [a for _, a, _ in nodes(spec_of(tmp_path, ARGUMENTS))]
    assert args[0] == {"padding": [[0, 1], [0, 1]]} and args[1] == {"padding": [1, [0, 2]]}
    assert args[2]["kernel_initializer"] == {"type": "HeNormal", "seed": 1}
    assert args[3] == {"rate": 0.2, "noise_shape": [None, 1, 1, 4]}


LAYER = "  layers:\n    - {type: Flatten}\n    - %s\n"
ARGUMENT_ERRORS = {
    "a negative side of padding": (
        "  layers:\n    - {type: ZeroPadding2D, padding: [[0, -1], [0, 1]]}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        "5:43: model.layers[0].padding[0][1]: -1 is out of range; must be >= 0"),
    "three sides of padding": (
        "  layers:\n    - {type: ZeroPadding2D, padding: [[0, 1, 2], [0, 1]]}\n    - {type: Flatten}\n"
        "    - {type: Dense, units: 10}\n",
        "5:39: model.layers[0].padding[0]: has 3 items; expected at most 2 items"),
    "an unknown initializer class": (
        LAYER % "{type: Dense, units: 10, kernel_initializer: {type: HeNormall, seed: 1}}",
        "6:59: model.layers[1].kernel_initializer.type: unknown initializer type 'HeNormall'; "
        "did you mean 'HeNormal'?"),
    "a misspelt initializer argument": (
        LAYER % "{type: Dense, units: 10, kernel_initializer: {type: HeNormal, sed: 1}}",
        "6:69: model.layers[1].kernel_initializer.sed: unknown key 'sed' for HeNormal; did you mean 'seed'?"),
    "an argument of another initializer": (
        LAYER % "{type: Dense, units: 10, kernel_initializer: {type: HeNormal, stddev: 1}}",
        "6:69: model.layers[1].kernel_initializer.stddev: unknown key 'stddev' for HeNormal; "
        "allowed keys: seed, type"),
    "an initializer without a type": (
        LAYER % "{type: Dense, units: 10, kernel_initializer: {seed: 1}}",
        "6:52: model.layers[1].kernel_initializer: missing required key 'type'; add 'type:' here"),
    "a misspelt initializer name": (
        LAYER % "{type: Dense, units: 10, kernel_initializer: he_normall}",
        "6:52: model.layers[1].kernel_initializer: unknown initializer 'he_normall'; did you mean 'he_normal'?"),
    "a mask axis of 0": (
        LAYER % "{type: Dropout, rate: 0.2, noise_shape: [null, 0]}",
        "6:54: model.layers[1].noise_shape[1]: 0 is out of range; must be >= 1"),
    "a mask shape that is no list": (
        LAYER % "{type: Dropout, rate: 0.2, noise_shape: 4}",
        "6:47: model.layers[1].noise_shape: expected a list, got integer 4"),
}


@pytest.mark.parametrize("model, expected", ARGUMENT_ERRORS.values(), ids=ARGUMENT_ERRORS.keys())
def test_layer_argument_errors(tmp_path, model, expected):
    assert error_of(tmp_path, model) == expected
