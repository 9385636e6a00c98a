"""What `xrun evaluate` and `xrun predict` say of a multi-label model: its scores per label, and the labels each
image has at its thresholds."""

from __future__ import annotations

import re

import numpy as np

from runner.records import names
from runner.training import multilabel


def metrics(result: multilabel.Scores) -> dict:
    """An evaluation's MLflow metrics: overall, then `precision.LABEL`, `recall.LABEL`, `f1.LABEL`, `auc.LABEL`."""
    out = {"loss": result.loss, "accuracy": result.accuracy, "exact_match": result.exact_match,
           "f1_micro": result.f1_micro, "f1_macro": result.f1_macro, "auc": result.auc_macro}
    for c in result.per_class:
        key = re.sub(r"[^\w\-. /:]", "_", c["class"])  # the characters MLflow allows in a metric name
        out.update({f"{k}.{key}": c[k] for k in ("precision", "recall", "f1", "auc") if not np.isnan(c[k])})
    return {k: v for k, v in out.items() if not np.isnan(v)}


def report(label: str, data_name: str, images: int, result: multilabel.Scores) -> str:
    """The overall numbers, then a table of each label's precision, recall, F1, AUC and support."""
    lines = [f"{label} on {data_name} ({images} images, multi-label, threshold 0.5): loss {result.loss:.4f}, "
             f"accuracy {result.accuracy:.4f}, exact match {result.exact_match:.4f}, F1 micro {result.f1_micro:.4f}, "
             f"F1 macro {result.f1_macro:.4f}, AUC {result.auc_macro:.4f}", ""]
    width = max(len("label"), *(len(c["class"]) for c in result.per_class))
    lines.append(f"{'label':<{width}}  precision  recall      f1     auc  support")
    lines += [f"{c['class']:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  {c['auc']:6.4f}  "
              f"{c['support']:7d}" for c in result.per_class]
    return "\n".join(lines) + "\n"


def log_files(run, result: multilabel.Scores) -> None:
    run.log_text(multilabel.per_label_csv(result), names.EVALUATION_PER_CLASS)


# --- predict ----------------------------------------------------------------------------------------------

def prediction_rows(files: list[str], probabilities: np.ndarray, class_names: list[str],
                    limits: np.ndarray) -> list[dict]:
    """One row per image: its file, the labels at or above their thresholds with their probabilities (likeliest
    first), and each label's probability."""
    rows = []
    for name, p in zip(files, probabilities):
        found = [i for i in np.argsort(-p, kind="stable") if p[i] >= limits[i]]
        rows.append({"file": name, "labels": " ".join(f"{class_names[i]}:{p[i]:.4f}" for i in found) or "-",
                     **{f"p_{c}": round(float(v), 4) for c, v in zip(class_names, p)}})
    return rows


def prediction_json(files: list[str], probabilities: np.ndarray, class_names: list[str],
                    limits: np.ndarray) -> list[dict]:
    return [{"file": name, "labels": [{"label": class_names[i], "probability": float(p[i])}
                                      for i in np.argsort(-p, kind="stable") if p[i] >= limits[i]],
             "probabilities": {c: float(v) for c, v in zip(class_names, p)},
             "thresholds": {c: float(t) for c, t in zip(class_names, limits)}}
            for name, p in zip(files, probabilities)]
