"""The experiment's plain sections as typed, frozen objects, built by `load_spec` from the checked document.

Their fields are the schema's properties (tests/language/test_sections.py keeps the two in step) and their values
come from the document with the schema's defaults filled in: nothing here re-declares a default. A key the schema
leaves without a default and the file leaves out is None. Lists become tuples and mappings read-only, so a
section cannot be changed behind the document's back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class Data:
    """What a run trains on. Keys only some sources take (an image folder's path, ...) stay in `spec.document`."""

    source: str
    dataset: str | None             # the built-in dataset (source: builtin)
    limit: int | None
    validation: str                 # "split", "test" or "none"
    validation_split: float


@dataclass(frozen=True)
class RandomErasing:
    probability: float
    area: tuple[float, float]
    aspect_ratio: tuple[float, float]
    value: float


@dataclass(frozen=True)
class RandomCrop:
    padding: int


@dataclass(frozen=True)
class Mixing:
    """`mixup` or `cutmix`: a batch operation on images and one-hot labels."""

    alpha: float


@dataclass(frozen=True)
class Augmentation:
    rotation_range: float | None
    width_shift_range: float | None
    height_shift_range: float | None
    shear_range: float | None
    zoom_range: float | tuple[float, float] | None
    fill_mode: str
    cval: float
    horizontal_flip: bool | None
    vertical_flip: bool | None
    gaussian_noise: float | None
    brightness_range: tuple[float, float] | None
    channel_shift_range: float | None
    random_crop: RandomCrop | None
    mixup: Mixing | None
    cutmix: Mixing | None
    random_erasing: RandomErasing | None


@dataclass(frozen=True)
class Training:
    epochs: int
    batch_size: int
    shuffle: bool
    seed: int | None
    precision: str
    jit_compile: str | bool         # "auto", true or false
    steps_per_execution: int | str  # a count, or "auto"
    distribute: str


@dataclass(frozen=True)
class Tracking:
    experiment: str
    tags: Mapping[str, Any] | None
    log_model: bool
    log_images: bool


@dataclass(frozen=True)
class Sections:
    """The document's plain sections; `augmentation` is None where the file has none."""

    data: Data
    augmentation: Augmentation | None
    training: Training
    tracking: Tracking


# Fields that hold a section of their own.
_NESTED = {(Augmentation, "random_erasing"): RandomErasing, (Augmentation, "random_crop"): RandomCrop,
           (Augmentation, "mixup"): Mixing, (Augmentation, "cutmix"): Mixing,
           **{(Sections, f.name): cls for f, cls in zip(fields(Sections), (Data, Augmentation, Training, Tracking))}}


def sections_of(document: dict) -> Sections:
    """The typed sections of a checked document whose defaults are filled in."""
    return _build(Sections, document)


def _build(cls: type, mapping: Mapping):
    # Only the fields: a key the schema gained before this module did is caught by the test, not by a TypeError.
    return cls(**{f.name: _frozen(mapping.get(f.name), _NESTED.get((cls, f.name))) for f in fields(cls)})


def _frozen(value, section: type | None):
    if value is None:
        return None
    if section is not None:
        return _build(section, value)
    if isinstance(value, list):
        return tuple(_frozen(v, None) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v, None) for k, v in value.items()})
    return value


def section_classes() -> dict[str, type]:
    """Each section class by its path in the document (`augmentation.random_erasing` for a nested one)."""
    out: dict[str, type] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in fields(cls):
            nested = _NESTED.get((cls, f.name))
            if nested is not None and is_dataclass(nested):
                out[prefix + f.name] = nested
                walk(nested, prefix + f.name + ".")
    walk(Sections, "")
    return out
