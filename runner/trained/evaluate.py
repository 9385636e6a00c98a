"""Evaluate a trained model on labelled images: loss, accuracy, per-class precision/recall/F1, confusion matrix,
recorded as an MLflow evaluation run nested under the training run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.errors import XrunError, did_you_mean
from runner.language.datasets import DATASETS
from runner.records import names, plots, store
from runner.text import dims
from runner.trained import data as trained_data
from runner.trained import multilabel_report
from runner.trained.use import IMAGE_SUFFIXES, Model, reader
from runner.training import multilabel, tta
from runner.training.data import load_dataset

EPSILON = 1e-7  # Keras's: probabilities are clipped to [eps, 1 - eps] before the log, as its cross-entropy does


@dataclass
class Labelled:
    """Images with their true classes, and words for where they came from."""

    pixels: np.ndarray   # uint8, (N, *image_shape)
    labels: np.ndarray   # int class indices
    name: str            # e.g. "mnist test split (first 256)" or the folder
    digest: str = ""     # the dataset's fingerprint, when it is a built-in one
    notes: list[str] = field(default_factory=list)   # for stderr: e.g. how many images were resized


@dataclass
class Scores:
    loss: float
    accuracy: float
    per_class: list[dict]     # {class, precision, recall, f1, support}, in class order
    matrix: np.ndarray        # counts, rows true, columns predicted

    @property
    def macro_f1(self) -> float:
        return float(np.mean([c["f1"] for c in self.per_class]))


def scores(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> Scores:
    """The numbers, from probabilities and true labels. A precision or recall whose denominator is 0 (a class
    never predicted, or absent) is 0, as is F1 when both are; so are scikit-learn's with zero_division=0.
    Multi-label data (a 0/1 row per image) gets runner.training.multilabel's scores instead."""
    if multilabel.is_multi_label(labels):
        return multilabel.scores(labels, probabilities, class_names)
    n = len(class_names)
    predicted = probabilities.argmax(axis=1)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    p = np.clip(probabilities / probabilities.sum(axis=1, keepdims=True), EPSILON, 1 - EPSILON)
    loss = float(-np.mean(np.log(p[np.arange(len(labels)), labels])))
    per_class = [_class_scores(name, matrix, i) for i, name in enumerate(class_names)]
    return Scores(loss, float(np.trace(matrix) / max(len(labels), 1)), per_class, matrix)


def _class_scores(name: str, matrix: np.ndarray, i: int) -> dict:
    true_positive, predicted, actual = matrix[i, i], matrix[:, i].sum(), matrix[i, :].sum()
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"class": name, "precision": float(precision), "recall": float(recall), "f1": float(f1),
            "support": int(actual)}


# --- data -----------------------------------------------------------------------------------------------

def labelled_data(model: Model, data: str | None, limit: int | None, data_dir: str | None,
                  uri: str | None = None) -> Labelled:
    """`--data`: a built-in dataset's test split; the test split of an .npz, a CSV, a folder of split folders or a
    YAML file's data section; a folder with one sub-folder per class; or (none given) the test split the run itself
    was scored on, whatever its source."""
    if data is None:
        return _fitted(_run_test_split(model, limit, data_dir, uri), model)
    if data in DATASETS:
        return _fitted(_test_split(data, limit, data_dir), model)
    params = model.logged.params if model.logged else {}
    given = trained_data.given_test_split(data, trained_data.run_image_options(params), data_dir)
    if given is not None:
        return _fitted(_labelled(given, limit), model)
    if Path(data).is_dir():
        return _class_folders(Path(data), model, limit)
    hint = did_you_mean(data, DATASETS) or ("give a folder with one sub-folder per class, an .npz, a CSV, an "
                                            f"experiment YAML, or {' or '.join(DATASETS)}")
    raise XrunError("no such folder, file or dataset", where=data, hint=hint)


def _run_test_split(model: Model, limit: int | None, data_dir: str | None, uri: str | None) -> Labelled:
    if model.logged is None or not model.logged.run_id:
        raise XrunError(f"{model.source} has no training run to take a test split from",
                        hint="give --data: a folder with one sub-folder per class, an .npz, a CSV, an experiment "
                             "YAML, or " + " or ".join(DATASETS))
    return _labelled(trained_data.run_test_split(model.logged.run_id, uri, data_dir), limit)


