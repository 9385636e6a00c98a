"""optimizer.use_ema: the weights are the hand-computed average, and the run validates, tests, checkpoints and
records the averaged model; a resumed run keeps the average as the uninterrupted run does."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import artifact_file, experiment, history, interrupt_at, only_run, store_uri, train, write_experiment

from runner.records import names
from runner.training import build

pytestmark = pytest.mark.slow  # trains models

EMA = {"type": "SGD", "learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.9}


class _RawWeights(keras.callbacks.Callback):
    """The model's weights after each training step (before any average is swapped in)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([w.copy() for w in self.model.get_weights()])


def hand_average(steps: list, momentum: float) -> list:
    """Keras's average: the first step's weights, then m * average + (1 - m) * weights after each step."""
    average = steps[0]
    for weights in steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
    return average


def test_the_average_of_three_sgd_steps_by_hand():
    optimizer = build.optimizer({"type": "SGD", "learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.5}, 1, 3)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=optimizer, loss="mse")
    raw = _RawWeights()
    model.fit(np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32), epochs=3, batch_size=1, shuffle=False,
              verbose=0, callbacks=[raw])
    # The loss is w^2, its gradient 2w: each step w -= 0.1 * 2w, so w = 1 -> 0.8 -> 0.64 -> 0.512.
    assert [float(s[0][0, 0]) for s in raw.steps] == pytest.approx([0.8, 0.64, 0.512])
    # The average starts at the first step's weights: 0.8, then 0.5 * 0.8 + 0.5 * 0.64 = 0.72,
    # then 0.5 * 0.72 + 0.5 * 0.512 = 0.616: the weights the model ends with.
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(0.616)


EMA_DOC = experiment(data={"dataset": "mnist", "limit": 256, "validation": "test"}, optimizer=EMA,
                     training={"epochs": 2, "batch_size": 64, "seed": 3})


def test_a_run_tests_validates_and_checkpoints_the_average(tmp_path):
    raw = _RawWeights()
    result = train(write_experiment(tmp_path, EMA_DOC), extra_callbacks=[raw])
    assert len(raw.steps) == 2 * 4  # 256 training images: 4 batches of 64 an epoch
    average = hand_average(raw.steps, 0.9)
    for got, expected in zip(result.model.get_weights(), average):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.model.get_weights()[-1], raw.steps[-1][-1])  # not the last step's weights
    # Validation is on the test set here: the last epoch's val_loss is the test loss only if both scored the average.
    uri = store_uri(tmp_path)
    run = only_run(uri)
    assert history(uri, run.info.run_id, "val_loss")[-1] == pytest.approx(result.test_loss, abs=1e-6)
    assert (run.data.params["optimizer.use_ema"], run.data.params["optimizer.ema_momentum"]) == ("true", "0.9")
    saved = keras.saving.load_model(artifact_file(uri, run.info.run_id, names.CHECKPOINT, tmp_path / "dl"),
                                    compile=False)
    for got, expected in zip(saved.get_weights(), average):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)




def test_a_resumed_run_keeps_the_average(tmp_path):
    doc = experiment(data={"dataset": "mnist", "limit": 256, "validation": "test"}, optimizer=EMA,
                     training={"epochs": 3, "batch_size": 64, "seed": 3})
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = train(write_experiment(tmp_path / "whole", doc))
    cut = write_experiment(tmp_path / "cut", doc)
    with pytest.raises(KeyboardInterrupt):
        train(cut, extra_callbacks=[interrupt_at(3)])
    uri = store_uri(tmp_path / "cut")
    resumed = train(cut, resume=only_run(uri).info.run_id)
    assert history(uri, resumed.run_id, "val_loss") == pytest.approx(whole.history["val_loss"], abs=1e-6)
    assert resumed.test_loss == pytest.approx(whole.test_loss, abs=1e-6)
    for got, expected in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
