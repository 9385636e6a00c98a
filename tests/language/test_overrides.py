"""`--set` (and `xrun sweep --grid`) reach every key the schema defines: schedules, callbacks by index, the branch
of a oneOf that the value takes; a key under a single value is one line that says what to do."""

import pytest
from helpers import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import cli
from runner.errors import XrunError
from runner.language import schema
from runner.language.spec import load_spec
from runner.sweep.space import parse_grid_option

EXPERIMENTS = REPO / "experiments"
MODEL1 = EXPERIMENTS / "model1.yaml"          # Adadelta with learning_rate 1.0 and loss: CategoricalCrossentropy
FAST = EXPERIMENTS / "fast_mnist.yaml"        # Adam with a CosineDecay schedule
YOGI = EXPERIMENTS / "seed000_yogi.yaml"      # one callback: EarlyStopping, patience 8


def error_of(path, overrides) -> str:
    with pytest.raises(XrunError) as info:
        load_spec(path, overrides)
    return info.value.format()


def kinds(sub: dict) -> dict:
    """The part of a schema that says what a value is (its description may change)."""
    return {k: v for k, v in sub.items() if k in ("type", "minimum", "exclusiveMinimum", "const")}


# --- into schedules, callbacks and the branches of oneOf -----------------------------------------------

def test_a_key_of_a_learning_rate_schedule():
    spec = load_spec(FAST, ["optimizer.learning_rate.warmup_target=0.01"])
    assert spec.document["optimizer"]["learning_rate"] == {
        "type": "CosineDecay", "initial_learning_rate": 0.0002, "warmup_epochs": 1, "warmup_target": 0.01}
    assert str(spec.locate(("optimizer", "learning_rate", "warmup_target"))) == \
        "--set optimizer.learning_rate.warmup_target=0.01"


def test_a_bad_value_in_a_schedule_is_reported_at_the_override():
    assert error_of(FAST, ["optimizer.learning_rate.warmup_target=-1"]) == (
        "--set optimizer.learning_rate.warmup_target=-1: optimizer.learning_rate.warmup_target: -1 is out of range; "
        "must be > 0")
    assert error_of(FAST, ["optimizer.learning_rate.warmup_targt=0.1"]) == (
        "--set optimizer.learning_rate.warmup_targt=0.1: unknown key 'optimizer.learning_rate.warmup_targt'; "
        "did you mean 'warmup_target'?")


@pytest.mark.parametrize("key", ["callbacks.0.patience", "callbacks[0].patience"])
def test_a_callback_argument_by_index(key):
    spec = load_spec(YOGI, [f"{key}=3"])
    assert spec.document["callbacks"][0]["patience"] == 3
    assert spec.document["callbacks"][0]["restore_best_weights"] is True  # the rest is kept
    assert error_of(YOGI, [f"{key}=x"]) == \
        f"--set {key}=x: callbacks[0].patience: expected an integer, got string 'x'"


def test_an_index_into_a_list_that_is_not_there():
    assert error_of(MODEL1, ["callbacks.0.patience=3"]) == (
        "--set callbacks.0.patience=3: callbacks has no item [0]; it is not set: give the whole list, "
        "e.g. --set 'callbacks=[...]'")
    assert error_of(YOGI, ["callbacks.1.patience=3"]) == \
        "--set callbacks.1.patience=3: callbacks has no item [1]; it has 1 (numbered from 0)"


def test_an_item_of_a_pair():
    layer = load_spec(MODEL1, ["model.layers[0].kernel_size=[5, 5]", "model.layers[0].kernel_size[1]=3"]
                      ).document["model"]["layers"][0]
    assert layer["kernel_size"] == [5, 3]


