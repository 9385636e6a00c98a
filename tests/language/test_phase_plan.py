"""`training.phases` in the language: names checked against the model's layers at their line (did you mean), the
phases' epochs against training.epochs (a warning), and which layers each phase freezes."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.phases import frozen_layers, members, phase_at
from runner.language.sections import Phase
from runner.language.spec import load_spec

HEAD = """\
name: t
data: {dataset: mnist}
optimizer: {type: Adam, learning_rate: 0.001}
loss: CategoricalCrossentropy
model:
  blocks:
    features:
      layers:
        - {type: Conv2D, filters: 4, kernel_size: 3}
        - {type: BatchNormalization}
  layers:
    - {block: features, name: body}
    - {type: Flatten, name: flat}
    - {type: Dense, units: 10, activation: softmax, name: head}
"""  # training: starts on line 15
PHASES = """\
training:
  epochs: 5
  phases:
    - {epochs: 2, freeze: [body], learning_rate: 0.001}
    - {epochs: 3, train_from: flat, learning_rate: 0.0001}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return load_spec(path)


def error_line(tmp_path: Path, text: str) -> str:
    with pytest.raises(XrunError) as info:
        load(tmp_path, text)
    return info.value.format().replace(f"{tmp_path / 't.yaml'}:", "")


def test_phases_are_typed_and_freeze_by_layer_and_block_use_names(tmp_path):
    spec = load(tmp_path, HEAD + PHASES)
    first, second = spec.training.phases
    assert first == Phase(epochs=2, freeze=("body",), train_from=None, learning_rate=0.001, batch_norm="frozen")
    assert [n.name for n in spec.graph.nodes] == ["body_conv2d", "body_batch_normalization", "flat", "head"]
    assert frozen_layers(spec.graph, first) == {"body_conv2d", "body_batch_normalization"}
    assert frozen_layers(spec.graph, second) == {"body_conv2d", "body_batch_normalization"}  # those before flat
    assert frozen_layers(spec.graph, Phase(1, None, "head", None, "frozen")) == {
        "body_conv2d", "body_batch_normalization", "flat"}
    assert frozen_layers(spec.graph, Phase(1, None, None, None, "frozen")) == frozenset()
    assert members(spec.graph, "body") == ["body_conv2d", "body_batch_normalization"]
    assert members(spec.graph, "head") == ["head"]


def test_the_phase_of_each_epoch_counts_on_across_phases():
    phases = (Phase(2, None, None, None, "frozen"), Phase(3, None, None, None, "frozen"))
    assert [phase_at(phases, epoch) for epoch in range(6)] == [0, 0, 1, 1, 1, 1]


def test_a_name_the_model_lacks_is_refused_at_its_line_with_did_you_mean(tmp_path):
    assert error_line(tmp_path, HEAD + PHASES.replace("freeze: [body]", "freeze: [bodu]")) == (
        "18:28: training.phases[0].freeze[0]: the model has no layer or block use 'bodu'; did you mean 'body'?")
    assert error_line(tmp_path, HEAD + PHASES.replace("train_from: flat", "train_from: Head")) == (
        "19:31: training.phases[1].train_from: the model has no layer or block use 'Head'; did you mean 'head'?")


def test_freeze_and_train_from_together_are_refused(tmp_path):
    text = HEAD + PHASES.replace("freeze: [body]", "freeze: [body], train_from: head")
    assert error_line(tmp_path, text) == (
        "18:35: training.phases[0]: a phase freezes the layers it names (freeze) or those before one (train_from), "
        "not both; keep freeze: [...] or train_from: NAME")


def test_training_epochs_other_than_the_phases_sum_is_a_warning_at_its_line(tmp_path):
    assert load(tmp_path, HEAD + PHASES).warnings == ()
    shorter, longer = (load(tmp_path, HEAD + PHASES.replace("epochs: 5", f"epochs: {n}")) for n in (2, 7))
    assert [w.format().replace(f"{tmp_path / 't.yaml'}:", "") for w in (*shorter.warnings, *longer.warnings)] == [
        "16:11: training.epochs: the phases add up to 5 epochs, more than these 2: the run ends in phase 1 of 2; "
        "set training.epochs: 5 to train the phases as written",
        "16:11: training.epochs: the phases add up to 5 epochs, fewer than these 7: the last phase trains 2 more; "
        "set training.epochs: 5 to train the phases as written"]
    quick = load_spec(tmp_path / "t.yaml", ["training.epochs=3"])  # a --set shortens a phased run: phase 2's first
    assert "the run ends in phase 2 of 2" in quick.warnings[0].format()


def test_a_phase_rate_with_a_schedule_is_refused(tmp_path):
    text = HEAD.replace("learning_rate: 0.001}", "learning_rate: {type: CosineDecay, initial_learning_rate: 0.01}}")
    assert error_line(tmp_path, text + PHASES) == (
        "18:35: training.phases[0].learning_rate: a phase's learning_rate replaces a fixed rate, and "
        "optimizer.learning_rate is a schedule; drop the phase's learning_rate (the schedule runs on across "
        "phases), or give optimizer.learning_rate a number")
    no_rates = PHASES.replace(", learning_rate: 0.001", "").replace(", learning_rate: 0.0001", "")
    assert load(tmp_path, text + no_rates).training.phases[1].learning_rate is None


def test_a_layer_that_says_trainable_false_is_refused_with_phases(tmp_path):
    text = HEAD.replace("name: flat}", "name: flat, trainable: false}")
    assert error_line(tmp_path, text + PHASES) == (
        "13:35: model.layers[1].trainable: training.phases decide which layers train, so a layer cannot say "
        "trainable: false; drop it and name 'flat' in the phases' freeze: [...] instead")
    assert load(tmp_path, text + "training: {epochs: 1}\n").training.phases is None  # without phases it is the model's
