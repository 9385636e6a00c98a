"""Loading a whole experiment: `extends` merging, `--set` overrides typed by the schema, cross-section checks."""

import json
from pathlib import Path

import pytest
from helpers import REPO

from runner.errors import Location, XrunError
from runner.language import schema
from runner.language.overrides import _typed_value
from runner.language.spec import load_spec

BASE = REPO / "experiments" / "base" / "seed004.yaml"
MODEL1 = REPO / "experiments" / "model1.yaml"
LAYERS = "model:\n  layers:\n    - {type: Conv2D, filters: 8, kernel_size: 3}\n    - {type: Flatten}\n" \
         "    - {type: Dense, units: 10}\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path, overrides=()) -> str:
    with pytest.raises(XrunError) as info:
        load_spec(path, overrides)
    return info.value.format()


# --- extends -------------------------------------------------------------------------------------------

def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    base = write(tmp_path, "base.yaml", f"extends: {BASE}\nname: base\ntraining: {{epochs: 5, batch_size: 64}}\n"
                 "metrics: [accuracy]\ncallbacks: [{type: EarlyStopping, patience: 3}, {type: TerminateOnNaN}]\n"
                 + LAYERS)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\ntraining: {batch_size: 16}\n"
                  "callbacks: [{type: TerminateOnNaN}]\nmodel:\n  layers:\n    - {type: Flatten}\n"
                  "    - {type: Dense, units: 10}\n")
    doc = load_spec(child).document
    assert doc["name"] == "child"
    assert doc["training"]["epochs"] == 5 and doc["training"]["batch_size"] == 16  # merged
    assert doc["callbacks"] == [{"type": "TerminateOnNaN"}]                          # replaced
    assert [layer["type"] for layer in doc["model"]["layers"]] == ["Flatten", "Dense"]
    assert doc["data"] == {"source": "builtin", "dataset": "mnist", "validation": "test",  # from seed004
                           "validation_split": 0.1, "split_seed": 0}
    assert load_spec(child).files == [child, base, BASE]


def test_null_deletes_a_key_of_the_base(tmp_path):
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\ntraining: {{shuffle: null}}\n" + LAYERS)
    doc = load_spec(path).document
    assert doc["training"]["shuffle"] is True  # the base's `false`... is gone; the schema default fills it
    assert doc["optimizer"]["rho"] == 0.95
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\noptimizer: {{rho: null}}\n" + LAYERS)
    assert "rho" not in load_spec(path).document["optimizer"]


def test_a_mapping_with_another_type_replaces_the_base(tmp_path):
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\noptimizer: {{type: Adam}}\n" + LAYERS)
    assert load_spec(path).document["optimizer"] == {"type": "Adam"}  # no Adadelta rho or epsilon left over
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\noptimizer: {{type: Adadelta, rho: 0.9}}\n" + LAYERS)
    assert load_spec(path).document["optimizer"] == {"type": "Adadelta", "learning_rate": 1.0, "rho": 0.9,
                                                     "epsilon": 1e-7}


def test_a_chain_of_three(tmp_path):
    write(tmp_path, "a.yaml", f"extends: {BASE}\nname: a\ntraining: {{epochs: 1}}\n" + LAYERS)
    write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\ntraining: {batch_size: 7}\n")
    c = write(tmp_path, "c.yaml", "extends: b.yaml\nname: c\ntraining: {shuffle: false}\n")
    spec = load_spec(c)
    assert spec.name == "c"
    assert {k: spec.document["training"][k] for k in ("epochs", "batch_size", "shuffle")} == \
        {"epochs": 1, "batch_size": 7, "shuffle": False}
    assert [p.name for p in spec.files] == ["c.yaml", "b.yaml", "a.yaml", "seed004.yaml"]


def test_a_cycle_is_reported(tmp_path):
    a = write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    b = write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    assert error_of(a) == (f"{b}:1:10: extends: extends goes round in a circle: a.yaml -> b.yaml -> a.yaml; "
                           "remove one of the extends")


