"""Augmentation in real runs: every option, mixup and cutmix included, on non-square RGB data, repeatable."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import client, experiment, history, only_run, store_uri, train, write_experiment

AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1, "height_shift_range": 2, "zoom_range": 0.1,
                "horizontal_flip": True, "brightness_range": [0.8, 1.2], "channel_shift_range": 20,
                "random_crop": {"padding": 4}, "gaussian_noise": 0.02, "random_erasing": {"probability": 0.3},
                "mixup": {}, "cutmix": {}}


def colour_arrays(folder: Path) -> None:
    """24x40 RGB uint8 images of 3 classes, class k bright in channel k: learnable in a few epochs."""
    rng = np.random.default_rng(0)

    def part(n: int):
        y = np.arange(n) % 3
        mean = np.full((n, 1, 1, 3), 60.0)
        mean[np.arange(n), 0, 0, y] += 120
        x = np.clip(rng.normal(mean, 25, (n, 24, 40, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    (x_train, y_train), (x_test, y_test) = part(240), part(90)
    np.savez(folder / "colours.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


@pytest.mark.slow
def test_every_augmentation_trains_on_rgb_non_square_data_and_repeats_exactly(tmp_path):
    colour_arrays(tmp_path)
    doc = experiment(
        data={"source": "arrays", "path": "colours.npz", "validation": "test"},
        augmentation=AUGMENTATION,
        model={"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                          {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 3, "activation": "softmax"}]},
        training={"epochs": 4, "batch_size": 32, "seed": 11})
    losses = []
    for attempt in ("a", "b"):
        folder = tmp_path / attempt
        folder.mkdir()
        (folder / "colours.npz").symlink_to(tmp_path / "colours.npz")
        path = write_experiment(folder, doc)
        uri = store_uri(folder)
        result = train(path, uri=uri)
        run = only_run(uri)
        assert result.status == "FINISHED"
        losses.append(history(uri, run.info.run_id, "loss"))
    params = client(uri).get_run(run.info.run_id).data.params
    assert {k: params[k] for k in ("augmentation.mixup.alpha", "augmentation.cutmix.alpha",
                                   "augmentation.random_crop.padding", "augmentation.brightness_range",
                                   "augmentation.channel_shift_range")} == {
        "augmentation.mixup.alpha": "0.2", "augmentation.cutmix.alpha": "1", "augmentation.random_crop.padding": "4",
        "augmentation.brightness_range": "[0.8, 1.2]", "augmentation.channel_shift_range": "20"}
    assert len(losses[0]) == 4 and losses[0] == losses[1]  # the same seed, the same augmented batches
    assert result.test_accuracy > 0.9  # labels stay with their (mixed) images: the colours are still learnt