def _labelled(found: tuple, limit: int | None) -> Labelled:
    images, labels, name, fingerprint, notes = found
    if limit and limit < len(labels):  # --limit: fewer than the split (or than the run's own data.limit) gave
        name = name.split(", first ")[0] + f", first {limit}"
    return Labelled(images[:limit], labels[:limit], name, fingerprint, notes=notes)


def _test_split(name: str, limit: int | None, data_dir: str | None, whose: str = "") -> Labelled:
    dataset = load_dataset(name, data_dir)
    x, y = dataset.x_test[:limit], dataset.y_test[:limit]
    first = f", first {len(x)}" if limit else ""
    return Labelled(x, y.astype(np.int64), f"{whose}{name} test split{first}", dataset.fingerprint)


def _class_folders(folder: Path, model: Model, limit: int | None) -> Labelled:
    """FOLDER/CLASS/*.png, CLASS a class name of the model (`7`, or `Trouser`)."""
    index = {name: i for i, name in enumerate(model.class_names)}
    pixels, labels, images = [], [], reader(model)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in index:
            raise XrunError(f"'{sub.name}' is not one of the model's classes", where=str(sub),
                            hint=did_you_mean(sub.name, index) or "name each sub-folder after a class: "
                                 + ", ".join(model.class_names))
        for path in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            pixels.append(images.read(path))
            labels.append(index[sub.name])
    if not pixels:
        raise XrunError("no class sub-folders with PNG or JPEG images", where=str(folder),
                        hint="put each class's images in a sub-folder named after it, e.g. 7/a.png")
    return Labelled(np.stack(pixels)[:limit], np.array(labels[:limit], dtype=np.int64), str(folder),
                    notes=images.notes())


def _fitted(data: Labelled, model: Model) -> Labelled:
    """The data's images in the model's input shape (a channel axis of 1 added or dropped); other images refused."""
    shape, given = tuple(model.image_shape), data.pixels.shape[1:]
    if given[:2] == shape[:2] and int(np.prod(given)) == int(np.prod(shape)):
        data.pixels = data.pixels.reshape((len(data.pixels), *shape))
        return data
    raise XrunError(f"{model.label} takes images of shape {dims(shape)}; {data.name} holds images of shape "
                    f"{dims(given)}", hint="give --data images like those it was trained on: a folder with one "
                                           "sub-folder per class")


# --- the evaluation -------------------------------------------------------------------------------------

def evaluate(model: Model, data: Labelled, batch_size: int = 256) -> Scores:
    probabilities = model.keras.predict(data.pixels, batch_size=batch_size, verbose=0)
    return scores(data.labels, probabilities, model.class_names)


# --- test-time augmentation (--tta) -------------------------------------------------------------------------

TTA_KEYS = ("horizontal_flip", "vertical_flip", "width_shift_range", "height_shift_range", "fill_mode", "cval")


def run_augmentation(model: Model) -> dict:
    """The flips, shifts and fill of the augmentation the model's run trained with (its params), for --tta."""
    if model.logged is None or not model.logged.run_id:
        raise XrunError(f"{model.source} has no training run to take its augmentation from",
                        hint="give a run id or a models:/ URI of a run trained with augmentation flips or shifts")
    if model.multi_label:
        raise XrunError(f"{model.label} is multi-label: --tta scores one class per image", hint="drop --tta")
    params = model.logged.params
    found = {k: _param(params[f"augmentation.{k}"]) for k in TTA_KEYS if f"augmentation.{k}" in params}
    if not any(found.get(k) for k in TTA_KEYS[:4]):
        raise XrunError(f"{model.label} was trained without augmentation flips or shifts: --tta has nothing to "
                        "average over", hint="evaluate without --tta")
    return found