def test_extending_itself(tmp_path):
    a = write(tmp_path, "a.yaml", "extends: a.yaml\nname: a\n")
    assert error_of(a) == (f"{a}:1:10: extends: extends goes round in a circle: a.yaml -> a.yaml; "
                           "remove one of the extends")


def test_a_missing_base(tmp_path):
    path = write(tmp_path, "t.yaml", "name: t\nextends: nothere.yaml\n")
    assert error_of(path) == (f"{path}:2:10: extends: the base file 'nothere.yaml' does not exist; "
                              f"the path is relative to {tmp_path}/")


def test_extends_must_be_a_path(tmp_path):
    path = write(tmp_path, "t.yaml", "extends: 3\nname: t\n")
    assert error_of(path) == f"{path}:1:10: extends: extends must be a file path; e.g. extends: base/seed004.yaml"


def test_a_deleted_required_key(tmp_path):
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\ntraining: null\n" + LAYERS)
    assert error_of(path) == f"{path}:1:1: (top level): missing required key 'training'; add 'training:' here"


# --- --set ---------------------------------------------------------------------------------------------

def test_overrides_are_typed_by_the_schema():
    spec = load_spec(MODEL1, ["description=123", "training.epochs=3", "training.shuffle=no",
                              "optimizer.learning_rate=1e-3", "model.layers[0].filters=8",
                              "model.input_shape=[28, 28, 1]"])
    doc = spec.document
    assert doc["description"] == "123"        # the schema wants text: kept as typed
    assert doc["training"]["epochs"] == 3      # an integer
    assert doc["training"]["shuffle"] is False
    assert doc["optimizer"]["learning_rate"] == 0.001
    assert doc["model"]["layers"][0]["filters"] == 8
    assert doc["model"]["input_shape"] == [28, 28, 1]
    assert str(spec.locate(("training", "epochs"))) == "--set training.epochs=3"


def test_a_name_override_stays_text():
    # `name=123` is the string '123' (which the name pattern then refuses), not the number 123.
    assert error_of(MODEL1, ["name=123"]) == (
        "--set name=123: name: '123' is not a valid name; use letters, digits, '_', '.' or '-', starting with a letter")
    assert load_spec(MODEL1, ["name=run7"]).name == "run7"
    where = Location("--set name=123")
    assert _typed_value({}, ("name",), "123", where) == "123"
    assert _typed_value({}, ("training", "epochs"), "3", where) == 3


def test_a_new_type_clears_the_old_arguments():
    doc = load_spec(MODEL1, ["optimizer.type=Adam", "optimizer.beta_1=0.8"]).document
    assert doc["optimizer"] == {"type": "Adam", "beta_1": 0.8}


def test_a_mapping_value():
    doc = load_spec(MODEL1, ["loss={type: CategoricalCrossentropy, label_smoothing: 0.1}"]).document
    assert doc["loss"] == {"type": "CategoricalCrossentropy", "label_smoothing": 0.1}


OVERRIDE_ERRORS = {
    "unknown key": ("training.epoch=3", "unknown key 'training.epoch'; did you mean 'epochs'?"),
    "unknown section": ("trainng.epochs=3", "unknown key 'trainng'; did you mean 'training'?"),
    "key of another type's": ("optimizer.lerning_rate=0.1",
                              "unknown key 'optimizer.lerning_rate'; did you mean 'learning_rate'?"),
    "key of a layer": ("model.layers[0].filterz=8", "unknown key 'model.layers[0].filterz'; did you mean 'filters'?"),
    "key under a value": ("name.x=3", "unknown key 'name.x'; name holds a single value, not keys"),
    "index into a mapping": ("training[0]=1", "training is not a list; remove [0]"),
    "index past the end": ("model.layers[99].filters=8", "model.layers has no item [99]; it has 13 (numbered from 0)"),
    "no equals sign": ("training.epochs", "expected KEY=VALUE; e.g. --set training.epochs=3"),
    "no key": ("=3", "expected KEY=VALUE; e.g. --set training.epochs=3"),
    "bad key path": ("a..b=1", "'a..b' is not a key path; e.g. training.epochs or model.layers[0].filters"),
    "bad YAML value": ("training.epochs=[1", "the value is not valid YAML (YAML syntax error: expected ',' or ']', "
                                             "but got '<stream end>' (while parsing a flow sequence))"),
    "wrong type": ("training.epochs=three", "training.epochs: expected an integer, got string 'three'"),
    "float for an integer": ("training.epochs=3.5", "training.epochs: expected an integer, got number 3.5"),
    "bad enum": ("data.dataset=minst", "data.dataset: unknown dataset 'minst'; did you mean 'mnist'?"),
    "extends": ("extends=x.yaml", "extends cannot be set from the command line (the bases are already merged); "
                                  "edit extends in the file, or set the values you want to change"),
}


