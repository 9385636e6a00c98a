"""`xrun evaluate --tta`: the augmentation read back from the training run's params, refused where it cannot work."""

import math

import numpy as np
import pytest

from runner.errors import XrunError
from runner.records.models import LoggedModel
from runner.trained import evaluate as ev
from runner.trained.use import Model


def model(params: dict | None, run_id: str | None = "597a1b18aaaa") -> Model:
    logged = None if params is None else LoggedModel("runs:/x/model", "tiny", run_id=run_id, params=params)
    return Model(keras=None, class_names=["0", "1"], source="tiny.keras" if params is None else "597a1b18",
                 logged=logged)


def test_the_runs_flips_shifts_and_fill_are_read_from_its_params_as_logged():
    params = {"augmentation.horizontal_flip": "true", "augmentation.width_shift_range": "0.1",
              "augmentation.fill_mode": "constant", "augmentation.cval": "0.5", "augmentation.rotation_range": "10",
              "training.epochs": "2"}
    assert ev.run_augmentation(model(params)) == {"horizontal_flip": True, "width_shift_range": 0.1,
                                                  "fill_mode": "constant", "cval": 0.5}


def test_a_model_without_a_run_or_without_flips_and_shifts_is_one_line():
    with pytest.raises(XrunError) as caught:
        ev.run_augmentation(model(None))
    assert caught.value.line() == ("tiny.keras has no training run to take its augmentation from; give a run id or "
                                   "a models:/ URI of a run trained with augmentation flips or shifts")
    with pytest.raises(XrunError) as caught:
        ev.run_augmentation(model({"augmentation.rotation_range": "10", "augmentation.horizontal_flip": "false"}))
    assert caught.value.line() == ("tiny (run 597a1b18) was trained without augmentation flips or shifts: --tta has "
                                   "nothing to average over; evaluate without --tta")


def test_tta_metrics_are_the_overall_ones_renamed():
    scores = ev.scores(np.array([0, 1]), np.array([[0.75, 0.25], [0.5, 0.5]]), ["0", "1"])   # both predicted 0
    got = ev.tta_metrics(scores)
    assert sorted(got) == ["accuracy_tta", "loss_tta", "macro_f1_tta"] and got["accuracy_tta"] == 0.5
    assert got["loss_tta"] == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, rel=1e-15)
    assert got["macro_f1_tta"] == pytest.approx((2 / 3 + 0) / 2, rel=1e-15)   # class 0: P 1/2, R 1; class 1: 0
