"""Multi-label scores, thresholds and splits (runner.training.multilabel) against a hand computation, and Keras's
epoch metrics agreeing with them."""

import math

import numpy as np
import pytest

from runner.errors import XrunError
from runner.training import multilabel
from runner.training.splits import class_counts, held_out

NAMES = ("a", "b", "c")
# Four images, three labels. At 0.5 the predictions are [1,0,0], [1,1,0], [0,1,0], [0,0,1]:
#   a: y 1,0,1,0  predicted 1,1,0,0  -> tp 1, fp 1, fn 1: precision 1/2, recall 1/2, F1 1/2
#   b: y 0,1,1,0  predicted 0,1,1,0  -> tp 2, fp 0, fn 0: F1 1
#   c: y 1,0,0,1  predicted 0,0,0,1  -> tp 1, fp 0, fn 1: precision 1, recall 1/2, F1 2/3
# micro F1 = 2*4 / (2*4 + 1 + 2) = 8/11; macro F1 = (1/2 + 1 + 2/3) / 3 = 13/18.
# AUC (positives above negatives, of 4 pairs): a: 0.9>0.6, 0.9>0.1, 0.3<0.6, 0.3>0.1 -> 3/4; b and c: 1.
Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], np.uint8)
P = np.array([[0.9, 0.2, 0.4], [0.6, 0.7, 0.1], [0.3, 0.8, 0.2], [0.1, 0.4, 0.7]], np.float32)


def test_scores_at_one_half_are_the_hand_computed_ones():
    found = multilabel.scores(Y, P, NAMES)
    assert found.f1_micro == pytest.approx(8 / 11)
    assert found.f1_macro == pytest.approx(13 / 18)
    assert [c["f1"] for c in found.per_class] == pytest.approx([1 / 2, 1, 2 / 3])
    assert [(c["precision"], c["recall"], c["support"]) for c in found.per_class] == [(0.5, 0.5, 2), (1, 1, 2),
                                                                                     (1, 0.5, 2)]
    assert [c["auc"] for c in found.per_class] == [0.75, 1.0, 1.0]
    assert found.auc_macro == pytest.approx(11 / 12)
    assert found.accuracy == 9 / 12          # label decisions right: 2 + 2 + 2 + 3
    assert found.exact_match == 1 / 4        # only the last image has its whole set right
    # Binary cross-entropy, averaged over the 12 decisions: log p for a present label, log(1 - p) for an absent one.
    logs = 3 * math.log(0.9) + 3 * math.log(0.8) + 2 * math.log(0.4) + 2 * math.log(0.7) + math.log(0.3) \
        + math.log(0.6)
    assert found.loss == pytest.approx(-logs / 12, rel=1e-6)
    assert found.matrix[0].tolist() == [[1, 1], [1, 1]]   # a: [[tn, fp], [fn, tp]]
    assert found.matrix[2].tolist() == [[2, 0], [1, 1]]


def test_thresholds_apply_per_label():
    limits = multilabel.thresholds(["a=0.25", "c=0.35"], NAMES)
    assert limits.tolist() == [0.25, 0.5, 0.35]
    assert multilabel.decide(P, limits).tolist() == [[1, 0, 1], [1, 1, 0], [1, 1, 0], [0, 0, 1]]
    found = multilabel.scores(Y, P, NAMES, limits)
    # a: predicted 1,1,1,0 -> tp 2, fp 1, fn 0: F1 4/5; b as before; c: predicted 1,0,0,1 -> all right.
    assert [c["f1"] for c in found.per_class] == pytest.approx([4 / 5, 1, 1])
    assert found.exact_match == 3 / 4


def test_a_bare_threshold_sets_every_label_and_later_texts_win():
    assert multilabel.thresholds(["0.3", "b=0.9"], NAMES).tolist() == [0.3, 0.9, 0.3]
    assert multilabel.thresholds(["b=0.9", "0.3"], NAMES).tolist() == [0.3, 0.3, 0.3]
    assert multilabel.thresholds([], NAMES).tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("text, message", [
    ("d=0.3", "--threshold d=0.3: the model has no label 'd'"),
    ("a=1.5", "--threshold a=1.5: expected a probability between 0 and 1"),
    ("half", "--threshold half: expected a probability between 0 and 1"),
])
def test_bad_thresholds_are_refused(text, message):
    with pytest.raises(XrunError, match=message):
        multilabel.thresholds([text], NAMES)


