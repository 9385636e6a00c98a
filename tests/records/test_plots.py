"""Run figures: exact confusion counts, panel/line/label structure, image grids, misclassified picks, PNG output."""

import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from helpers import REPO
from matplotlib.figure import Figure

from runner.records import plots

HISTORY = {
    "loss": [1.0, 0.6, 0.4],
    "accuracy": [0.5, 0.7, 0.8],
    "val_loss": [0.9, 0.7, 0.6],
    "val_accuracy": [0.55, 0.65, 0.7],
    "learning_rate": [1e-3, 1e-3, 5e-4],
}


def figure_texts(fig: Figure) -> str:
    """All free text of a figure and its axes, for message figures."""
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
    return " ".join(texts)


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


# --- confusion matrix -------------------------------------------------------------------------------------------

def test_confusion_matrix_exact_counts():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 1])
    fig, matrix = plots.confusion_matrix(y_true, y_pred, ["cat", "dog", "bird"])
    expected = np.array([[2, 1, 0],
                         [0, 2, 1],
                         [1, 0, 3]])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype.kind == "i"
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "bird"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "bird"]
    # One annotation per cell, row-major, holding the count.
    assert [t.get_text() for t in ax.texts] == [str(v) for v in expected.ravel()]
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)


def test_confusion_matrix_accepts_scores_and_keeps_unseen_classes():
    y_true = np.eye(4)[[0, 1, 1]]  # one-hot
    scores = np.array([[0.9, 0.1, 0, 0], [0.2, 0.1, 0.7, 0], [0.1, 0.8, 0.1, 0]])
    _, matrix = plots.confusion_matrix(y_true, scores, list("abcd"))
    np.testing.assert_array_equal(matrix, [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        plots.confusion_matrix(np.array([0, 3]), np.array([0, 1]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="length"):
        plots.confusion_matrix(np.array([0, 1]), np.array([0]), ["a", "b"])


# --- learning curves --------------------------------------------------------------------------------------------

def test_learning_curves_two_panels_train_and_val():
    fig = plots.learning_curves(HISTORY, title="run 1")
    assert len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train", "val"]
    assert [line.get_label() for line in acc_ax.lines] == ["train", "val"]
    train_loss, val_loss = loss_ax.lines
    np.testing.assert_array_equal(train_loss.get_xdata(), [1, 2, 3])  # epochs are 1-based
    np.testing.assert_array_equal(train_loss.get_ydata(), HISTORY["loss"])
    np.testing.assert_array_equal(val_loss.get_ydata(), HISTORY["val_loss"])
    np.testing.assert_array_equal(acc_ax.lines[1].get_ydata(), HISTORY["val_accuracy"])
    assert loss_ax.get_legend() is not None and acc_ax.get_legend() is not None
    assert fig.get_suptitle() == "run 1"


def test_learning_curves_without_validation_only_train():
    fig = plots.learning_curves({"loss": [0.5, 0.4], "sparse_categorical_accuracy": [0.8, 0.9]})
    assert len(fig.axes) == 2
    assert [[line.get_label() for line in ax.lines] for ax in fig.axes] == [["train"], ["train"]]
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), [0.8, 0.9])


@pytest.mark.parametrize("history", [{}, {"loss": [], "val_loss": []}])
def test_learning_curves_empty_history(history):
    fig = plots.learning_curves(history)
    assert not fig.axes
    assert "no epochs completed" in figure_texts(fig)


# --- overlay ----------------------------------------------------------------------------------------------------

def test_overlay_three_runs():
    runs = [
        ("bs=32", HISTORY),
        ("bs=64", {k: [v * 1.1 for v in vals] for k, vals in HISTORY.items()}),
        ("bs=128", {"loss": [1.2, 0.8], "accuracy": [0.4, 0.6]}),  # no validation data, shorter run
    ]
    fig = plots.overlay_curves(runs, title="batch size")
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["train loss", "val loss", "train accuracy", "val accuracy"]
    panels = {ax.get_title(): ax for ax in fig.axes}
    for name in ("train loss", "train accuracy"):
        assert [line.get_label() for line in panels[name].lines] == ["bs=32", "bs=64", "bs=128"]
    for name in ("val loss", "val accuracy"):
        assert [line.get_label() for line in panels[name].lines] == ["bs=32", "bs=64"]
    # Same colour for a run in every panel, different colours between runs.
    for index in range(2):
        colours = {tuple(panels[n].lines[index].get_color()) for n in panels}
        assert len(colours) == 1
    first = [tuple(line.get_color()) for line in panels["train loss"].lines]
    assert len(set(first)) == 3
    np.testing.assert_array_equal(panels["train loss"].lines[2].get_xdata(), [1, 2])
    # One figure legend listing each run once.
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["bs=32", "bs=64", "bs=128"]
    assert fig.get_suptitle() == "batch size"


def test_overlay_no_runs():
    assert "no runs" in figure_texts(plots.overlay_curves([]))


# --- image grids ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,dtype", [((11, 8, 8), np.float32), ((11, 8, 8, 1), np.float64),
                                         ((11, 8, 8, 3), np.uint8)])
