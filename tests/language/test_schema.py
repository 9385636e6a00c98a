"""Schema violations: each is one exact line at the offending key or value, with a did-you-mean where one fits."""

from pathlib import Path

import pytest
from helpers import REPO

from runner.errors import XrunError
from runner.language import schema
from runner.language.spec import load_spec

BASE = REPO / "experiments" / "base" / "seed004.yaml"
HEAD = f"extends: {BASE}\nname: t\nmodel:\n  layers:\n"  # the first layer is on line 5


def error_of(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(XrunError) as info:
        load_spec(path)
    return path, info.value.format()


def layers(*lines: str) -> str:
    return HEAD + "".join(f"    - {line}\n" for line in lines)


CASES = {
    "unknown top-level key": (
        f"extends: {BASE}\nname: t\nmodle: {{}}\nmodel:\n  layers:\n    - {{type: Dense, units: 10}}\n",
        "3:1: modle: unknown key 'modle'; did you mean 'model'?"),
    "unknown key without a near miss": (
        f"extends: {BASE}\nname: t\nzzz: 1\nmodel:\n  layers:\n    - {{type: Dense, units: 10}}\n",
        "3:1: zzz: unknown key 'zzz'; allowed keys: " + ", ".join(sorted(schema.schema()["properties"]))),
    "wrong type": (
        layers("{type: Dense, units: ten}"),
        "5:28: model.layers[0].units: expected an integer, got string 'ten'"),
    "wrong type, a mapping for a list": (
        HEAD.replace("  layers:\n", "  layers: {type: Dense, units: 10}\n"),
        "4:11: model.layers: expected a list, got a mapping"),
    "out of range": (
        layers("{type: Dense, units: 10}") + "training: {epochs: 0}\n",
        "6:20: training.epochs: 0 is out of range; must be >= 1"),
    "out of range, exclusive": (
        layers("{type: Dropout, rate: 1.5}", "{type: Dense, units: 10}"),
        "5:29: model.layers[0].rate: 1.5 is out of range; must be < 1"),
    "missing required top-level key": (
        f"extends: {BASE}\nmodel:\n  layers:\n    - {{type: Dense, units: 10}}\n",
        "1:1: (top level): missing required key 'name'; add 'name:' here"),
    "missing required layer argument": (
        layers("{type: Dense}"),
        "5:7: model.layers[0]: missing required key 'units'; add 'units:' here"),
    "missing layer type": (
        layers("{units: 10}"),
        "5:7: model.layers[0]: missing required key 'type'; add 'type:' here"),
    "unknown layer type": (
        layers("{type: Dens, units: 10}"),
        "5:14: model.layers[0].type: unknown layer type 'Dens'; did you mean 'Dense'?"),
    "unknown layer argument": (
        layers("{type: Conv2D, filterz: 8, kernel_size: 3}", "{type: Flatten}", "{type: Dense, units: 10}"),
        "5:22: model.layers[0].filterz: unknown key 'filterz' for Conv2D; did you mean 'filters'?"),
    "bad activation": (
        layers("{type: Dense, units: 10, activation: rellu}"),
        "5:44: model.layers[0].activation: unknown activation 'rellu'; did you mean 'relu'?"),
    "bad enum value, case": (
        layers("{type: Conv2D, filters: 8, kernel_size: 3, padding: SAME}", "{type: Flatten}",
               "{type: Dense, units: 10}"),
        "5:59: model.layers[0].padding: unknown value 'SAME'; did you mean 'same'?"),
    "bad initializer": (
        layers("{type: Dense, units: 10, kernel_initializer: he_norml}"),
        "5:52: model.layers[0].kernel_initializer: unknown initializer 'he_norml'; did you mean 'he_normal'?"),
    "kernel_size list too long": (
        layers("{type: Conv2D, filters: 8, kernel_size: [3, 3, 3]}", "{type: Flatten}", "{type: Dense, units: 10}"),
        "5:47: model.layers[0].kernel_size: has 3 items; expected at most 2 items"),
    "kernel_size zero": (
        layers("{type: Conv2D, filters: 8, kernel_size: 0}", "{type: Flatten}", "{type: Dense, units: 10}"),
        "5:47: model.layers[0].kernel_size: 0 is out of range; must be >= 1"),
    "kernel_size of the wrong kind": (
        layers("{type: Conv2D, filters: 8, kernel_size: three}", "{type: Flatten}", "{type: Dense, units: 10}"),
        "5:47: model.layers[0].kernel_size: string 'three' is not allowed here; "
        "expected an integer >= 1 or a list of 2 integers >= 1"),
    "empty layer list": (
        HEAD.replace("  layers:\n", "  layers: []\n"),
        "4:11: model.layers: is empty; expected at least 1 item"),
    "bad name": (
        layers("{type: Dense, units: 10}").replace("name: t", "name: 't t'"),
        "2:7: name: 't t' is not a valid name; use letters, digits, '_', '.' or '-', starting with a letter"),
    "unknown optimizer": (
        layers("{type: Dense, units: 10}") + "optimizer: {type: Adamm}\n",
        "6:19: optimizer.type: unknown optimizer 'Adamm'; did you mean 'Adam'?"),
    "unknown optimizer argument": (
        layers("{type: Dense, units: 10}") + "optimizer: {lerning_rate: 0.1}\n",
        "6:13: optimizer.lerning_rate: unknown key 'lerning_rate' for Adadelta; did you mean 'learning_rate'?"),
    "negative learning rate": (
        layers("{type: Dense, units: 10}") + "optimizer: {learning_rate: -1}\n",
        "6:28: optimizer.learning_rate: -1 is out of range; must be > 0"),
    "unknown loss": (
        layers("{type: Dense, units: 10}") + "loss: CategoricalCrossEntropy\n",
        "6:7: loss: unknown loss 'CategoricalCrossEntropy'; did you mean 'CategoricalCrossentropy'?"),
    "unknown dataset": (
        layers("{type: Dense, units: 10}") + "data: {dataset: minst}\n",
        "6:17: data.dataset: unknown dataset 'minst'; did you mean 'mnist'?"),
    "unknown callback": (
        layers("{type: Dense, units: 10}") + "callbacks: [{type: EarlyStop}]\n",
        "6:20: callbacks[0].type: unknown callback 'EarlyStop'; did you mean 'EarlyStopping'?"),
    "a schedule missing an argument": (
        layers("{type: Dense, units: 10}") + "optimizer:\n  learning_rate: {type: CosineDecay}\n",
        "7:18: optimizer.learning_rate: missing required key 'initial_learning_rate'; "
        "add 'initial_learning_rate:' here"),
    "a Keras argument in steps": (
        layers("{type: Dense, units: 10}") + "optimizer:\n  learning_rate:\n    {type: ExponentialDecay, "
        "initial_learning_rate: 0.1, decay_rate: 0.9, decay_steps: 3}\n",
        "8:75: optimizer.learning_rate.decay_steps: unknown key 'decay_steps' for ExponentialDecay; "
        "an experiment counts in epochs: use 'decay_epochs'"),
    "neither of two forms": (
        layers("{type: Dense, units: 10}") + "training: {epochs: 1, steps_per_execution: fast}\n",
        "6:44: training.steps_per_execution: string 'fast' is not allowed here; expected an integer >= 1 or 'auto'"),
    "Lambda refused": (
        layers("{type: Lambda}", "{type: Dense, units: 10}"),
        "5:14: model.layers[0].type: the layer type 'Lambda' is not allowed; "
        "it runs Python code, and an experiment file holds data only"),
    "erasing with an unknown option": (
        layers("{type: Dense, units: 10}") + "augmentation:\n  random_erasing: {probabilty: 0.5}\n",
        "7:20: augmentation.random_erasing.probabilty: unknown key 'probabilty'; did you mean 'probability'?"),
    "null where a value belongs": (
        layers("{type: Dense, units: null}"),
        "5:28: model.layers[0].units: expected an integer, got null"),
}


@pytest.mark.parametrize("text, expected", CASES.values(), ids=CASES.keys())
def test_schema_violation(tmp_path, text, expected):
    path, message = error_of(tmp_path, text)
    assert message == f"{path}:{expected}"


def test_every_problem_is_listed_in_file_order(tmp_path):
    path, message = error_of(tmp_path, layers("{type: Dense, units: 0}", "{type: Dense, units: 10, activation: x}")
                             + "training: {epochs: -1}\n")
    assert message.splitlines() == [
        f"{path}:5:28: model.layers[0].units: 0 is out of range; must be >= 1",
        f"{path}:6:44: model.layers[1].activation: unknown activation 'x'; expected one of: 'linear', 'relu', "
        "'relu6', 'elu', 'selu', 'gelu', 'silu', 'swish', 'mish', 'sigmoid', 'hard_sigmoid', 'hard_swish', 'tanh', "
        "'softmax', 'log_softmax', 'softplus', 'softsign', 'leaky_relu', 'exponential'",
        f"{path}:7:20: training.epochs: -1 is out of range; must be >= 1",
    ]


def test_an_unknown_type_hides_the_complaints_it_causes(tmp_path):
    # A misspelt type makes every argument look unexpected: only the type is reported.
    path, message = error_of(tmp_path, layers("{type: Conv2d, filters: 8, kernel_size: 3}", "{type: Flatten}",
                                              "{type: Dense, units: 10}"))
    assert message == f"{path}:5:14: model.layers[0].type: unknown layer type 'Conv2d'; did you mean 'Conv2D'?"


def test_an_error_in_a_base_file_points_into_that_file(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {BASE}\ntraining: {{epochz: 5}}\n")
    path, message = error_of(tmp_path, "extends: base.yaml\nname: t\nmodel:\n  layers:\n"
                             "    - {type: Dense, units: 10}\n")
    assert message == f"{base}:2:12: training.epochz: unknown key 'epochz'; did you mean 'epochs'?"


def test_layer_types_lists_the_schema_enum():
    assert schema.layer_types()[0] == "Conv2D"
    assert "KerasLayer" in schema.layer_types()


def test_property_schema_follows_the_type_in_the_document():
    document = {"optimizer": {"type": "Adam"}, "model": {"layers": [{"type": "Conv2D"}, {"block": "b"}]}}
    beta_1 = schema.property_schema(("optimizer", "beta_1"), document)
    assert {k: v for k, v in beta_1.items() if k != "description"} == {"type": "number", "minimum": 0, "maximum": 1}
    assert schema.property_schema(("optimizer", "rho"), document) is None  # Adadelta's, not Adam's
    assert schema.property_schema(("model", "layers", 0, "filters"), document)["type"] == "integer"
    assert schema.property_schema(("model", "layers", 0, "units"), document) is None
    assert "description" in schema.property_schema(("model", "layers", 1, "anything"), document)  # a block param
    assert schema.property_schema(("training", "epochs"))["type"] == "integer"
    assert schema.property_schema(("name", "x")) is None
    assert "learning_rate" in schema.known_keys(("optimizer",), document)


def test_defaults_are_filled_in():
    filled = schema.default_sections({"training": {"epochs": 1}, "data": {"dataset": "mnist"}})
    assert filled["training"]["batch_size"] == 32
    assert filled["data"]["validation"] == "split"
    assert filled["metrics"] == ["accuracy"]


def test_a_warm_up_without_its_target_is_caught_by_validate(tmp_path):
    path = tmp_path / "warm.yaml"
    path.write_text(f"name: warm\nextends: {REPO / 'experiments' / 'model1.yaml'}\n"
                    "optimizer:\n  type: Adam\n"
                    "  learning_rate: {type: CosineDecay, initial_learning_rate: 0.001, warmup_epochs: 1}\n")
    with pytest.raises(XrunError) as error:
        load_spec(path)
    assert error.value.line() == (f"{path}:5:18: optimizer.learning_rate: 'warmup_epochs' needs 'warmup_target'; "
                                  "add 'warmup_target:' here")


def test_type_dispatch_replaces_the_if_then_branches_with_one_table():
    dispatching = schema._dispatching(schema.schema())["$defs"]
    assert "allOf" not in dispatching["layer"] and "allOf" in schema.schema()["$defs"]["layer"]
    assert sorted(dispatching["layer"]["x-dispatch"]) == sorted(schema.layer_types())
    assert dispatching["optimizer"]["x-dispatch"]["Yogi"] == "#/$defs/optimizers/Yogi"


def test_a_type_that_is_not_a_name_is_reported_not_dispatched(tmp_path):
    path, message = error_of(tmp_path, layers("{type: [Dense], units: 10}"))
    assert message.startswith(f"{path}:5:14: model.layers[0].type: unknown layer type [\"Dense\"]; "
                              "expected one of: 'Conv2D', ")
