"""Figures for a training run (learning curves, confusion matrix, image grids) built on bare matplotlib Figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Figures are built with matplotlib.figure.Figure, never pyplot: pyplot keeps a global registry of open figures
# (leaking memory across runs and racing between threads) and may try to open a GUI backend. A bare Figure has an
# Agg-compatible canvas, is freed by the garbage collector, and mlflow.log_figure or save_png can write it.

# Keras names the accuracy history after the metric string given to compile(); the first key present wins.
_ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")
_OVERLAY_PANELS = (("loss", False, "train loss"), ("loss", True, "val loss"),
                   ("accuracy", False, "train accuracy"), ("accuracy", True, "val accuracy"))
_MAX_ANNOTATED_CLASSES = 30  # beyond this the per-cell numbers overlap and only the colours stay readable


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at 100 dpi (creating parent folders) and return the path; the figure stays usable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def _message_figure(message: str, title: str = "") -> Figure:
    """A small figure with no axes that only states `message`: callers can always log a figure, even an empty one."""
    fig = Figure(figsize=(5, 2.5))
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=12)
    if title:
        fig.suptitle(title)
    return fig


def _series(history: dict, metric: str, val: bool) -> np.ndarray | None:
    """The epoch values of `metric` ('loss' or 'accuracy'), train or val, as floats; None if absent or empty."""
    names = _ACCURACY_KEYS if metric == "accuracy" else (metric,)
    for name in names:
        values = history.get(f"val_{name}" if val else name)
        if values is not None and len(values) > 0:
            # dtype=float turns a None (an epoch without a value) into NaN, which leaves a gap in the line.
            return np.asarray(values, dtype=float)
    return None


def _plot_series(ax: Axes, values: np.ndarray, **style) -> None:
    """Plot one per-epoch series against 1-based epoch numbers, as Keras prints them."""
    ax.plot(np.arange(1, len(values) + 1), values, **style)


def _style_epoch_axes(ax: Axes, ylabel: str) -> None:
    """Label an epoch-indexed panel; integer ticks because a fractional epoch means nothing."""
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def learning_curves(history: dict[str, list[float]], title: str = "") -> Figure:
    """Loss and accuracy (train, and val where recorded) per epoch, from a keras `History.history` dict.

    Other keys (learning_rate, extra metrics) are ignored; an empty history gives a "no epochs completed" figure.
    """
    if not any(len(values) > 0 for values in history.values()):
        return _message_figure("no epochs completed", title)
    fig = Figure(figsize=(11, 4), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for val, style in ((False, dict(label="train", color="C0")), (True, dict(label="val", color="C1"))):
            values = _series(history, metric, val)
            if values is not None:
                _plot_series(ax, values, marker="." if len(values) < 30 else None, **style)
        _style_epoch_axes(ax, metric)
        ax.set_title(metric)
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    return fig


def _run_colours(count: int) -> list:
    """One distinct colour per run; tab10 while it suffices, then an evenly sampled continuous map."""
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, count)]


def overlay_curves(runs: list[tuple[str, dict[str, list[float]]]], title: str = "") -> Figure:
    """Overlay several runs' histories in 2x2 panels (train/val loss, train/val accuracy), one colour per run.

    `runs` holds (label, History.history) pairs; a run lacking a metric is simply absent from that panel.
    """
    if not runs:
        return _message_figure("no runs to compare", title)
    fig = Figure(figsize=(12, 8), layout="constrained")
    # Shared y within a row so train and val of the same metric are read on one scale.
    axes = fig.subplots(2, 2, sharey="row").ravel()
    legend = {}  # label -> first line drawn for it, so the figure legend lists each run once
    for (label, history), colour in zip(runs, _run_colours(len(runs))):
        for ax, (metric, val, _) in zip(axes, _OVERLAY_PANELS):
            values = _series(history, metric, val)
            if values is not None:
                _plot_series(ax, values, label=label, color=colour)
                legend.setdefault(label, ax.lines[-1])
    for ax, (metric, _, panel_title) in zip(axes, _OVERLAY_PANELS):
        _style_epoch_axes(ax, metric)
        ax.set_title(panel_title)
        if not ax.lines:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.legend(list(legend.values()), list(legend.keys()), loc="outside right center")
    if title:
        fig.suptitle(title)
    return fig


def _class_labels(y: np.ndarray) -> np.ndarray:
    """Integer class labels from labels, one-hot rows or per-class scores (as model.predict returns)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(-1).astype(np.int64)


