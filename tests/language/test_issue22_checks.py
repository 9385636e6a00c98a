"""Issue 22's checks of the language: a data.path that names nothing, block params named as a block use's own keys,
and a last layer without softmax under a probability loss (a warning, never refused)."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.spec import load_spec

MODEL = """model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: Adam
loss: CategoricalCrossentropy
training: {epochs: 1}
"""


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(XrunError) as info:
        load_spec(path, **kwargs)
    return info.value.format()


def write(folder: Path, text: str) -> Path:
    path = folder / "x.yaml"
    path.write_text(text)
    return path


SIZED = "  image_size: [28, 28]\n  color_mode: grayscale\n"


@pytest.mark.parametrize("data, message", [
    ("  source: image_folder\n  path: pics\n" + SIZED,
     "no folder {tmp}/pics; give data.path as a folder of class folders (or of train/ val/ test/ folders)"),
    ("  source: arrays\n  path: digits.npz\n",
     "no file or folder {tmp}/digits.npz; give data.path as an .npz file or a folder of .npy files"),
    ("  source: csv\n  path: list.csv\n" + SIZED,
     "no file {tmp}/list.csv; give data.path as a CSV file of path,label rows"),
], ids=["folder", "npz", "csv"])
def test_a_data_path_that_names_nothing_is_an_error_at_its_line(tmp_path, data, message):
    path = write(tmp_path, "name: x\ndata:\n" + data + MODEL)
    assert error_of(path) == f"{path}:4:3: data.path: " + message.format(tmp=tmp_path)


def test_a_missing_data_path_leaves_the_facts_unknown_where_asked(tmp_path):
    """The catalogue, summary and a run's recorded config read a file whose data is not (or no longer) there."""
    path = write(tmp_path, "name: x\ndata: {source: image_folder, path: pics, image_size: [28, 28], "
                           "color_mode: grayscale}\n" + MODEL)
    spec = load_spec(path, data_must_exist=False)
    assert (spec.data_facts().shape, spec.data_facts().class_names) == ((28, 28, 1), None)


def test_a_data_path_given_with_set_is_read_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "name: x\ndata: {source: arrays, path: a.npz}\n" + MODEL)
    assert error_of(path, overrides=["data.path=b.npz"]) == (
        "--set data.path=b.npz: data.path: no file or folder b.npz; give data.path as an .npz file or a folder of "
        ".npy files")


BLOCKS = """name: x
data: {dataset: mnist}
model:
  blocks:
    pair:
      params: {width: 8, %s: null}
      layers:
        - {type: Conv2D, filters: "${width}", kernel_size: 3}
  layers:
    - {block: pair%s}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: Adam
loss: CategoricalCrossentropy
training: {epochs: 1}
"""


@pytest.mark.parametrize("name", ["first", "repeat", "inputs", "name", "block"])
def test_a_param_named_as_a_block_use_key_is_refused_where_it_is_declared(tmp_path, name):
    given = ", first: 16" if name == "first" else ""  # the case: the use gives it too
    path = write(tmp_path, BLOCKS % (name, given))
    assert error_of(path) == (
        f"{path}:6:26: model.blocks.pair.params.{name}: '{name}' cannot name a param: block, first, inputs, name, "
        "repeat are the keys of a block use itself; give the param another name "
        f"(say '{name}_value'), here and in the block's layers")


def test_an_ordinary_param_name_is_taken(tmp_path):
    spec = load_spec(write(tmp_path, BLOCKS % ("second", ", second: 16")))
    assert [n.name for n in spec.graph.nodes] == ["pair_conv2d", "flatten", "dense"]


HEAD = "name: x\ndata: {dataset: mnist}\nmodel:\n  layers:\n    - {type: Flatten}\n"


@pytest.mark.parametrize("last, loss, warned", [
    ("{type: Dense, units: 10}", "CategoricalCrossentropy", "no activation"),
    ("{type: Dense, units: 10, activation: relu}", "SparseCategoricalCrossentropy", "activation 'relu'"),
    ("{type: Dense, units: 10, activation: linear}", "CategoricalFocalCrossentropy", "activation 'linear'"),
    ("{type: Dense, units: 10}", "{type: CategoricalCrossentropy, from_logits: true}", None),
    ("{type: Dense, units: 10, activation: softmax}", "CategoricalCrossentropy", None),
    ("{type: Dense, units: 10}", "MeanSquaredError", None),
], ids=["cce", "sparse-relu", "focal-linear", "from-logits", "softmax", "mse"])
def test_a_last_layer_without_softmax_under_a_probability_loss_is_warned(tmp_path, last, loss, warned):
    path = write(tmp_path, HEAD + f"    - {last}\noptimizer: Adam\nloss: {loss}\ntraining: {{epochs: 1}}\n")
    lines = [w.line() for w in load_spec(path).warnings]
    name = loss if not loss.startswith("{") else "CategoricalCrossentropy"
    assert lines == ([] if warned is None else [
        f"{path}:6:7: model.layers[1]: the last layer has {warned}, so it gives scores, not probabilities, but "
        f"{name} takes probabilities; give it activation: softmax, or write loss: {{type: {name}, "
        "from_logits: true}"])


def test_a_softmax_layer_or_activation_after_the_dense_is_not_warned(tmp_path):
    for tail in ("    - {type: Dense, units: 10}\n    - {type: Softmax}\n",
                 "    - {type: Dense, units: 10}\n    - {type: Activation, activation: softmax}\n    - {type: Dropout, "
                 "rate: 0.1}\n"):
        path = write(tmp_path, HEAD + tail + "optimizer: Adam\nloss: CategoricalCrossentropy\ntraining: {epochs: 1}\n")
        assert load_spec(path).warnings == ()


def test_validate_prints_the_warning_and_says_ok(tmp_path):
    from click.testing import CliRunner

    from runner.cli import cli

    path = write(tmp_path, HEAD + "    - {type: Dense, units: 10}\noptimizer: Adam\nloss: CategoricalCrossentropy\n"
                               "training: {epochs: 1}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert (result.exit_code, result.stdout) == (0, f"ok  {path}\n")
    assert result.stderr == (
        f"xrun: warning: {path}:6:7: model.layers[1]: the last layer has no activation, so it gives scores, not "
        "probabilities, but CategoricalCrossentropy takes probabilities; give it activation: softmax, or write "
        "loss: {type: CategoricalCrossentropy, from_logits: true}\n")
