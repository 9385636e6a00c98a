"""Multi-label data in NumPy (no TensorFlow): its seeded splits, per-label scores at thresholds, and predictions.

Labels are a 0/1 matrix, a row per image and a column per label; a model gives one sigmoid probability per label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from runner.errors import XrunError, did_you_mean

DEFAULT_THRESHOLD = 0.5
# Said once at the start of a run whose validation split xrun draws: stratifying by a set of labels has no one answer.
SPLIT_NOTE = ("xrun: note: multi-label data: the validation split (and a test split xrun draws) is drawn at random, "
              "seeded by data.split_seed, not stratified by class")


def is_multi_label(y) -> bool:
    """Labels as a matrix (a row of 0/1 per image) rather than one class number per image."""
    return np.ndim(y) == 2


def held_out_rows(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A mask of `fraction` of the rows (rounded half up, at least one, never all), drawn with `seed`."""
    n = len(y)
    count = min(n - 1, max(1, int(n * fraction + 0.5)))
    out = np.zeros(n, bool)
    out[np.random.default_rng(seed).permutation(n)[:count]] = True
    return out


def thresholds(given: list[str] | tuple[str, ...], names: list[str] | tuple[str, ...]) -> np.ndarray:
    """One threshold per label from `--threshold` texts: `0.3` sets every label, `cat=0.3` one label (later
    texts win); the rest keep 0.5."""
    out = np.full(len(names), DEFAULT_THRESHOLD)
    for text in given:
        label, _, value = text.rpartition("=")
        number = _probability(value, text)
        if not label:
            out[:] = number
        elif label in names:
            out[list(names).index(label)] = number
        else:
            raise XrunError(f"--threshold {text}: the model has no label '{label}'",
                            hint=did_you_mean(label, names) or f"its labels are {', '.join(names[:10])}")
    return out


def _probability(value: str, text: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 1:
        raise XrunError(f"--threshold {text}: expected a probability between 0 and 1",
                        hint="write --threshold 0.3 (every label) or --threshold LABEL=0.3 (one label)")
    return number


def decide(probabilities: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """0/1 per label: a label is predicted where its probability reaches its threshold."""
    return (np.asarray(probabilities) >= np.reshape(limits, (1, -1))).astype(np.int64)


@dataclass
class Scores:
    """Scores of multi-label predictions: the micro and macro F1 over labels, the exact ROC AUC (macro over labels
    with both outcomes), and each label's counts and scores."""

    loss: float
    accuracy: float           # the share of (image, label) decisions that are right (Keras's binary accuracy)
    exact_match: float        # the share of images whose whole label set is right
    f1_micro: float
    f1_macro: float
    auc_macro: float
    per_class: list[dict]     # {class, precision, recall, f1, auc, support}, in label order
    matrix: np.ndarray        # (labels, 2, 2): [[true neg, false pos], [false neg, true pos]] per label

    @property
    def macro_f1(self) -> float:
        """As single-label scores name it (runner.trained.evaluate.Scores)."""
        return self.f1_macro


EPSILON = 1e-7  # Keras's: probabilities clipped to [eps, 1 - eps] before the log, as its cross-entropy does


def scores(labels: np.ndarray, probabilities: np.ndarray, names, limits: np.ndarray | None = None) -> Scores:
    """The numbers from 0/1 labels and probabilities, each label decided at its threshold (default 0.5). A
    precision or recall whose denominator is 0 is 0, as is F1 when both are (scikit-learn's zero_division=0)."""
    y = np.asarray(labels, np.int64)
    p = np.asarray(probabilities, np.float64)
    predicted = decide(p, np.full(y.shape[1], DEFAULT_THRESHOLD) if limits is None else limits)
    tp, fp, fn = _counts(y, predicted)
    per_class = [_label_scores(str(name), tp[i], fp[i], fn[i], _auc(y[:, i], p[:, i]))
                 for i, name in enumerate(names)]
    aucs = [c["auc"] for c in per_class if not np.isnan(c["auc"])]
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    matrix = np.stack([np.array([[len(y) - t - f - n, f], [n, t]]) for t, f, n in zip(tp, fp, fn)])
    return Scores(loss, float(np.mean(predicted == y)), float(np.mean(np.all(predicted == y, axis=1))),
                  _f1(tp.sum(), fp.sum(), fn.sum()), float(np.mean([c["f1"] for c in per_class])),
                  float(np.mean(aucs)) if aucs else float("nan"), per_class, matrix)


def _counts(y: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives of each label."""
    return ((y == 1) & (predicted == 1)).sum(0), ((y == 0) & (predicted == 1)).sum(0), \
        ((y == 1) & (predicted == 0)).sum(0)


def _f1(tp, fp, fn) -> float:
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def _label_scores(name: str, tp, fp, fn, auc: float) -> dict:
    return {"class": name, "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else 0.0, "f1": _f1(tp, fp, fn), "auc": auc,
            "support": int(tp + fn)}


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """The ROC AUC of one label: the chance a positive scores above a negative, ties counting half
    (Mann-Whitney); NaN when the label has no positives or no negatives."""
    positives, negatives = p[y == 1], p[y == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    above = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(above / (len(positives) * len(negatives)))


def test_metrics(result: Scores) -> dict:
    """What a run logs of its test split: test_f1_micro, test_f1_macro, test_auc, test_exact_match, and each
    label's test_f1.LABEL and test_auc.LABEL (MLflow's characters only)."""
    out = {"test_f1_micro": result.f1_micro, "test_f1_macro": result.f1_macro, "test_auc": result.auc_macro,
           "test_exact_match": result.exact_match}
    for c in result.per_class:
        out[f"test_f1.{metric_name(c['class'])}"] = c["f1"]
        if not np.isnan(c["auc"]):
            out[f"test_auc.{metric_name(c['class'])}"] = c["auc"]
    return out


def metric_name(label: str) -> str:
    """A label as MLflow takes it in a metric name (runner.training.metrics.metric_name, without Keras)."""
    return re.sub(r"[^\w\-./]", "_", label) or "_"


def per_label_csv(result: Scores) -> str:
    lines = ["label,precision,recall,f1,auc,support"]
    lines += [f"{c['class']},{c['precision']:.6f},{c['recall']:.6f},{c['f1']:.6f},{c['auc']:.6f},{c['support']}"
              for c in result.per_class]
    return "\n".join(lines) + "\n"
