"""Every experiment in experiments/ validates and builds, with exactly the parameter counts its seed reports.

A new experiment file fails here until its counts are pinned in PARAMS.
"""

import functools
import json
import math
from pathlib import Path

import pytest

from runner import cli
from runner.language.spec import load_spec
from runner.model import summary as report
from runner.training.settings import import_tensorflow

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
FILES = sorted(EXPERIMENTS.glob("*.yaml"))

# (total, trainable, non-trainable) parameters: the seed summaries' figures, or as built where a seed gives none.
PARAMS = {
    "model1": (646_410, 645_130, 1_280),
    "model2": (1_211_274, 1_209_994, 1_280),
    "model3": (696_330, 695_050, 1_280),
    "model4": (3_842_890, 3_842_122, 768),
    "model5": (1_211_274, 1_209_994, 1_280),
    "model6": (7_396_362, 7_395_594, 768),
    "model7": (2_686_602, 2_685_322, 1_280),
    "model8": (2_588_298, 2_587_018, 1_280),
    "model9": (3_210_378, 3_209_098, 1_280),
    "model10": (37_987_722, 37_986_442, 1_280),
    "seed000_yogi": (403_722, 403_338, 384),
    "seed002_method1": (403_722, 403_338, 384),  # the seed-000 network
    "seed001_cnn5": (61_794, 61_750, 44),
    "seed001_minivgg": (1_679_082, 1_677_674, 1_408),
    "seed002_method2": (2_213_610, 2_210_154, 3_456),
    # Designed for issue 5 (time to accuracy, best results); counts as built.
    "fast_mnist": (317_066, 317_066, 0),
    "best_mnist": (403_722, 403_338, 384),
    "best_fashion": (289_066, 288_170, 896),
    # Issue 14: own data, PNG class folders (builds without the folder: image_size and color_mode give the shape).
    "folder_digits": (12_810, 12_810, 0),
    # Issue 23: imbalanced classes (class_weight, per-class recall, stop_at); counts as built.
    "class_weights": (34_826, 34_826, 0),
    # Issue 24: k-fold cross-validation (xrun cv) and test-time augmentation; counts as built.
    "cv_tta": (12_810, 12_810, 0),
    # Issue 24: multi-label digit pairs (28x56, a CSV of label sets; builds without it); counts as built.
    "multilabel": (24_010, 24_010, 0),
    # Issue 24: weight averaging (optimizer.use_ema), and the lr-find example; counts as built.
    "ema_mnist": (12_810, 12_810, 0),
    # Issue 14: the reference architectures, written with blocks; keras.applications' counts (checked below).
    "vgg16": (138_357_544, 138_357_544, 0),
    "resnet50": (25_636_712, 25_583_592, 53_120),
    "mobilenetv2": (3_538_984, 3_504_872, 34_112),
    # Issue 24: fine-tuning in phases; MobileNet at width 0.25 (218,544, 5,472 of them batch-norm statistics) and a
    # Dense(10) on its 256 features. As built every layer is trainable: the phases freeze in the run.
    "finetune_phases": (221_114, 215_642, 5_472),
}
# The class count of each experiment's output layer, where it is not 10.
CLASSES = {"vgg16": 1000, "resnet50": 1000, "mobilenetv2": 1000}
# The keras.applications function each reference architecture reproduces.
APPLICATIONS = {"vgg16": "VGG16", "resnet50": "ResNet50", "mobilenetv2": "MobileNetV2"}


@functools.cache
def built(path: Path):
    """Spec and model of an experiment, built once per session (model10 alone has 38M parameters)."""
    import_tensorflow()
    from runner.model.compiler import build_model
    spec = load_spec(path, data_must_exist=False)  # the ImageNet ones' data is not included
    return spec, build_model(spec)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_experiment_builds_with_its_parameter_counts(path):
    assert path.stem in PARAMS, f"pin the parameter counts of {path.name} in PARAMS (xrun summary {path} shows them)"
    spec, model = built(path)
    assert spec.name == path.stem
    info = report.model_info(model, spec.graph)
    assert (info["total_params"], info["trainable_params"], info["non_trainable_params"]) == PARAMS[path.stem]
    assert info["layers"][-1]["output_shape"] == [None, CLASSES.get(path.stem, 10)]


@pytest.mark.parametrize("stem", APPLICATIONS)
def test_reference_architectures_are_those_of_keras_applications(stem):
    """Not only the same counts: the same weights, shape for shape, and the same input and output."""
    spec, model = built(EXPERIMENTS / f"{stem}.yaml")
    import keras
    twin = getattr(keras.applications, APPLICATIONS[stem])(weights=None)
    assert model.count_params() == twin.count_params()
    assert _counts(model) == _counts(twin) == PARAMS[stem]
    assert sorted(tuple(w.shape) for w in model.weights) == sorted(tuple(w.shape) for w in twin.weights)
    assert tuple(model.input_shape) == tuple(twin.input_shape) == (None, 224, 224, 3)
    assert tuple(model.output_shape) == tuple(twin.output_shape) == (None, 1000)


def _counts(model) -> tuple:
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


def test_every_pinned_experiment_exists():
    assert set(PARAMS) == {p.stem for p in FILES}


def _untimed(monkeypatch):
    """The summary's step time not measured: these tests read its table (model10's layers take ~30 s to time)."""
    from runner.training import peak
    monkeypatch.setattr(peak, "timed", lambda measures, load=None: dict.fromkeys(measures, 0.0))


def test_model10_summary_shows_the_branches_and_the_merge(monkeypatch, capsys):
    path = EXPERIMENTS / "model10.yaml"
    from runner.model import compiler
    monkeypatch.setattr(compiler, "build_model", lambda spec: built(path)[1])  # the model built above
    _untimed(monkeypatch)
    assert cli.main(["summary", str(path), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in info["layers"]}
    assert info["total_params"] == 37_987_722
    merge = next(row for row in info["layers"] if row["type"] == "Concatenate")
    assert merge["name"] == "merged"
    assert merge["inputs"] == ["branch_1x1", "branch_3x3", "branch_5x5", "branch_pool"]
    assert merge["output_shape"] == [None, 28, 28, 128]
    for name in ["branch_1x1", "branch_3x3", "branch_5x5", "branch_pool_1x1"]:
        assert rows[name]["inputs"] == ["input"] and rows[name]["output_shape"] == [None, 28, 28, 32]
    assert rows["branch_pool"]["inputs"] == ["branch_pool_1x1"]  # the fourth branch: 1x1 conv, then pool
    assert rows["input"]["type"] == "InputLayer"


def test_model10_table_lists_the_inputs(monkeypatch, capsys):
    path = EXPERIMENTS / "model10.yaml"
    from runner.model import compiler
    monkeypatch.setattr(compiler, "build_model", lambda spec: built(path)[1])
    _untimed(monkeypatch)
    assert cli.main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Inputs" in out and "branch_1x1, branch_3x3, branch_5x5, branch_pool" in out
    assert "Total params: 37,987,722   Trainable: 37,986,442   Non-trainable: 1,280" in out
