"""The one map from the names a YAML file may use to the Keras classes they stand for.

Derived, as Keras builds its ALL_OBJECTS_DICT from its modules: the schema says which names an experiment may use,
Keras's public classes (and xrun's own, such as Yogi) say what each name builds. Plain dicts, looked up with
`lookup` (which suggests near misses).
"""

from __future__ import annotations

import keras

from runner.errors import XrunError, did_you_mean
from runner.language import schema
from runner.model.yogi import Yogi

L = keras.layers
_DEFS = schema.schema()["$defs"]
_OWN = {"Yogi": Yogi}  # xrun's own classes, beside Keras's


def _classes(module, base: type) -> dict[str, type]:
    """The public classes of a Keras module that derive from `base`, by name."""
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, base) and not name.startswith("_")}


def _named(names, classes: dict[str, type], what: str) -> dict[str, type]:
    """The class of each name the schema lists; a name with none is a bug in the schema, not in a user's file."""
    missing = [n for n in names if n not in classes]
    if missing:
        raise ImportError(f"the schema lists {what} that Keras does not have: {', '.join(missing)}")
    return {n: classes[n] for n in names}


# `KerasLayer` reaches any other public keras.layers class by its class name, as Keras's own deserialisation
# does; the classes the schema refuses (they run or load code, or are no layers) are left out for good.
KERAS_LAYERS = {name: cls for name, cls in _classes(L, L.Layer).items() if name not in schema.REFUSED_LAYERS}
# The layer types that name what they build in `class_name`: any keras.layers class, a keras.applications network.
BY_CLASS_NAME = ("KerasLayer", "Application")
LAYERS = _named([t for t in schema.layer_types() if t not in BY_CLASS_NAME], KERAS_LAYERS, "layers")
# keras.applications' networks (MobileNetV2, ResNet50, ...): the functions that build them, by name.
APPLICATIONS = {name: fn for name, fn in vars(keras.applications).items() if name[:1].isupper() and callable(fn)}
OPTIMIZERS = _named(_DEFS["optimizer"]["properties"]["type"]["enum"],
                    {**_classes(keras.optimizers, keras.optimizers.Optimizer), **_OWN}, "optimizers")
LOSSES = _named(_DEFS["loss"]["then"]["enum"], _classes(keras.losses, keras.losses.Loss), "losses")
CALLBACKS = _named(_DEFS["callback"]["properties"]["type"]["enum"],
                   _classes(keras.callbacks, keras.callbacks.Callback), "callbacks")
SCHEDULES = _named(_DEFS["schedule"]["properties"]["type"]["enum"],
                   _classes(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
                   "learning-rate schedules")
# Losses that take class indices; every other loss above takes one-hot targets.
SPARSE_LOSSES = {name for name in LOSSES if name.startswith("Sparse")}


def _merge_layers() -> set[str]:
    """Every Keras layer that merges several inputs: those of the class the schema's `x-merge` layers share."""
    merging = [LAYERS[name] for name, sub in _DEFS["layers"].items() if sub.get("x-merge")]
    base = next(c for c in merging[0].__mro__ if all(issubclass(k, c) for k in merging))
    return {name for name, cls in KERAS_LAYERS.items() if issubclass(cls, base) and base is not L.Layer}


MERGE_LAYERS = _merge_layers()
# Layers that slide a window over the image, by the argument that sizes it: the schema's `x-window`.
WINDOWS = {name: sub["x-window"] for name, sub in _DEFS["layers"].items() if "x-window" in sub}


def lookup(table: dict, name: str, what: str, **where):
    """`table[name]`, or an XrunError that names the near miss."""
    try:
        return table[name]
    except KeyError:
        hint = did_you_mean(name, table) or f"see the Keras documentation for keras.{what}s"
        raise XrunError(f"unknown {what} '{name}'", hint=hint, **where) from None


def regularizer(spec: dict) -> keras.regularizers.Regularizer:
    return keras.regularizers.L1L2(l1=spec.get("l1", 0.0), l2=spec.get("l2", 0.0))


INITIALIZERS = _named(_DEFS["initializer_object"]["properties"]["type"]["enum"],
                      _classes(keras.initializers, keras.initializers.Initializer), "initializers")


def initializer(spec):
    """A Keras name (`he_normal`) as it is; {type: HeNormal, seed: 1} as that class with its arguments."""
    if not isinstance(spec, dict):
        return spec
    return INITIALIZERS[spec["type"]](**{k: v for k, v in spec.items() if k != "type"})


# Every layer argument the schema types as an initializer (kernel_, bias_, gamma_initializer, ...).
_INITIALIZER_ARGS = {key for sub in _DEFS["layers"].values() for key, prop in sub.get("properties", {}).items()
                     if isinstance(prop, dict) and prop.get("$ref") == "#/$defs/initializer"}
# Layer arguments whose YAML form is data and whose Keras form is an object.
ARG_BUILDERS = {f"{w}_regularizer": regularizer for w in ("kernel", "bias", "depthwise", "pointwise")}
ARG_BUILDERS |= {key: initializer for key in _INITIALIZER_ARGS}