def _param(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def evaluate_tta(model: Model, data: Labelled, augmentation: dict, batch_size: int = 256) -> tuple[list, Scores]:
    """The scores of the class probabilities averaged over the views (runner.training.tta) of each image."""
    chosen = tta.views(augmentation, *model.image_shape[:2])
    probabilities = tta.averaged(lambda x: model.keras.predict(x, batch_size=batch_size, verbose=0), data.pixels,
                                 chosen, *tta.fill(augmentation))
    return chosen, scores(data.labels, probabilities, model.class_names)


def tta_metrics(result: Scores) -> dict:
    """An evaluation's overall metrics under test-time augmentation: loss_tta, accuracy_tta, macro_f1_tta."""
    return {names.TTA_METRIC.format(metric=k): v for k, v in metrics(result).items() if "." not in k}


def tta_line(views: list, result: Scores) -> str:
    return (f"test-time augmentation, averaged over {len(views)} views ({', '.join(v.name for v in views)}): "
            f"loss {result.loss:.4f}, accuracy {result.accuracy:.4f}, macro F1 {result.macro_f1:.4f}\n")


def matrix_csv(matrix: np.ndarray, names: list[str]) -> str:
    rows = [",".join(["true\\pred", *names])]
    rows += [",".join([name, *map(str, row)]) for name, row in zip(names, matrix.tolist())]
    return "\n".join(rows) + "\n"


def per_class_csv(result: Scores) -> str:
    lines = ["class,precision,recall,f1,support"]
    lines += [f"{c['class']},{c['precision']:.6f},{c['recall']:.6f},{c['f1']:.6f},{c['support']}"
              for c in result.per_class]
    return "\n".join(lines) + "\n"


def metrics(result: Scores) -> dict:
    """The MLflow metrics of an evaluation: overall, then `precision.CLASS` and so on for each class."""
    if isinstance(result, multilabel.Scores):
        return multilabel_report.metrics(result)
    out = {"loss": result.loss, "accuracy": result.accuracy, "macro_f1": result.macro_f1}
    for c in result.per_class:
        key = re.sub(r"[^\w\-. /:]", "_", c["class"])  # the characters MLflow allows in a metric name
        out.update({f"precision.{key}": c["precision"], f"recall.{key}": c["recall"], f"f1.{key}": c["f1"]})
    return out


def record(model: Model, data: Labelled, result: Scores, uri: str | None,  # noqa: PLR0913
           tta_result: tuple | None = None) -> str:
    """An evaluation run nested under the training run (same experiment), its metrics also attached to the logged
    model with the data's name; returns the evaluation run's id. `tta_result`: (views, scores) of --tta."""
    logged = model.logged
    views = {names.TTA: ", ".join(v.name for v in tta_result[0])} if tta_result else {}
    run = store.Run(store.tracking_uri(uri), logged.experiment,
                    names.EVALUATION_RUN_NAME.format(name=logged.run_name or logged.name),
                    f"{model.label} evaluated on {data.name}", parent_run_id=logged.run_id,
                    tags={names.EVALUATION_OF: logged.run_id, names.EVALUATION_DATA: data.name,
                          names.MODEL_URI: logged.model_uri, **views})
    try:
        values = {**metrics(result), **(tta_metrics(tta_result[1]) if tta_result else {})}
        run.log_metrics(values)
        if logged.model_id:
            run.link_metrics(logged.model_id, list(values), dataset_name=data.name[:500], dataset_digest=data.digest)
        _log_files(run, model, result)
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")
    return run.run_id


def _log_files(run, model: Model, result: Scores) -> None:
    if isinstance(result, multilabel.Scores):
        return multilabel_report.log_files(run, result)
    figure, _ = plots.confusion_matrix(*_pairs(result.matrix), model.class_names)
    run.log_figure(figure, names.EVALUATION_MATRIX_PLOT)
    run.log_text(matrix_csv(result.matrix, model.class_names), names.EVALUATION_MATRIX_CSV)
    run.log_text(per_class_csv(result), names.EVALUATION_PER_CLASS)


def _pairs(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) labels that count up to `matrix`, for the plot that draws from labels."""
    true, predicted = np.nonzero(matrix)
    counts = matrix[true, predicted]
    return np.repeat(true, counts), np.repeat(predicted, counts)


def report(model: Model, data: Labelled, result: Scores) -> str:
    """What `xrun evaluate` prints: the overall numbers, a per-class table, the confusion matrix."""
    if isinstance(result, multilabel.Scores):
        return multilabel_report.report(model.label, data.name, len(data.labels), result)
    lines = [f"{model.label} on {data.name} ({len(data.labels)} images): loss {result.loss:.4f}, "
             f"accuracy {result.accuracy:.4f}, macro F1 {result.macro_f1:.4f}", ""]
    width = max(len("class"), *(len(c["class"]) for c in result.per_class))
    lines.append(f"{'class':<{width}}  precision  recall      f1  support")
    lines += [f"{c['class']:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  {c['support']:7d}"
              for c in result.per_class]
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    cell = max(len(str(result.matrix.max())), *(len(n) for n in model.class_names))
    lines.append(" " * width + "  " + " ".join(f"{n:>{cell}}" for n in model.class_names))
    lines += [f"{name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row)
              for name, row in zip(model.class_names, result.matrix.tolist())]
    return "\n".join(lines) + "\n"
