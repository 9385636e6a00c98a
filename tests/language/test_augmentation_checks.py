"""The augmentation section at validate time: typed with the schema's defaults, and what the schema cannot say."""

from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.sections import Mixing, RandomCrop
from runner.language.spec import load_spec

BASE = """\
name: augmented
data: {dataset: mnist}
model:
  layers:
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: Adam}
loss: LOSS
training: {epochs: 1}
augmentation:
"""


def write(tmp_path: Path, augmentation: str, loss: str = "CategoricalCrossentropy") -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(BASE.replace("LOSS", loss) + augmentation)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(XrunError) as error:
        load_spec(path)
    return error.value.line()


def test_the_new_options_are_typed_with_the_schemas_defaults(tmp_path):
    spec = load_spec(write(tmp_path, "  brightness_range: [0.8, 1.2]\n  channel_shift_range: 20\n"
                                     "  random_crop: {}\n  mixup: {}\n  cutmix: {alpha: 0.5}\n"))
    a = spec.augmentation
    assert (a.brightness_range, a.channel_shift_range) == ((0.8, 1.2), 20)
    assert a.random_crop == RandomCrop(padding=4)
    assert (a.mixup, a.cutmix) == (Mixing(alpha=0.2), Mixing(alpha=0.5))
    assert load_spec(write(tmp_path, "  cutmix: {}\n")).augmentation.cutmix == Mixing(alpha=1)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_with_a_sparse_loss_is_an_error_at_its_line(tmp_path, name):
    path = write(tmp_path, f"  rotation_range: 10\n  {name}: {{alpha: 0.3}}\n", loss="SparseCategoricalCrossentropy")
    assert error_of(path) == (
        f"{path}:12:3: augmentation.{name}: {name} mixes the labels of two images, which needs one-hot labels, but "
        "SparseCategoricalCrossentropy takes class numbers; use loss: CategoricalCrossentropy, the same loss on "
        "one-hot labels")


def test_mixing_with_a_sparse_loss_mapping_is_refused_too(tmp_path):
    path = write(tmp_path, "  mixup: {}\n", loss="{type: SparseCategoricalCrossentropy}")
    assert error_of(path).startswith(f"{path}:11:3: augmentation.mixup: mixup mixes the labels")


@pytest.mark.parametrize("key", ["brightness_range", "zoom_range"])
def test_a_range_written_backwards_is_an_error_at_its_line(tmp_path, key):
    path = write(tmp_path, f"  {key}: [1.2, 0.8]\n")
    assert error_of(path) == (f"{path}:11:{len(key) + 5}: augmentation.{key}: expected [lo, hi] with lo <= hi, "
                              "got [1.2, 0.8]; write [0.8, 1.2]")


@pytest.mark.parametrize("text, message", [
    ("  random_crop: {padding: 0}\n", "11:26: augmentation.random_crop.padding: 0 is out of range; must be >= 1"),
    ("  mixup: {alpha: 0}\n", "11:18: augmentation.mixup.alpha: 0 is out of range; must be > 0"),
    ("  channel_shift_range: 300\n", "11:24: augmentation.channel_shift_range: 300 is out of range; must be <= 255"),
    ("  brightness_range: [0.8]\n", "11:21: augmentation.brightness_range: has 1 item; expected at least 2 items"),
    ("  brightness_range: [-1, 2]\n", "11:22: augmentation.brightness_range[0]: -1 is out of range; must be >= 0"),
    ("  random_crop: {pading: 4}\n", "11:17: augmentation.random_crop.pading: unknown key 'pading'; did you mean "
                                     "'padding'?"),
])
def test_bad_values_are_reported_by_the_schema_at_their_line(tmp_path, text, message):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}:{message}"
