"""Multi-label data in the language (runner.language.labels): a CSV's label sets as data facts, and the model and
training choices that do not fit them refused at their YAML line."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.labels import split_labels
from runner.language.spec import load_spec

CSV = "path,labels,split\na.png,cat;dog,train\nb.png,dog,train\nc.png,,train\nd.png, bird ;cat;cat,test\n"
DATA = """data:
  source: csv
  path: list.csv
  multi_label: true
  image_size: [8, 8]
  color_mode: grayscale
"""
MODEL = """model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 3, activation: sigmoid}
optimizer: Adam
loss: BinaryCrossentropy
training: {epochs: 1}
"""


def write(folder: Path, text: str, csv: str = CSV) -> Path:
    (folder / "list.csv").write_text(csv)
    path = folder / "x.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, overrides=()) -> str:
    with pytest.raises(XrunError) as info:
        load_spec(path, list(overrides))
    return info.value.format()


def test_labels_of_a_cell_are_stripped_each_once_in_order():
    assert split_labels(" bird ;cat;cat", ";") == ("bird", "cat")
    assert split_labels("", ";") == ()
    assert split_labels("a b", " ") == ("a", "b")


def test_the_facts_of_a_multi_label_csv_are_every_label_and_the_flag(tmp_path):
    spec = load_spec(write(tmp_path, "name: x\n" + DATA + MODEL))
    facts = spec.data_facts()
    assert (facts.class_names, facts.multi_label, facts.shape) == (("bird", "cat", "dog"), True, (8, 8, 1))
    assert spec.warnings == ()  # a sigmoid under BinaryCrossentropy gives probabilities: nothing to say


def test_the_output_layer_must_have_a_unit_per_label(tmp_path):
    path = write(tmp_path, "name: x\n" + DATA + MODEL.replace("units: 3", "units: 2"))
    assert error_of(path) == (f"{path}:11:28: model.layers[1].units: the output layer has 2 units but the images "
                              "listed in list.csv have 3 classes (bird, cat, dog); set units: 3")


@pytest.mark.parametrize("change, message", [
    (("activation: sigmoid", "activation: softmax"),
     "11:43: model.layers[1].activation: the last layer's softmax makes the labels compete (their probabilities "
     "sum to 1), but the data is multi-label (data.multi_label: true): an image may have several; give it "
     "activation: sigmoid, one independent probability per label"),
    (("loss: BinaryCrossentropy", "loss: CategoricalCrossentropy"),
     "13:7: loss: the data is multi-label (data.multi_label: true), but CategoricalCrossentropy takes one class per "
     "image; use loss: BinaryCrossentropy (one yes/no per label) with a sigmoid output layer"),
    (("loss: BinaryCrossentropy", "loss: {type: SparseCategoricalCrossentropy}"),
     "13:14: loss.type: the data is multi-label (data.multi_label: true), but SparseCategoricalCrossentropy takes "
     "one class per image; use loss: BinaryCrossentropy (one yes/no per label) with a sigmoid output layer"),
    (("training: {epochs: 1}", "training: {epochs: 1, class_weight: auto}"),
     "14:23: training.class_weight: class_weight weighs each image by its one class, but multi-label images have "
     "several; drop it; for rare labels use loss: {type: BinaryFocalCrossentropy, apply_class_balancing: true}"),
    (("training: {epochs: 1}", "training: {epochs: 1, sampling: balanced}"),
     "14:33: training.sampling: sampling: balanced draws images class by class, but multi-label images have several "
     "classes; use sampling: uniform; for rare labels use loss: BinaryFocalCrossentropy"),
    (("training: {epochs: 1}", "training: {epochs: 1}\nmetrics: [accuracy, class_recall]"),
     "15:21: metrics[1]: class_recall counts an image as right when its likeliest class is its one class; "
     "multi-label images have several; drop it: a multi-label run logs f1_micro, f1_macro and auc each epoch, and "
     "each label's F1 and AUC on the test split"),
], ids=["softmax", "categorical", "sparse", "class_weight", "balanced", "class_recall"])
def test_choices_that_do_not_fit_multi_label_data_are_refused_at_their_line(tmp_path, change, message):
    path = write(tmp_path, "name: x\n" + DATA + MODEL.replace(*change))
    assert error_of(path) == f"{path}:{message}"


def test_a_softmax_layer_after_the_dense_is_refused_at_its_own_line(tmp_path):
    model = MODEL.replace("activation: sigmoid}", "}\n    - {type: Softmax}")
    path = write(tmp_path, "name: x\n" + DATA + model)
    assert error_of(path).startswith(f"{path}:12:7: model.layers[2]: the last layer's softmax makes the labels "
                                     "compete")


def test_the_refusal_holds_before_the_csv_exists(tmp_path):
    """`validate` on a file whose data is not there yet still refuses what the YAML says."""
    path = tmp_path / "x.yaml"
    path.write_text("name: x\n" + DATA + MODEL.replace("loss: BinaryCrossentropy", "loss: CategoricalCrossentropy"))
    spec_error = pytest.raises(XrunError)
    with spec_error as info:
        load_spec(path, data_must_exist=False)
    assert info.value.format().startswith(f"{path}:13:7: loss: the data is multi-label")


def test_stop_at_may_watch_the_multi_label_metrics(tmp_path):
    path = write(tmp_path, "name: x\n" + DATA + MODEL.replace(
        "training: {epochs: 1}", "training: {epochs: 1, stop_at: {metric: val_f1_macro, value: 0.9}}"))
    assert load_spec(path).training.stop_at.metric == "val_f1_macro"


def test_single_label_data_under_a_per_label_loss_is_a_warning(tmp_path):
    csv = "a.png,cat\nb.png,dog\nc.png,bird\n"
    path = write(tmp_path, "name: x\n" + DATA.replace("  multi_label: true\n", "") + MODEL, csv)
    (warning,) = load_spec(path).warnings
    assert warning.format() == (
        f"{path}:12:7: loss: BinaryCrossentropy scores each of the 3 classes on its own, but each image of the "
        "images listed in list.csv has one class; use loss: CategoricalCrossentropy with a softmax output, or, "
        "where an image has several labels, list them in a CSV with data.multi_label: true")


def test_a_multi_label_list_needs_two_labels_and_rows_may_have_none(tmp_path):
    path = write(tmp_path, "name: x\n" + DATA + MODEL, "a.png,cat\nb.png,\n")
    assert error_of(path) == (f"{path}:4:3: data.path: list.csv lists 1 distinct label(s); multi-label data needs "
                              "at least 2; list each image's labels separated by ';' (data.label_separator)")


def test_another_separator(tmp_path):
    path = write(tmp_path, "name: x\n" + DATA + "  label_separator: ' '\n" + MODEL, "a.png,cat dog\nb.png,bird\n")
    assert load_spec(path).data_facts().class_names == ("bird", "cat", "dog")