def test_the_schema_of_a_path_follows_the_branch_the_value_takes():
    lr = {"optimizer": {"type": "Adam", "learning_rate": 0.01}}
    schedule = {"optimizer": {"type": "Adam", "learning_rate": {"type": "CosineDecay"}}}
    assert kinds(schema.property_schema(("optimizer", "learning_rate"), lr)) == {"type": "number",
                                                                                 "exclusiveMinimum": 0}
    assert kinds(schema.property_schema(("optimizer", "learning_rate", "warmup_target"), schedule)) == \
        {"type": "number", "exclusiveMinimum": 0}
    assert schema.property_schema(("optimizer", "learning_rate", "warmup_target"), lr) is None  # no type: no keys
    pair = {"model": {"layers": [{"type": "Conv2D", "kernel_size": [3, 3]}]}}
    assert kinds(schema.property_schema(("model", "layers", 0, "kernel_size", 1), pair)) == {"type": "integer",
                                                                                            "minimum": 1}
    auto = {"training": {"steps_per_execution": "auto"}}
    assert kinds(schema.property_schema(("training", "steps_per_execution"), auto)) == {"const": "auto"}


# --- a key under a single value ---------------------------------------------------------------------------

def test_a_key_under_a_number_says_how_to_make_it_a_schedule():
    assert error_of(MODEL1, ["optimizer.learning_rate.warmup_target=0.1"]) == (
        "--set optimizer.learning_rate.warmup_target=0.1: optimizer.learning_rate is 1.0, a single value, so it has "
        "no key 'warmup_target'; make it a mapping first: --set optimizer.learning_rate.type=ExponentialDecay "
        "(or CosineDecay, PiecewiseConstantDecay), then set its keys")


def test_setting_the_type_of_a_number_makes_it_a_schedule():
    spec = load_spec(MODEL1, ["optimizer.learning_rate.type=CosineDecay",
                              "optimizer.learning_rate.initial_learning_rate=0.1"])
    assert spec.document["optimizer"]["learning_rate"] == {"type": "CosineDecay", "initial_learning_rate": 0.1}
    # What is missing is reported at the override that made the mapping, not at the number it replaced.
    assert error_of(MODEL1, ["optimizer.learning_rate.type=CosineDecay"]) == (
        "--set optimizer.learning_rate.type=CosineDecay: optimizer.learning_rate: missing required key "
        "'initial_learning_rate'; add 'initial_learning_rate:' here")


def test_an_item_under_a_number():
    assert error_of(MODEL1, ["model.layers[0].kernel_size[1]=3"]) == (
        "--set model.layers[0].kernel_size[1]=3: model.layers[0].kernel_size is 5, a single value, so it has no "
        "item [1]; set the whole value: --set 'model.layers[0].kernel_size=[...]'")


def test_a_bare_name_takes_keys_as_its_mapping():
    # `optimizer: Adam` is {type: Adam}, so a key under it extends that mapping (this crashed with a TypeError).
    doc = load_spec(MODEL1, ["optimizer=Adam", "optimizer.learning_rate=0.01"]).document
    assert doc["optimizer"] == {"type": "Adam", "learning_rate": 0.01}
    doc = load_spec(MODEL1, ["loss.label_smoothing=0.1"]).document
    assert doc["loss"] == {"type": "CategoricalCrossentropy", "label_smoothing": 0.1}
    assert error_of(MODEL1, ["loss.label_smothing=0.1"]) == (
        "--set loss.label_smothing=0.1: unknown key 'loss.label_smothing'; did you mean 'label_smoothing'?")


def test_a_bare_name_that_is_not_one_is_a_single_value():
    assert error_of(MODEL1, ["optimizer=adam", "optimizer.learning_rate=0.01"]) == (
        "--set optimizer.learning_rate=0.01: optimizer is 'adam', a single value, so it has no key 'learning_rate'; "
        "make it a mapping first: --set optimizer.type=SGD (or Adam, AdamW, Adamax, Nadam, RMSprop, Adadelta, "
        "Adagrad, Lion, Yogi), then set its keys")