@pytest.mark.parametrize("override, expected", OVERRIDE_ERRORS.values(), ids=OVERRIDE_ERRORS.keys())
def test_override_errors(override, expected):
    assert error_of(MODEL1, [override]) == f"--set {override}: {expected}"


def test_a_bad_value_set_in_a_layer_is_reported_at_the_override():
    assert error_of(MODEL1, ["model.layers[0].filters=0"]) == (
        "--set model.layers[0].filters=0: model.layers[0].filters: 0 is out of range; must be >= 1")


# --- rules across sections -----------------------------------------------------------------------------

def test_reduce_lr_on_plateau_with_a_schedule(tmp_path):
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\noptimizer:\n  type: Adam\n  learning_rate:\n"
                 "    {type: ExponentialDecay, initial_learning_rate: 0.001, decay_rate: 0.9}\n"
                 "callbacks: [{type: ReduceLROnPlateau}]\n" + LAYERS)
    assert error_of(path) == (f"{path}:7:20: callbacks[0].type: ReduceLROnPlateau cannot change a learning-rate "
                              "schedule; use a fixed optimizer.learning_rate, or drop this callback")


def test_monitoring_validation_without_validation(tmp_path):
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\ndata: {{validation: none}}\n"
                 "callbacks: [{type: EarlyStopping}]\n" + LAYERS)
    assert error_of(path) == (f"{path}:4:20: callbacks[0].type: EarlyStopping monitors 'val_loss' but "
                              "data.validation is 'none'; monitor 'loss', or validate on a split or the test set")


def test_spec_keeps_the_text_and_the_graph():
    spec = load_spec(MODEL1)
    assert spec.text == MODEL1.read_text()
    assert spec.graph.nodes[0].name == "conv2d" and spec.graph.outputs == ["dense_2"]


# --- Keras habits: a hint that says what to write --------------------------------------------------------------

def habit(tmp_path, layers: str = "    - {type: Flatten}\n    - {type: Dense, units: 10}\n", more: str = "") -> str:
    """The error for an experiment on seed 004's set-up with these layers and sections."""
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\n{more}model:\n  layers:\n{layers}")
    return error_of(path).replace(f"{path}:", "")


def test_an_input_shape_on_a_layer(tmp_path):
    assert habit(tmp_path, "    - {type: Flatten, input_shape: [28, 28, 1]}\n    - {type: Dense, units: 10}\n") == (
        "5:23: model.layers[0].input_shape: unknown key 'input_shape' for Flatten; a layer's input comes from the "
        "data: remove it (model.input_shape gives the model another shape)")
    assert habit(tmp_path, "    - {type: Flatten}\n    - {type: Dense, units: 10, input_dim: 784}\n") == (
        "6:32: model.layers[1].input_dim: unknown key 'input_dim' for Dense; a layer's input comes from the "
        "data: remove it (model.input_shape gives the model another shape)")


