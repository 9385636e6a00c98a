"""The one map from the names a YAML file may use to the Keras classes they stand for.

Plain dicts, looked up with `lookup` (which suggests near misses); the schema lists the same names, and a test
keeps the two in step.
"""

from __future__ import annotations

import keras

from runner.errors import XrunError, did_you_mean
from runner.language.schema import REFUSED_LAYERS
from runner.model.yogi import Yogi

L = keras.layers

LAYERS = {
    "Conv2D": L.Conv2D, "SeparableConv2D": L.SeparableConv2D, "DepthwiseConv2D": L.DepthwiseConv2D,
    "Conv2DTranspose": L.Conv2DTranspose,
    "MaxPooling2D": L.MaxPooling2D, "AveragePooling2D": L.AveragePooling2D,
    "GlobalAveragePooling2D": L.GlobalAveragePooling2D, "GlobalMaxPooling2D": L.GlobalMaxPooling2D,
    "BatchNormalization": L.BatchNormalization, "LayerNormalization": L.LayerNormalization,
    "Dropout": L.Dropout, "SpatialDropout2D": L.SpatialDropout2D, "GaussianNoise": L.GaussianNoise,
    "Flatten": L.Flatten, "Reshape": L.Reshape, "ZeroPadding2D": L.ZeroPadding2D, "Rescaling": L.Rescaling,
    "Dense": L.Dense, "Activation": L.Activation,
    "ELU": L.ELU, "ReLU": L.ReLU, "LeakyReLU": L.LeakyReLU, "PReLU": L.PReLU, "Softmax": L.Softmax,
    "Concatenate": L.Concatenate, "Add": L.Add, "Multiply": L.Multiply, "Average": L.Average,
    "Maximum": L.Maximum,
}

# `KerasLayer` reaches any other public keras.layers class by its class name, as Keras's own
# deserialisation does; classes that run or load code are left out, since a YAML file never does either.
_NOT_FROM_YAML = set(REFUSED_LAYERS)  # validation refuses them with the reason; this keeps them out for good
KERAS_LAYERS = {name: cls for name, cls in vars(L).items()
                if isinstance(cls, type) and issubclass(cls, L.Layer) and name not in _NOT_FROM_YAML}

OPTIMIZERS = {
    "SGD": keras.optimizers.SGD, "Adam": keras.optimizers.Adam, "AdamW": keras.optimizers.AdamW,
    "Adamax": keras.optimizers.Adamax, "Nadam": keras.optimizers.Nadam, "RMSprop": keras.optimizers.RMSprop,
    "Adadelta": keras.optimizers.Adadelta, "Adagrad": keras.optimizers.Adagrad, "Lion": keras.optimizers.Lion,
    "Yogi": Yogi,
}

LOSSES = {
    "CategoricalCrossentropy": keras.losses.CategoricalCrossentropy,
    "SparseCategoricalCrossentropy": keras.losses.SparseCategoricalCrossentropy,
    "CategoricalFocalCrossentropy": keras.losses.CategoricalFocalCrossentropy,
    "KLDivergence": keras.losses.KLDivergence,
    "MeanSquaredError": keras.losses.MeanSquaredError,
    "CategoricalHinge": keras.losses.CategoricalHinge,
}
# Losses that take class indices; every other loss above takes one-hot targets.
SPARSE_LOSSES = {"SparseCategoricalCrossentropy"}

CALLBACKS = {
    "EarlyStopping": keras.callbacks.EarlyStopping,
    "ReduceLROnPlateau": keras.callbacks.ReduceLROnPlateau,
    "ModelCheckpoint": keras.callbacks.ModelCheckpoint,
    "TerminateOnNaN": keras.callbacks.TerminateOnNaN,
    "CSVLogger": keras.callbacks.CSVLogger,
}

SCHEDULES = {
    "ExponentialDecay": keras.optimizers.schedules.ExponentialDecay,
    "CosineDecay": keras.optimizers.schedules.CosineDecay,
    "PiecewiseConstantDecay": keras.optimizers.schedules.PiecewiseConstantDecay,
}


def lookup(table: dict, name: str, what: str, **where):
    """`table[name]`, or an XrunError that names the near miss."""
    try:
        return table[name]
    except KeyError:
        hint = did_you_mean(name, table) or f"see the Keras documentation for keras.{what}s"
        raise XrunError(f"unknown {what} '{name}'", hint=hint, **where) from None


def regularizer(spec: dict) -> keras.regularizers.Regularizer:
    return keras.regularizers.L1L2(l1=spec.get("l1", 0.0), l2=spec.get("l2", 0.0))


# Layer arguments whose YAML form is data and whose Keras form is an object.
ARG_BUILDERS = {f"{w}_regularizer": regularizer for w in ("kernel", "bias", "depthwise", "pointwise")}
