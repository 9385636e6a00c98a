"""runner.training.metrics: each class's recall, on sparse and one-hot labels; which metrics a run compiles."""

import numpy as np

from runner.training.settings import import_tensorflow

import_tensorflow()

from runner.training.metrics import ClassRecall, metric_name  # noqa: E402

PREDICTED = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
LABELS = np.array([0, 1, 1, 2, 1])  # argmax predictions: 0, 1, 0, 2, 0


def recall(class_id: int, labels) -> float:
    metric = ClassRecall(class_id)
    metric.update_state(labels, PREDICTED)
    return float(metric.result())


def test_recall_of_each_class_on_sparse_and_one_hot_labels():
    assert [recall(c, LABELS) for c in range(3)] == [1.0, np.float32(1 / 3), 1.0]
    one_hot = np.eye(3, dtype="float32")[LABELS]
    assert [recall(c, one_hot) for c in range(3)] == [1.0, np.float32(1 / 3), 1.0]
    assert recall(1, LABELS[:, None]) == np.float32(1 / 3)  # labels as a column


def test_a_class_without_examples_has_recall_zero_and_state_resets():
    metric = ClassRecall(2, name="recall_eel")
    metric.update_state(np.array([0, 1]), PREDICTED[:2])
    assert float(metric.result()) == 0.0 and metric.name == "recall_eel"
    metric.update_state(np.array([2]), PREDICTED[3:4])
    assert float(metric.result()) == 1.0
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_class_names_become_metric_names_mlflow_takes():
    assert [metric_name(n) for n in ("T-shirt/top", "ankle boot", "ß", "")] == ["T-shirt/top", "ankle_boot", "ß", "_"]