def test_keras_2_argument_names(tmp_path):
    assert habit(tmp_path, more="optimizer: {type: Adam, lr: 0.01}\ntraining: {nb_epoch: 3}\n") == (
        "3:25: optimizer.lr: unknown key 'lr' for Adam; 'lr' is the Keras 2 name: write 'learning_rate'\n"
        "4:12: training.nb_epoch: unknown key 'nb_epoch'; 'nb_epoch' is the Keras 2 name: write 'epochs'")
    # A required argument under its Keras 2 name is one error, not also "missing required key 'filters'".
    assert habit(tmp_path, "    - {type: Conv2D, nb_filter: 8, kernel_size: 3}\n    - {type: Flatten}\n"
                 "    - {type: Dense, units: 10}\n") == (
        "5:22: model.layers[0].nb_filter: unknown key 'nb_filter' for Conv2D; 'nb_filter' is the Keras 2 name: "
        "write 'filters'")
    assert habit(tmp_path, more="optimizer: {type: SGD, decay: 0.0001}\n") == (
        "3:24: optimizer.decay: unknown key 'decay' for SGD; Keras 3 optimizers have no 'decay': give learning_rate "
        "a schedule, e.g. {type: ExponentialDecay, initial_learning_rate: 0.001, decay_rate: 0.96}")


def test_keras_2_layer_names(tmp_path):
    assert habit(tmp_path, "    - {type: Convolution2D, filters: 8, kernel_size: 3}\n    - {type: MaxPool2D}\n"
                 "    - {type: Flatten}\n    - {type: Dense, units: 10}\n") == (
        "5:14: model.layers[0].type: unknown layer type 'Convolution2D'; 'Convolution2D' is the Keras 2 name or an "
        "alias of Conv2D: write type: Conv2D\n"
        "6:14: model.layers[1].type: unknown layer type 'MaxPool2D'; 'MaxPool2D' is the Keras 2 name or an alias of "
        "MaxPooling2D: write type: MaxPooling2D")


def test_the_keras_rename_tables_name_what_the_schema_has():
    layer_types = set(schema.layer_types())
    assert {new for new, _ in schema.KERAS_LAYER_NAMES.values()} <= layer_types
    assert not set(schema.KERAS_LAYER_NAMES) & layer_types  # an old name that is valid needs no hint
    arguments = set(json.dumps(schema.schema()).replace('"', " ").split())  # every word the schema holds
    assert set(schema.KERAS_ARGUMENT_NAMES.values()) <= arguments


def test_a_python_tuple_in_a_layer(tmp_path):
    assert habit(tmp_path, "    - {type: Conv2D, filters: 8, kernel_size: (3, 3)}\n    - {type: Flatten}\n"
                 "    - {type: Dense, units: 10}\n") == (
        "5:47: model.layers[0].kernel_size: (3, 3) is a Python tuple, which YAML reads as text; "
        "write a YAML list: [3, 3]")


# --- a bare optimizer name, as for the loss ---------------------------------------------------------------------

def test_a_bare_optimizer_name(tmp_path):
    path = write(tmp_path, "t.yaml", f"extends: {BASE}\nname: t\noptimizer: Adam\n" + LAYERS)
    assert load_spec(path).document["optimizer"] == "Adam"  # {type: Adam}: Keras's defaults, none of the base's
    assert habit(tmp_path, more="optimizer: adam\n") == \
        "3:12: optimizer: unknown optimizer 'adam'; did you mean 'Adam'?"


def test_keys_merge_onto_a_bare_name_of_the_base(tmp_path):
    write(tmp_path, "base.yaml", f"extends: {BASE}\nname: base\noptimizer: Adam\n" + LAYERS)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\noptimizer: {learning_rate: 0.01}\n"
                  "loss: {label_smoothing: 0.1}\n")
    doc = load_spec(child).document
    assert doc["optimizer"] == {"type": "Adam", "learning_rate": 0.01}
    assert doc["loss"] == {"type": "CategoricalCrossentropy", "label_smoothing": 0.1}  # seed004's bare loss
    other = write(tmp_path, "other.yaml", "extends: base.yaml\nname: other\noptimizer: SGD\n")
    assert load_spec(other).document["optimizer"] == "SGD"
