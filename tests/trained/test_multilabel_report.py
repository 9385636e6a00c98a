"""What `xrun predict` and `xrun evaluate` say of a multi-label model (runner.trained.multilabel_report)."""

import numpy as np
import pytest

from runner.trained import multilabel_report as report
from runner.training import multilabel

NAMES = ["a", "b", "c"]
FILES = ["one.png", "two.png"]
P = np.array([[0.9, 0.35, 0.6], [0.2, 0.45, 0.1]], np.float32)


def test_predictions_list_the_labels_at_or_above_their_thresholds_likeliest_first():
    limits = multilabel.thresholds(["0.5", "b=0.3"], NAMES)
    rows = report.prediction_rows(FILES, P, NAMES, limits)
    assert rows == [{"file": "one.png", "labels": "a:0.9000 c:0.6000 b:0.3500", "p_a": 0.9, "p_b": 0.35, "p_c": 0.6},
                    {"file": "two.png", "labels": "b:0.4500", "p_a": 0.2, "p_b": 0.45, "p_c": 0.1}]
    rows = report.prediction_rows(FILES, P, NAMES, multilabel.thresholds([], NAMES))
    assert [r["labels"] for r in rows] == ["a:0.9000 c:0.6000", "-"]


def test_prediction_json_says_each_label_s_threshold():
    (first, _) = report.prediction_json(FILES, P, NAMES, multilabel.thresholds(["c=0.7"], NAMES))
    assert [(x["label"], round(x["probability"], 4)) for x in first["labels"]] == [("a", 0.9)]
    assert first["thresholds"] == {"a": 0.5, "b": 0.5, "c": pytest.approx(0.7)}


def test_evaluation_metrics_and_report():
    y = np.array([[1, 0, 1], [0, 1, 0]], np.uint8)
    found = multilabel.scores(y, P, NAMES)
    # a: tp 1; b: fn 1 (0.45 < 0.5); c: tp 1 -> micro F1 = 2*2 / (2*2 + 0 + 1) = 4/5; macro (1 + 0 + 1) / 3.
    values = report.metrics(found)
    assert values["f1_micro"] == pytest.approx(4 / 5) and values["f1_macro"] == pytest.approx(2 / 3)
    assert (values["f1.a"], values["f1.b"], values["recall.b"], values["auc.b"]) == (1.0, 0.0, 0.0, 1.0)
    assert values["exact_match"] == 0.5 and values["accuracy"] == 5 / 6
    # loss: -(2 log 0.9 + log 0.65 + log 0.6 + log 0.8 + log 0.45) / 6 = 0.3623
    text = report.report("m (run 1234abcd)", "the run's test split", 2, found)
    assert text.splitlines()[0] == ("m (run 1234abcd) on the run's test split (2 images, multi-label, threshold 0.5): "
                                    "loss 0.3623, accuracy 0.8333, exact match 0.5000, F1 micro 0.8000, "
                                    "F1 macro 0.6667, AUC 1.0000")
    assert text.splitlines()[4] == "b         0.0000  0.0000  0.0000  1.0000        1"


def test_evaluate_scores_multi_label_labels_with_the_multi_label_scores():
    from runner.trained import evaluate

    y = np.array([[1, 0, 1], [0, 1, 0]], np.uint8)
    found = evaluate.scores(y, P, NAMES)
    assert isinstance(found, multilabel.Scores) and evaluate.metrics(found) == report.metrics(found)
