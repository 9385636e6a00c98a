"""The layer table (runner/model/registry.py, read from the schema) builds a Keras layer for every layer type the
schema lists, from the arguments the schema requires."""

import pytest

from runner.language import schema
from runner.training.settings import import_tensorflow

import_tensorflow()  # quietly, before keras

import keras  # noqa: E402

from runner.model import registry  # noqa: E402

DEFS = schema.schema()["$defs"]
# A value of each kind of required argument; a kind not here fails the test, so a new one gets a value.
_BY_REF = {"#/$defs/int_or_pair": 3, "#/$defs/rate": 0.5, "#/$defs/activation": "relu"}
_BY_TYPE = {"integer": 2, "number": 0.5}


def _value(prop: dict):
    if "$ref" in prop:
        return _BY_REF[prop["$ref"]]
    if prop["type"] == "array":
        return [_value(prop["items"])] * prop.get("minItems", 1)
    return max(_BY_TYPE[prop["type"]], prop.get("minimum", 0))


def required_arguments(name: str) -> dict:
    sub = DEFS["layers"][name]
    return {key: _value(sub["properties"][key]) for key in sub.get("required", ())}


@pytest.mark.parametrize("name", sorted(set(schema.layer_types()) - set(registry.BY_CLASS_NAME)))
def test_each_schema_layer_builds_its_keras_layer(name):
    layer = registry.LAYERS[name](**required_arguments(name))
    assert isinstance(layer, keras.layers.Layer) and type(layer).__name__ == name


def test_the_table_has_a_layer_for_each_schema_layer_and_no_other():
    assert sorted(registry.LAYERS) == sorted(set(DEFS["layers"]) - set(registry.BY_CLASS_NAME))
    assert set(registry.BY_CLASS_NAME) <= set(DEFS["layers"])


def test_required_arguments_take_the_schema_s_values():
    assert required_arguments("Conv2D") == {"filters": 2, "kernel_size": 3}
    assert required_arguments("Reshape") == {"target_shape": [2]}