def test_the_scalar_then_key_crash_is_one_line(capsys):
    assert cli.main(["validate", str(MODEL1), "--set", "optimizer.learning_rate=0.01",
                     "--set", "optimizer.learning_rate.decay_rate=0.9"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "--set optimizer.learning_rate.decay_rate=0.9: optimizer.learning_rate is 0.01, a single value, so it has "
        "no key 'decay_rate'; make it a mapping first: --set optimizer.learning_rate.type=ExponentialDecay "
        "(or CosineDecay, PiecewiseConstantDecay), then set its keys"]
    assert cli.main(["validate", str(MODEL1), "--set", "optimizer=Adam",
                     "--set", "optimizer.learning_rate=0.01"]) == 0


# --- Keras habits on the command line ---------------------------------------------------------------------

@pytest.mark.parametrize("override, expected", [
    ("optimizer.lr=0.1", "unknown key 'optimizer.lr'; 'lr' is the Keras 2 name: write 'learning_rate'"),
    ("training.nb_epoch=3", "unknown key 'training.nb_epoch'; 'nb_epoch' is the Keras 2 name: write 'epochs'"),
    ("model.layers[0].input_shape=[28, 28, 1]",
     "unknown key 'model.layers[0].input_shape'; a layer's input comes from the data: remove it "
     "(model.input_shape gives the model another shape)"),
    ("model.layers[0].kernel_size=(3, 3)",
     "(3, 3) is a Python tuple, which YAML reads as text; write a YAML list: model.layers[0].kernel_size=[3, 3]"),
], ids=["lr", "nb_epoch", "input_shape", "tuple"])
def test_keras_habits_in_overrides(override, expected):
    assert error_of(MODEL1, [override]) == f"--set {override}: {expected}"


def test_text_that_looks_like_a_tuple_stays_text_where_text_is_wanted():
    assert load_spec(MODEL1, ["description=(3, 3)"]).document["description"] == "(3, 3)"


# --- the same keys in `xrun sweep --grid` -------------------------------------------------------------------

def test_grid_keys_reach_schedules_and_callbacks():
    assert parse_grid_option("optimizer.learning_rate.warmup_target=0.01,0.002") == \
        ("optimizer.learning_rate.warmup_target", [0.01, 0.002])
    assert parse_grid_option("callbacks.0.patience=2,4") == ("callbacks.0.patience", [2, 4])
    # Each variant is loaded as its `--set` texts.
    assert load_spec(YOGI, ["callbacks.0.patience=4"]).document["callbacks"][0]["patience"] == 4


def test_a_grid_of_tuples_is_refused_whole():
    with pytest.raises(XrunError) as info:
        parse_grid_option("model.layers[0].kernel_size=(3,3),(5,5)")
    assert info.value.format() == ("--grid model.layers[0].kernel_size=(3,3),(5,5): (3,3) is a Python tuple, "
                                   "which YAML reads as text; write a YAML list: [3, 3]")
    assert parse_grid_option("model.layers[0].kernel_size=[3,3],[5,5]") == \
        ("model.layers[0].kernel_size", [[3, 3], [5, 5]])


# --- fuzzing: any sequence of overrides ends in a spec or one XrunError, never a traceback ----------------------

# Each example sets a value, then something under it (the crash that fuzzing found: a scalar, then a key).
_PARENTS = ["optimizer", "optimizer.learning_rate", "loss", "callbacks", "callbacks.0", "model.layers[0]",
            "model.layers[0].kernel_size", "model.input_shape", "training", "training.epochs", "name", "sweep.grid"]
_CHILDREN = ["type", "learning_rate", "warmup_target", "patience", "label_smoothing", "epochs", "[0]", "[1]", "x"]
_VALUES = ["Adam", "adam", "0.01", "3", "-1", "[3, 3]", "(3, 3)", "{type: CosineDecay}", "{}", "[]", "null", "x",
           "{type: EarlyStopping, patience: 2}", "[{type: TerminateOnNaN}]", "CosineDecay", "true", "''"]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.sampled_from(_PARENTS), st.sampled_from(_VALUES), st.lists(st.sampled_from(_CHILDREN), min_size=1,
       max_size=2), st.sampled_from(_VALUES))
def test_any_overrides_end_in_a_spec_or_one_error(parent, first, children, second):
    key = parent + "".join(c if c.startswith("[") else "." + c for c in children)
    try:
        load_spec(YOGI, [f"{parent}={first}", f"{key}={second}"])
    except XrunError as exc:
        assert exc.format().startswith("--set ") or exc.format().startswith(str(YOGI))
