"""The metrics a run compiles: the YAML's by name, and each class's recall (for imbalanced data) as metrics of their
own, so every epoch logs how the rare classes do."""

from __future__ import annotations

import re

import keras
from keras import ops

from runner.language.config import Config
from runner.language.labels import EPOCH_METRICS

CLASS_RECALL = "class_recall"  # the schema's metrics name for one ClassRecall per class


class ClassRecall(keras.metrics.Metric):
    """Of the examples of class `class_id`, the share predicted as that class (argmax): sparse or one-hot labels."""

    def __init__(self, class_id: int, name: str | None = None, **kwargs):
        super().__init__(name=name or f"recall_{class_id}", **kwargs)
        self.class_id = class_id
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        one_hot = len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] not in (None, 1)
        labels = ops.argmax(y_true, axis=-1) if one_hot else ops.reshape(y_true, [-1])
        of_class = ops.cast(ops.equal(ops.cast(labels, "int32"), self.class_id), "float32")
        right = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), self.class_id), "float32")
        self.hits.assign_add(ops.sum(of_class * right))
        self.total.assign_add(ops.sum(of_class))

    def result(self):
        return ops.divide_no_nan(self.hits, self.total)

    def reset_state(self):
        self.hits.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id}


def wants_class_recall(config: Config) -> bool:
    training = config.training
    return CLASS_RECALL in config.metrics or training.class_weight is not None or training.sampling == "balanced"


def named(config: Config) -> list:
    """The YAML's metrics Keras knows by name; for multi-label data, `accuracy` per label decision and the
    multi-label metrics (runner.training.metrics.multi_label)."""
    listed = [m for m in config.metrics if m != CLASS_RECALL]
    if not config.facts.multi_label:
        return listed
    return [*(keras.metrics.BinaryAccuracy(name=m) if m == "accuracy" else m for m in listed), *multi_label()]


def multi_label() -> list:
    """Each epoch of a multi-label run: F1 over all label decisions (micro) and averaged over labels (macro), at
    threshold 0.5, and the ROC AUC averaged over labels (Keras's, interpolated over 200 thresholds)."""
    return [_MULTI_LABEL[name](name) for name in EPOCH_METRICS]


# The metrics of runner.language.labels.EPOCH_METRICS (the names stop_at may watch), by name.
_MULTI_LABEL = {"f1_micro": lambda name: keras.metrics.F1Score(average="micro", threshold=0.5, name=name),
                "f1_macro": lambda name: keras.metrics.F1Score(average="macro", threshold=0.5, name=name),
                "auc": lambda name: keras.metrics.AUC(multi_label=True, name=name)}


def metrics(config: Config, class_names: tuple[str, ...]) -> list:
    """What `model.compile` gets: the YAML's named metrics, and a ClassRecall per class where recall is wanted."""
    if not wants_class_recall(config):
        return named(config)
    return [*named(config), *(ClassRecall(i, f"recall_{metric_name(n)}") for i, n in enumerate(class_names))]


def metric_name(class_name: str) -> str:
    """A class name as MLflow takes it in a metric name (letters, digits, _ - . and /)."""
    return re.sub(r"[^\w\-./]", "_", class_name) or "_"


CUSTOM_OBJECTS = {"ClassRecall": ClassRecall}  # for loading a checkpoint whose compiled metrics include them