def test_image_grid_one_axes_per_image(shape, dtype):
    rng = np.random.default_rng(0)
    images = (rng.random(shape) * (255 if dtype == np.uint8 else 7) - (0 if dtype == np.uint8 else 3)).astype(dtype)
    titles = [f"img {i}" for i in range(shape[0])]
    fig = plots.image_grid(images, titles, columns=4, title="grid")
    axes = image_axes(fig)
    assert len(fig.axes) == len(axes) == 11
    assert [ax.get_title() for ax in axes] == titles
    for ax in axes:
        assert not ax.get_xticks().size and not ax.get_yticks().size
        data = ax.images[0].get_array()
        assert data.shape == shape[1:3] + ((3,) if shape[-1] == 3 else ())
        assert 0.0 <= data.min() and data.max() <= 1.0  # every range is brought into [0, 1]
    assert axes[0].get_subplotspec().get_gridspec().get_geometry() == (3, 4)
    if len(shape) == 3:
        assert axes[0].images[0].get_cmap().name == "gray"


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="titles"):
        plots.image_grid(np.zeros((3, 4, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        plots.image_grid(np.zeros((3, 4, 4, 2)), [])


def test_misclassified_picks_exact_indices():
    y_true = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    y_pred = np.array([0, 2, 2, 1, 1, 2, 0, 0])  # wrong at 1, 4, 6, 7
    images = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((8, 5, 5), np.float32) / 7
    names = ["zero", "one", "two"]
    fig = plots.misclassified(images, y_true, y_pred, names)
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == [
        "true one / pred two", "true zero / pred one", "true two / pred zero", "true one / pred zero"]
    # The images shown are those at the misclassified indices (each image is constant = index / 7).
    assert [round(float(ax.images[0].get_array().mean()) * 7) for ax in axes] == [1, 4, 6, 7]

    limited = plots.misclassified(images, y_true, y_pred, names, limit=2)
    assert [ax.get_title() for ax in image_axes(limited)] == ["true one / pred two", "true zero / pred one"]


def test_misclassified_none():
    fig = plots.misclassified(np.zeros((3, 4, 4)), np.array([0, 1, 1]), np.array([0, 1, 1]), ["a", "b"])
    assert not fig.axes
    assert "no misclassified" in figure_texts(fig)


def test_augmented_samples_pairs_in_columns():
    originals = np.zeros((20, 6, 6, 1), np.float32)
    augmented = np.ones((20, 6, 6, 1), np.float32)
    fig = plots.augmented_samples(originals, augmented, limit=10)  # 8 + a short band of 2
    axes = image_axes(fig)
    assert len(axes) == 20
    position = {ax.get_title(): ax.get_subplotspec() for ax in axes}
    for i in range(10):
        top, bottom = position[f"original {i}"], position[f"augmented {i}"]
        assert top.colspan == bottom.colspan  # same column ...
        assert bottom.rowspan.start == top.rowspan.start + 1  # ... augmented directly below
    with pytest.raises(ValueError):
        plots.augmented_samples(originals, augmented[:3])


def test_augmented_samples_share_one_scale_per_pair():
    original = np.zeros((1, 2, 2), np.float32)
    original[0, 0, 0] = 0.5
    augmented = original * 3  # leaves [0, 1], as noise can: the pair is rescaled together, by 1 / 1.5
    axes = image_axes(plots.augmented_samples(original, augmented))
    shown = {ax.get_title(): ax.images[0].get_array() for ax in axes}
    assert shown["original 0"][0, 0] == pytest.approx(1 / 3)
    assert shown["augmented 0"][0, 0] == pytest.approx(1.0)


# --- output -----------------------------------------------------------------------------------------------------

def test_save_png_writes_readable_png(tmp_path):
    fig = plots.learning_curves(HISTORY)
    path = plots.save_png(fig, tmp_path / "sub" / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(path)
    width, height = fig.get_size_inches() * 100  # dpi 100
    assert pixels.shape[:2] == (round(height), round(width))


def test_import_does_not_pull_tensorflow_or_pyplot():
    code = "import sys, runner.records.plots; print(sorted(m for m in ('tensorflow', 'matplotlib.pyplot') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
