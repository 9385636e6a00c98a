"""data.validation: fold and training.tta at validate time: typed with the schema's defaults, refused at their line
where they cannot work."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.spec import load_spec

BASE = """\
name: checked
data: {dataset: mnist, validation: VALIDATION}
model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: Adam}
loss: CategoricalCrossentropy
training:
  epochs: 1
  tta: TTA
"""


def write(tmp_path: Path, validation: str = "split", tta: str = "false", extra: str = "") -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(BASE.replace("VALIDATION", validation).replace("TTA", tta) + extra)
    return path


def error_of(path: Path, overrides=()) -> str:
    with pytest.raises(XrunError) as error:
        load_spec(path, list(overrides))
    return error.value.line()


def test_folds_and_tta_are_typed_with_the_schemas_defaults(tmp_path):
    spec = load_spec(write(tmp_path))
    assert (spec.data.validation, spec.data.folds, spec.data.fold, spec.training.tta) == ("split", None, None, False)
    assert "folds" not in spec.document["data"]   # nor in a run's params: only cross-validation's runs have them
    spec = load_spec(write(tmp_path, "fold", "true", "augmentation: {horizontal_flip: true}\n"),
                     ["data.folds=3", "data.fold=2"])
    assert (spec.data.folds, spec.data.fold, spec.training.tta) == (3, 2, True)


def test_a_fold_past_the_last_is_refused_at_its_line(tmp_path):
    path = write(tmp_path, "fold", extra="")
    path.write_text(path.read_text().replace("validation: fold}", "validation: fold, folds: 3,\n       fold: 3}"))
    assert error_of(path) == (f"{path}:3:14: data.fold: fold 3 of 3 folds: folds count from 0; give a fold from 0 "
                              "to 2, or raise data.folds")


def test_one_fold_is_refused_by_the_schema_and_a_fold_needs_both_keys(tmp_path):
    path = write(tmp_path, "fold")
    assert "data.folds" in error_of(path, ["data.folds=1", "data.fold=0"])
    assert error_of(path, ["data.fold=0"]) == (f"{path}:2:36: data.validation: validation: fold needs data.folds; "
                                               "give data.folds and data.fold (0 to folds-1), or let `xrun cv` set "
                                               "them")


def test_tta_without_a_flip_or_shift_is_refused_at_its_line(tmp_path):
    path = write(tmp_path, tta="true", extra="augmentation: {rotation_range: 10}\n")
    assert error_of(path) == (f"{path}:11:8: training.tta: test-time augmentation averages over the augmentation's "
                              "flips and shifts, and it has none; add augmentation.horizontal_flip (or a shift "
                              "range), or drop training.tta")
    for given in ("{vertical_flip: true}", "{width_shift_range: 0.1}", "{height_shift_range: 2}"):
        path.write_text(BASE.replace("VALIDATION", "split").replace("TTA", "true") + f"augmentation: {given}\n")
        assert load_spec(path).training.tta is True


def test_multi_label_data_takes_neither_folds_nor_tta(tmp_path):
    path = tmp_path / "x.yaml"
    text = BASE.replace("{dataset: mnist, validation: VALIDATION}", "{source: arrays, path: x.npz, multi_label: true, "
                        "validation: VALIDATION, folds: 2, fold: 0}") + "augmentation: {horizontal_flip: true}\n"
    path.write_text(text.replace("VALIDATION", "fold").replace("TTA", "false"))
    with pytest.raises(XrunError, match=r"data.validation: data.validation takes one class per image, not multi-lab"):
        load_spec(path, data_must_exist=False)
    path.write_text(text.replace("VALIDATION", "split").replace("TTA", "true"))
    with pytest.raises(XrunError, match=r"x.yaml:11:8: training.tta: training.tta takes one class per image, not mu"):
        load_spec(path, data_must_exist=False)
