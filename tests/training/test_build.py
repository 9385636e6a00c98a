"""runner.build: optimizers and their epoch-counted schedules, losses, and the YAML's callbacks."""

import math

import keras
import numpy as np
import pytest

from runner.errors import XrunError
from runner.training import build

SPE = 10  # steps per epoch in these tests


def lr_at(optimizer, step: int) -> float:
    schedule = optimizer._learning_rate  # the schedule object: Keras's property only evaluates the current step
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_a_fixed_learning_rate_becomes_a_float():
    opt = build.optimizer({"type": "SGD", "learning_rate": 1, "momentum": 0.9}, SPE, 3)
    assert isinstance(opt, keras.optimizers.SGD)
    assert float(opt.learning_rate) == 1.0 and opt.momentum == 0.9


def test_exponential_decay_counts_in_epochs_and_steps_at_epoch_boundaries():
    spec = {"type": "Adam", "learning_rate": {"type": "ExponentialDecay", "initial_learning_rate": 0.1,
                                              "decay_rate": 0.5, "decay_epochs": 1}}
    opt = build.optimizer(spec, SPE, 3)
    assert opt._learning_rate.decay_steps == SPE and opt._learning_rate.staircase is True
    got = [lr_at(opt, s) for s in (0, SPE - 1, SPE, 2 * SPE - 1, 2 * SPE)]
    assert got == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-6)


def test_exponential_decay_may_span_fractional_epochs():
    spec = {"type": "Adam", "learning_rate": {"type": "ExponentialDecay", "initial_learning_rate": 1.0,
                                              "decay_rate": 0.5, "decay_epochs": 0.5, "staircase": False}}
    opt = build.optimizer(spec, SPE, 3)
    assert opt._learning_rate.decay_steps == 5 and opt._learning_rate.staircase is False
    assert lr_at(opt, 5) == pytest.approx(0.5) and lr_at(opt, 2) == pytest.approx(0.5 ** 0.4)


def test_cosine_decay_warms_up_then_decays_over_the_rest_of_the_run():
    spec = {"type": "Adam", "learning_rate": {"type": "CosineDecay", "initial_learning_rate": 0.001,
                                              "warmup_epochs": 1, "warmup_target": 0.01, "alpha": 0.0}}
    opt = build.optimizer(spec, SPE, 3)
    assert opt._learning_rate.warmup_steps == SPE and opt._learning_rate.decay_steps == 2 * SPE
    assert lr_at(opt, 0) == pytest.approx(0.001)
    assert lr_at(opt, SPE // 2) == pytest.approx(0.0055)
    assert lr_at(opt, SPE) == pytest.approx(0.01)
    assert lr_at(opt, 2 * SPE) == pytest.approx(0.005)                       # halfway down the cosine
    assert lr_at(opt, 3 * SPE) == pytest.approx(0.0, abs=1e-9)


def test_cosine_decay_without_warmup_spans_the_whole_run():
    spec = {"type": "SGD", "learning_rate": {"type": "CosineDecay", "initial_learning_rate": 0.1}}
    opt = build.optimizer(spec, SPE, 4)
    assert opt._learning_rate.decay_steps == 4 * SPE
    assert lr_at(opt, 2 * SPE) == pytest.approx(0.05)


def test_cosine_warmup_without_a_target_is_refused_not_skipped():
    spec = {"type": "Adam", "learning_rate": {"type": "CosineDecay", "initial_learning_rate": 0.001,
                                              "warmup_epochs": 1}}
    with pytest.raises(XrunError, match="warmup_target") as caught:
        build.optimizer(spec, SPE, 3)
    assert caught.value.path == "optimizer.learning_rate.warmup_target"


def test_piecewise_constant_boundaries_are_epochs_and_a_boundary_epoch_uses_the_new_value():
    spec = {"type": "SGD", "learning_rate": {"type": "PiecewiseConstantDecay", "boundaries_epochs": [1, 2],
                                             "values": [0.1, 0.01, 0.001]}}
    opt = build.optimizer(spec, SPE, 3)
    by_epoch = [[lr_at(opt, e * SPE + s) for s in range(SPE)] for e in range(3)]
    assert by_epoch == [pytest.approx([0.1] * SPE), pytest.approx([0.01] * SPE), pytest.approx([0.001] * SPE)]


def test_a_schedule_that_keras_rejects_is_an_xrun_error_at_its_path():
    spec = {"type": "SGD", "learning_rate": {"type": "PiecewiseConstantDecay", "boundaries_epochs": [1, 2],
                                             "values": [0.1, 0.01]}}
    with pytest.raises(XrunError) as caught:
        build.optimizer(spec, SPE, 3)
    assert caught.value.path == "optimizer.learning_rate"


def test_losses_and_which_want_one_hot_targets():
    smooth = build.loss({"type": "CategoricalCrossentropy", "label_smoothing": 0.1})
    assert isinstance(smooth, keras.losses.CategoricalCrossentropy) and smooth.label_smoothing == 0.1
    assert isinstance(build.loss("SparseCategoricalCrossentropy"), keras.losses.SparseCategoricalCrossentropy)
    assert build.wants_one_hot("CategoricalCrossentropy") and build.wants_one_hot({"type": "KLDivergence"})
    assert not build.wants_one_hot("SparseCategoricalCrossentropy")
    assert not build.wants_one_hot({"type": "SparseCategoricalCrossentropy", "from_logits": True})


def test_callbacks_write_their_files_inside_the_run_folder(tmp_path):
    made = build.callbacks([{"type": "ModelCheckpoint", "monitor": "val_accuracy"},
                            {"type": "ModelCheckpoint", "save_weights_only": True},
                            {"type": "CSVLogger"},
                            {"type": "EarlyStopping", "patience": 2, "restore_best_weights": True}], tmp_path)
    best, weights, csv, stop = made
    assert best.filepath == str(tmp_path / "checkpoints" / "best.keras") and best.save_best_only
    assert best.monitor == "val_accuracy"
    assert weights.filepath == str(tmp_path / "checkpoints" / "best.weights.h5")
    assert csv.filename == str(tmp_path / "history.csv")
    assert isinstance(stop, keras.callbacks.EarlyStopping) and stop.patience == 2 and stop.restore_best_weights
    assert (tmp_path / "checkpoints").is_dir()


def test_a_callback_keras_rejects_is_an_xrun_error_naming_its_index(tmp_path):
    with pytest.raises(XrunError) as caught:
        build.callbacks([{"type": "CSVLogger"}, {"type": "EarlyStopping", "no_such_argument": 1}], tmp_path)
    assert caught.value.path == "callbacks[1]"


def test_optimizer_arguments_reach_keras():
    opt = build.optimizer({"type": "Adadelta", "learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-7}, SPE, 1)
    assert math.isclose(opt.rho, 0.95) and math.isclose(opt.epsilon, 1e-7)
    assert np.isclose(float(opt.learning_rate), 1.0)
