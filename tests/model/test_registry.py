"""The schema and the registry name the same things, and every argument the schema allows is one Keras takes."""

import inspect

import pytest

from runner.errors import XrunError
from runner.language import schema
from runner.training.settings import import_tensorflow

import_tensorflow()  # quietly, before keras

import keras  # noqa: E402

from runner.model import registry  # noqa: E402
from runner.model.compiler import init_arguments  # noqa: E402

DEFS = schema.schema()["$defs"]
LAYER_BASE = {"type", "name", "inputs", "trainable"}


# The registry's tables are built from the schema's enums (so they cannot differ from them); what can go wrong is
# the schema disagreeing with itself, or naming something Keras cannot build as the schema describes it.

def test_each_layer_type_has_a_definition():
    assert set(DEFS["layers"]) == set(schema.layer_types())


def test_a_loss_by_name_and_by_mapping_are_the_same_losses():
    assert DEFS["loss"]["else"]["properties"]["type"]["enum"] == DEFS["loss"]["then"]["enum"]


@pytest.mark.parametrize("defs, table", [("optimizers", registry.OPTIMIZERS), ("losses", registry.LOSSES),
                                         ("initializers", registry.INITIALIZERS)])
def test_each_builds_from_the_schema_s_defaults_alone(defs, table):
    for name, sub in DEFS[defs].items():
        defaults = {k: p["default"] for k, p in sub.get("properties", {}).items()
                    if k != "type" and isinstance(p, dict) and "default" in p}
        assert set(sub.get("required", [])) <= {"type", *defaults}, name  # what a YAML must give
        assert isinstance(table[name](**defaults), table[name]), name


@pytest.mark.parametrize("defs, table", [("optimizers", registry.OPTIMIZERS), ("losses", registry.LOSSES),
                                         ("callbacks", registry.CALLBACKS), ("schedules", registry.SCHEDULES)])
def test_each_kind_has_a_definition_per_name(defs, table):
    assert set(DEFS[defs]) == set(table)


@pytest.mark.parametrize("name", DEFS["activation"]["enum"])
def test_activations_resolve(name):
    assert callable(keras.activations.get(name))


@pytest.mark.parametrize("name", DEFS["initializer_name"]["enum"])
def test_initializers_resolve(name):
    assert isinstance(keras.initializers.get(name), keras.initializers.Initializer)


def test_initializer_classes_and_their_arguments():
    assert set(DEFS["initializers"]) == set(registry.INITIALIZERS)
    for name, sub in DEFS["initializers"].items():
        assert set(sub["properties"]) <= set(inspect.signature(registry.INITIALIZERS[name].__init__).parameters), name


@pytest.mark.parametrize("type_name", sorted(set(DEFS["layers"]) - set(registry.BY_CLASS_NAME)))
def test_layer_properties_are_init_arguments(type_name):
    cls = registry.LAYERS[type_name]
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    allowed = init_arguments(cls)  # own, plus those handed to the base Layer (trainable, dtype, ...)
    assert own <= allowed
    properties = set(DEFS["layers"][type_name]["properties"]) - LAYER_BASE
    assert properties <= allowed, f"{type_name} has no argument(s) {sorted(properties - allowed)}"
    assert "trainable" in allowed


@pytest.mark.parametrize("defs, table", [("optimizers", registry.OPTIMIZERS), ("losses", registry.LOSSES),
                                         ("callbacks", registry.CALLBACKS)])
def test_other_properties_are_init_arguments(defs, table):
    for name, sub in DEFS[defs].items():
        properties = set(sub["properties"]) - {"type"}
        assert properties <= init_arguments(table[name]), name


def test_required_layer_arguments_are_properties():
    for name, sub in DEFS["layers"].items():
        assert set(sub.get("required", [])) <= set(sub["properties"]), name


def test_every_layer_regularizer_has_a_builder():
    for sub in DEFS["layers"].values():
        for key, prop in sub["properties"].items():
            if prop.get("$ref") == "#/$defs/regularizer":
                assert key in registry.ARG_BUILDERS


def test_keras_layer_reaches_other_classes_but_not_code():
    assert registry.KERAS_LAYERS["LayerNormalization"] is keras.layers.LayerNormalization
    assert registry.KERAS_LAYERS["UpSampling2D"] is keras.layers.UpSampling2D
    for refused in schema.REFUSED_LAYERS:
        assert refused not in registry.KERAS_LAYERS


def test_lookup_suggests_a_near_miss():
    assert registry.lookup(registry.OPTIMIZERS, "Adam", "optimizer") is keras.optimizers.Adam
    with pytest.raises(XrunError, match="^unknown optimizer 'adamw'") as info:
        registry.lookup(registry.OPTIMIZERS, "adamw", "optimizer")
    assert str(info.value) == "unknown optimizer 'adamw'; did you mean 'AdamW'?"


def test_a_schema_name_keras_lacks_is_a_bug_named_at_import():
    with pytest.raises(ImportError) as info:
        registry._named(["Adam", "Adamm"], registry._classes(keras.optimizers, keras.optimizers.Optimizer),
                        "optimizers")
    assert str(info.value) == "the schema lists optimizers that Keras does not have: Adamm"


def test_own_classes_join_keras_ones():
    assert registry.OPTIMIZERS["Yogi"].__name__ == "Yogi" and registry.OPTIMIZERS["SGD"] is keras.optimizers.SGD
    assert registry.SCHEDULES["CosineDecay"] is keras.optimizers.schedules.CosineDecay
    assert registry.SPARSE_LOSSES == {"SparseCategoricalCrossentropy"}


def test_windowed_layers_come_from_the_schemas_annotation():
    assert registry.WINDOWS == {"Conv2D": "kernel_size", "SeparableConv2D": "kernel_size",
                                "DepthwiseConv2D": "kernel_size", "MaxPooling2D": "pool_size",
                                "AveragePooling2D": "pool_size"}
    for name, key in registry.WINDOWS.items():
        assert key in DEFS["layers"][name]["properties"] and key in init_arguments(registry.LAYERS[name])


def test_merge_layers_are_the_schemas_and_every_keras_layer_of_their_kind():
    marked = {name for name, sub in DEFS["layers"].items() if sub.get("x-merge")}
    assert marked == {"Concatenate", "Add", "Multiply", "Average", "Maximum"}
    assert registry.MERGE_LAYERS == marked | {"Subtract", "Minimum", "Dot"}


def test_refused_layers_are_the_schemas_annotation_and_name_real_keras_classes():
    refused = DEFS["layers"]["KerasLayer"]["properties"]["class_name"]["x-refused"]
    assert set(refused) == {"Lambda", "TFSMLayer", "InputLayer", "Layer", "InputSpec"}
    assert all(isinstance(vars(keras.layers)[name], type) for name in refused)
