"""A resumed run continues exactly as the uninterrupted run would have: the data order, augmentation, dropout and
optimizer state at the epoch boundary are those of the run that was never stopped."""

from __future__ import annotations

import pytest
from helpers import experiment, history, interrupt_at, store_uri, train, write_experiment

pytestmark = pytest.mark.slow  # trains models

EXACT_DOC = experiment(
    data={"dataset": "mnist", "limit": 256, "validation": "split", "validation_split": 0.25},
    model={"layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.3},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]},
    augmentation={"rotation_range": 10, "zoom_range": 0.1},
    training={"epochs": 4, "batch_size": 64, "seed": 0})




@pytest.mark.parametrize("stopped_in", [2, 3])
def test_a_resumed_run_has_the_losses_of_the_uninterrupted_run(tmp_path, stopped_in):
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = train(write_experiment(tmp_path / "whole", EXACT_DOC))
    cut_path = write_experiment(tmp_path / "cut", EXACT_DOC)
    with pytest.raises(KeyboardInterrupt):
        train(cut_path, extra_callbacks=[interrupt_at(stopped_in)])
    uri = store_uri(tmp_path / "cut")
    resumed = train(cut_path, resume=whole_run_id(uri))
    for key in ("loss", "accuracy", "val_loss"):
        assert history(uri, resumed.run_id, key) == pytest.approx(whole.history[key], abs=1e-6), key
    assert resumed.test_loss == pytest.approx(whole.test_loss, abs=1e-6)


def whole_run_id(uri: str) -> str:
    from helpers import only_run

    return only_run(uri).info.run_id
