"""Typed sections match the schema, and load_spec fills every default from it: sections left out, `oneOf` items."""

import dataclasses
from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language import schema
from runner.language.sections import (
    Data,
    Named,
    Optimizer,
    RandomErasing,
    Sections,
    Tracking,
    Training,
    section_classes,
)
from runner.language.spec import load_spec

# The form of each section that the typed object covers: the built-in source's for data.
EXAMPLES = {"data": {"dataset": "mnist"}, "augmentation": {}, "augmentation.random_erasing": {}, "training": {},
            "augmentation.random_crop": {}, "augmentation.mixup": {}, "augmentation.cutmix": {}, "tracking": {},
            "sweep": {}, "training.stop_at": {"metric": "loss", "value": 0.1}, "training.phases": {"epochs": 1}}
LISTS = {"training.phases"}  # sections that are the items of a list
# Fields a section has beyond the schema's properties: what it derives from them.
DERIVED = {"data": {"options"}}
# Top-level keys whose typed form is not a Sections field: the run's name and description are the Spec's, the
# model's is the graph, and `extends` is gone once the file is merged onto its base.
NOT_SECTIONS = {"name", "description", "extends", "model"}

MINIMAL = """\
name: minimal
data: {dataset: mnist}
model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: Adam}
loss: CategoricalCrossentropy
training: {epochs: 1}
"""


def pointer(path: str) -> str:
    return "#/properties/" + path.replace(".", "/properties/") + ("/items" if path in LISTS else "")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_each_section_class_has_exactly_the_schemas_properties(path):
    cls = section_classes()[path]
    properties = set(schema.form_of(pointer(path), EXAMPLES[path])["properties"])
    assert {f.name for f in dataclasses.fields(cls)} == properties | DERIVED.get(path, set())


def test_every_section_of_the_document_is_typed():
    assert set(section_classes()) == set(EXAMPLES)
    assert {f.name for f in dataclasses.fields(Sections)} == set(schema.schema()["properties"]) - NOT_SECTIONS


def test_a_file_without_any_optional_section_gets_every_default(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.tracking == Tracking(experiment="xrun", tags=None, log_model=True, log_images=True)
    assert spec.training == Training(epochs=1, batch_size=32, class_weight=None, sampling="uniform", stop_at=None,
                                     shuffle=True, tta=False, seed=None, precision="auto", jit_compile="auto",
                                     steps_per_execution=1, distribute="auto", phases=None)
    assert spec.data == Data(source="builtin", dataset="mnist", limit=None, validation="split", validation_split=0.1,
                             folds=None, fold=None, split_seed=0,
                             options={"dataset": "mnist", "source": "builtin", "validation": "split",
                                      "validation_split": 0.1, "split_seed": 0})
    assert spec.sections.optimizer == Optimizer("Adam", {}, None)
    assert spec.sections.loss == Named("CategoricalCrossentropy", {})
    assert (spec.sections.metrics, spec.sections.callbacks, spec.sections.sweep) == (("accuracy",), (), None)
    assert spec.augmentation is None
    assert spec.document["tracking"] == {"experiment": "xrun", "log_model": True, "log_images": True}
    assert spec.document["metrics"] == ["accuracy"]
    assert "callbacks" not in spec.document and "augmentation" not in spec.document


def test_sections_are_frozen_and_their_lists_and_mappings_read_only(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL + "tracking: {tags: {team: vision}}\n"
                           "augmentation: {random_erasing: {area: [0.1, 0.2]}}\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.training.epochs = 3
    with pytest.raises(TypeError):
        spec.tracking.tags["team"] = "other"
    assert dict(spec.tracking.tags) == {"team": "vision"}
    assert spec.augmentation.random_erasing == RandomErasing(probability=0.5, area=(0.1, 0.2),
                                                             aspect_ratio=(0.3, 3.3), value=0)
    assert spec.augmentation.fill_mode == "nearest" and spec.augmentation.rotation_range is None


def test_defaults_inside_one_of_items_are_filled(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL.replace(
        "optimizer: {type: Adam}",
        "optimizer: {type: Adam, learning_rate: {type: ExponentialDecay, initial_learning_rate: 0.1, "
        "decay_rate: 0.9}}") + "callbacks: [{type: ModelCheckpoint}, {type: TerminateOnNaN}]\n"))
    assert spec.document["optimizer"]["learning_rate"] == {
        "type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_rate": 0.9, "decay_epochs": 1,
        "staircase": True}
    assert spec.document["callbacks"] == [
        {"type": "ModelCheckpoint", "monitor": "val_loss", "save_best_only": True, "save_weights_only": False},
        {"type": "TerminateOnNaN"}]


def test_block_uses_get_their_defaults_and_layers_stay_as_written(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL.replace("""\
  layers:
    - {type: Flatten}""", """\
  blocks:
    pair:
      layers:
        - {type: Dense, units: 4}
        - {block: inner}
    inner:
      layers: [{type: Dense, units: 4}]
  layers:
    - {type: Flatten}
    - {block: pair}""")))
    assert spec.document["model"]["layers"][:2] == [{"type": "Flatten"}, {"block": "pair", "repeat": 1}]
    # Keras applies a layer's own defaults (the schema's `default`s there only say what they are).
    assert [n.args for n in spec.graph.nodes] == [{}, {"units": 4}, {"units": 4}, {"units": 10, "activation": "softmax"}]


def test_a_schedule_default_is_not_put_in_a_fixed_learning_rate(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL.replace("{type: Adam}", "{type: Adam, learning_rate: 0.01}")))
    assert spec.document["optimizer"] == {"type": "Adam", "learning_rate": 0.01}


def test_an_input_shape_that_is_not_the_datas_is_an_error_at_its_line(tmp_path):
    path = write(tmp_path, MINIMAL.replace("model:\n", "model:\n  input_shape: [32, 32, 3]\n"))
    with pytest.raises(XrunError) as error:
        load_spec(path)
    assert error.value.line() == (
        f"{path}:4:16: model.input_shape: the model takes [32, 32, 3] but the data's examples are [28, 28, 1] "
        "(mnist images); leave model.input_shape out (it follows the data), or write [28, 28, 1]")


@pytest.mark.parametrize("shape", [[28, 28, 1], [28, 28]])
def test_an_input_shape_that_keras_fits_to_the_data_is_accepted(tmp_path, shape):
    spec = load_spec(write(tmp_path, MINIMAL.replace("model:\n", f"model:\n  input_shape: {shape}\n")))
    assert spec.document["model"]["input_shape"] == shape


def test_a_shift_range_of_one_or_more_is_pixels_as_in_image_data_generator(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL + "augmentation: {width_shift_range: 3, height_shift_range: 0.1}\n"))
    assert (spec.augmentation.width_shift_range, spec.augmentation.height_shift_range) == (3, 0.1)
    shift = schema.schema()["properties"]["augmentation"]["properties"]["width_shift_range"]
    assert "maximum" not in shift and shift["minimum"] == 0