def test_a_label_without_positives_has_no_auc_and_is_left_out_of_the_macro_auc():
    y = Y.copy()
    y[:, 0] = 0
    found = multilabel.scores(y, P, NAMES)
    assert math.isnan(found.per_class[0]["auc"]) and found.auc_macro == 1.0
    assert "test_auc.a" not in multilabel.test_metrics(found) and multilabel.test_metrics(found)["test_auc"] == 1.0


def test_test_metrics_and_the_per_label_csv():
    found = multilabel.scores(Y, P, NAMES)
    logged = multilabel.test_metrics(found)
    assert sorted(logged) == ["test_auc", "test_auc.a", "test_auc.b", "test_auc.c", "test_exact_match",
                              "test_f1.a", "test_f1.b", "test_f1.c", "test_f1_macro", "test_f1_micro"]
    assert logged["test_f1.c"] == pytest.approx(2 / 3)
    assert multilabel.per_label_csv(found).splitlines()[:2] == ["label,precision,recall,f1,auc,support",
                                                                "a,0.500000,0.500000,0.500000,0.750000,2"]


def test_splits_of_multi_label_data_are_seeded_row_draws_and_counts_are_per_label():
    y = np.array([[1, 0]] * 7 + [[0, 1]] * 3, np.uint8)
    out = held_out(y, 0.2, seed=0)
    assert out.sum() == 2 and np.array_equal(out, held_out(y, 0.2, seed=0))
    assert np.array_equal(out, multilabel.held_out_rows(y, 0.2, 0))
    assert not np.array_equal(out, held_out(y, 0.2, seed=1)) or not np.array_equal(out, held_out(y, 0.2, seed=2))
    assert class_counts(y, 2) == [7, 3]
    assert class_counts(Y, 3) == [2, 2, 2]
    assert multilabel.held_out_rows(np.zeros((2, 3)), 0.9, 0).sum() == 1  # never all of them


def test_keras_epoch_metrics_agree_with_the_hand_computation():
    """What each epoch logs (runner.training.metrics.multi_label, accuracy as BinaryAccuracy) and the loss."""
    import keras

    from runner.training.metrics import multi_label

    found = {m.name: m for m in multi_label()}
    for metric in found.values():
        metric.update_state(Y.astype("float32"), P)
    assert float(found["f1_micro"].result()) == pytest.approx(8 / 11, abs=1e-6)
    assert float(found["f1_macro"].result()) == pytest.approx(13 / 18, abs=1e-6)
    assert float(found["auc"].result()) == pytest.approx(11 / 12, abs=0.02)  # Keras interpolates over 200 steps
    accuracy = keras.metrics.BinaryAccuracy()
    accuracy.update_state(Y.astype("float32"), P)
    assert float(accuracy.result()) == 0.75
    loss = keras.losses.BinaryCrossentropy()(Y.astype("float32"), P)
    assert float(loss) == pytest.approx(multilabel.scores(Y, P, NAMES).loss, rel=1e-5)


def _arrays(tmp_path, y, **data):
    from runner.language.data_facts import settings

    x = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    return settings({"source": "arrays", "path": str(tmp_path / "d.npz"), "multi_label": True, **data})


def test_arrays_with_multi_label_take_a_0_1_matrix_and_name_its_columns(tmp_path):
    from runner.training.sources import load_arrays

    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]])
    data = load_arrays(_arrays(tmp_path, y), lambda *a, **k: None, None, 0)
    assert data.class_names == ("0", "1", "2") and data.y_train.dtype == np.uint8
    assert np.array_equal(data.y_train, y) and np.array_equal(data.y_test, y[:2])
    named = load_arrays(_arrays(tmp_path, y, class_names=["cat", "dog", "owl"]), lambda *a, **k: None, None, 0)
    assert named.class_names == ("cat", "dog", "owl")
    with pytest.raises(XrunError, match=r"d.npz: y_train has 3 label columns but there are 2 class names"):
        load_arrays(_arrays(tmp_path, y, class_names=["cat", "dog"]), lambda *a, **k: None, None, 0)
    with pytest.raises(XrunError, match=r"y_train has shape \[6\]; multi-label data \(data.multi_label\) needs a 0/1"):
        load_arrays(_arrays(tmp_path, np.arange(6)), lambda *a, **k: None, None, 0)