def _count_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts[i, j] = how many samples of true class i were predicted as class j."""
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}: {y.min()}..{y.max()}")
    # Each (true, pred) pair becomes one flat cell index, so a single bincount counts every cell at once.
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _annotate_cells(ax: Axes, matrix: np.ndarray) -> None:
    """Write each count in its cell, white on dark cells so it stays legible against the colour map."""
    threshold = matrix.max() / 2 if matrix.size else 0
    fontsize = max(6, 12 - matrix.shape[0] // 3)
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=fontsize,
                color="white" if count > threshold else "black")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> tuple[Figure, np.ndarray]:
    """The confusion matrix (rows true, columns predicted, int counts) and an annotated heat map of it.

    y_true / y_pred may be integer labels or one-hot / score rows (arg-maxed); labels must lie in 0..len(names)-1.
    """
    n = len(class_names)
    matrix = _count_matrix(_class_labels(y_true), _class_labels(y_pred), n)
    side = min(4 + 0.45 * n, 30)  # grow with the class count so tick labels keep room, but stay loggable
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"confusion matrix ({matrix.sum()} samples, accuracy {accuracy:.2%})")
    if n <= _MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, matrix)
    return fig, matrix


def _to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any shape as floats in [0, 1] for imshow, one mapping for the whole array.

    uint8 is divided by 255; floats already in [0, 1] are kept so contrast stays comparable between images; any other
    range (standardised, 0..255 floats, noisy augmentations) is min-max scaled, since imshow would otherwise clip RGB
    and auto-scale grey inconsistently.
    """
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    pixels = pixels.astype(np.float32)
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    if low >= 0.0 and high <= 1.0:
        return pixels
    return (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)


def _check_images(images: np.ndarray) -> np.ndarray:
    """Validate an (N, H, W) or (N, H, W, 1|3|4) batch, accepting anything np.asarray takes (tf tensors too)."""
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, 1|3|4), got shape {images.shape}")
    return images


def _show_image(ax: Axes, image: np.ndarray, title: str) -> None:
    """Draw one image without ticks; fixed 0..1 limits so grey levels mean the same in every cell."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]  # imshow takes grey images only as (H, W)
    ax.imshow(_to_unit_range(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def image_grid(images: np.ndarray, titles: list[str], columns: int = 8, title: str = "") -> Figure:
    """All N images in a grid `columns` wide, each with its small title (grey map for single-channel), no ticks.

    `titles` must have one entry per image, or be empty for untitled images.
    """
    images = _check_images(images)
    count = len(images)
    if titles and len(titles) != count:
        raise ValueError(f"{len(titles)} titles for {count} images")
    if count == 0:
        return _message_figure("no images", title)
    cols = max(1, min(columns, count))
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows + (0.4 if title else 0)), layout="constrained")
    for index, image in enumerate(images):
        # Only N axes: no empty frames after the last image.
        _show_image(fig.add_subplot(rows, cols, index + 1), image, titles[index] if titles else "")
    if title:
        fig.suptitle(title)
    return fig


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                  limit: int = 32) -> Figure:
    """The first `limit` misclassified images, in dataset order, titled "true X / pred Y"; a note if there are none.

    y_true / y_pred may be integer labels or one-hot / score rows, as for confusion_matrix.
    """
    truth, predicted = _class_labels(y_true), _class_labels(y_pred)
    wrong = np.flatnonzero(truth != predicted)
    if wrong.size == 0:
        return _message_figure(f"no misclassified images (all {truth.size} correct)")
    shown = wrong[:limit]
    titles = [f"true {class_names[truth[i]]} / pred {class_names[predicted[i]]}" for i in shown]
    heading = f"misclassified: first {shown.size} of {wrong.size} ({wrong.size / truth.size:.2%} of {truth.size})"
    return image_grid(np.asarray(images[shown]), titles, title=heading)  # only these decoded (ImageFiles)


def augmented_samples(originals: np.ndarray, augmented: np.ndarray, limit: int = 16) -> Figure:
    """Up to `limit` (original, augmented) pairs, 8 per band: a row of originals with their augmentations below."""
    originals, augmented = _check_images(originals), _check_images(augmented)
    if len(originals) != len(augmented):
        raise ValueError(f"{len(originals)} originals but {len(augmented)} augmented images")
    count = min(limit, len(originals))
    if count == 0:
        return _message_figure("no images to compare", "augmentation samples")
    columns = min(8, count)
    rows = 2 * math.ceil(count / columns)
    fig = Figure(figsize=(1.6 * columns, 1.8 * rows + 0.4), layout="constrained")
    for i in range(count):
        # Explicit grid positions (not image_grid's running order) keep each pair in one column even when the
        # last band is short.
        band, col = divmod(i, columns)
        # One intensity mapping per pair: scaling each image alone would fake a contrast change (e.g. after noise).
        original, changed = _to_unit_range(np.stack([originals[i], augmented[i]]))
        top = 2 * band * columns + col + 1
        _show_image(fig.add_subplot(rows, columns, top), original, f"original {i}")
        _show_image(fig.add_subplot(rows, columns, top + columns), changed, f"augmented {i}")
    fig.suptitle("augmentation samples (original above, augmented below)")
    return fig
