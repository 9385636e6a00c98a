"""The experiment's plain sections as typed, frozen objects, built by `load_spec` from the checked document.

Their fields are the schema's properties (tests/language/test_sections.py keeps the two in step) and their values
come from the document with the schema's defaults filled in: nothing here re-declares a default. A key the schema
leaves without a default and the file leaves out is None. Lists become tuples and mappings read-only, so a
section cannot be changed behind the document's back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class Data:
    """What a run trains on. `options` is the whole section with its source's defaults filled in (an image
    folder's `path`, `image_size`, `cache`, ...): the keys each source takes, as its table entry reads them."""

    source: str
    dataset: str | None             # the built-in dataset (source: builtin)
    limit: int | None
    validation: str                 # "split", "test", "none" or "fold"
    validation_split: float
    folds: int | None               # with validation "fold": how many stratified folds ...
    fold: int | None                # ... and the one validated on
    split_seed: int                 # seeds the stratified splits xrun draws
    options: Mapping[str, Any]


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
class StopAt:
    metric: str
    value: float
    direction: str                  # "auto", "above" or "below"

    @property
    def above(self) -> bool:
        """Whether reaching means >= value (else <=): `auto` is below for a loss, above for anything else."""
        return self.direction == "above" or (self.direction == "auto" and not self.metric.endswith("loss"))

    def describe(self) -> str:
        return f"{self.metric} {'>=' if self.above else '<='} {self.value:g}"


@dataclass(frozen=True)
class Phase:
    """One phase of `training.phases`: its epochs, what it freezes (by layer or block-use name) and its rate."""

    epochs: int
    freeze: tuple[str, ...] | None  # these layers frozen, the others trained ...
    train_from: str | None          # ... or every layer from this one on trained, those before it frozen
    learning_rate: float | None     # None: optimizer.learning_rate
    batch_norm: str                 # "frozen" or "train": the BatchNormalization layers an earlier phase froze


@dataclass(frozen=True)
class Training:
    epochs: int
    batch_size: int
    class_weight: str | Mapping[str, float] | None   # "auto", or a weight per class name
    sampling: str                   # "uniform" or "balanced"
    stop_at: StopAt | None          # end training once a metric reaches a value
    shuffle: bool
    tta: bool                       # test-time augmentation of the run's own test scoring
    seed: int | None
    precision: str
    jit_compile: str | bool         # "auto", true or false
    steps_per_execution: int | str  # a count, or "auto"
    distribute: str
    phases: tuple[Phase, ...] | None  # fine-tuning in phases; None: one phase, as the model says


@dataclass(frozen=True)
class Tracking:
    experiment: str
    tags: Mapping[str, Any] | None
    log_model: bool
    log_images: bool


@dataclass(frozen=True)
class Named:
    """A Keras object the YAML names by class (`type`) with its Keras arguments (a loss, a callback, a schedule).

    The arguments stay a read-only mapping: they are Keras's own argument names, which the schema lists per class;
    a field per argument would declare the schema a second time."""

    type: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Optimizer(Named):
    """`arguments` without `learning_rate` when that is a schedule (counted in epochs), which is then `schedule`."""

    schedule: Named | None


@dataclass(frozen=True)
class Sweep:
    grid: Mapping[str, tuple] | None
    random: Mapping[str, Mapping] | None
    method: str | None
    trials: int | None
    metric: str
    direction: str | None
    pruner: str | Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class Sections:
    """The document's sections but the model (whose typed form is the graph); `augmentation` and `sweep` are None
    where the file has none."""

    data: Data
    augmentation: Augmentation | None
    training: Training
    tracking: Tracking
    optimizer: Optimizer
    loss: Named
    metrics: tuple[str, ...]
    callbacks: tuple[Named, ...]
    sweep: Sweep | None


class HasSections:
    """`x.data`, `x.training`, `x.optimizer`, ...: the typed sections of anything holding `sections` (a Spec as
    written, a Config with its decisions made)."""

    sections: Sections

    @property
    def data(self) -> Data:
        return self.sections.data

    @property
    def augmentation(self) -> Augmentation | None:
        return self.sections.augmentation

    @property
    def training(self) -> Training:
        return self.sections.training

    @property
    def tracking(self) -> Tracking:
        return self.sections.tracking

    @property
    def optimizer(self) -> Optimizer:
        return self.sections.optimizer

    @property
    def loss(self) -> Named:
        return self.sections.loss

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.sections.metrics

    @property
    def callbacks(self) -> tuple[Named, ...]:
        return self.sections.callbacks

    @property
    def sweep(self) -> Sweep | None:
        return self.sections.sweep


# Fields that hold a section of their own.
_NESTED = {(Augmentation, "random_erasing"): RandomErasing, (Augmentation, "random_crop"): RandomCrop,
           (Augmentation, "mixup"): Mixing, (Augmentation, "cutmix"): Mixing, (Training, "stop_at"): StopAt,
           (Training, "phases"): Phase,
           **{(Sections, f.name): cls for f, cls in zip(fields(Sections), (Data, Augmentation, Training, Tracking))},
           (Sections, "sweep"): Sweep}


def sections_of(document: dict, data_options: Mapping[str, Any]) -> Sections:
    """The typed sections of a checked document whose defaults are filled in; `data_options` is the data section
    with its source's defaults (runner.language.data_facts.settings)."""
    plain = _build(Sections, document)
    return replace(plain, data=replace(plain.data, options=_frozen(dict(data_options), None)),
                   optimizer=optimizer_of(document["optimizer"]), loss=named(document["loss"]),
                   callbacks=tuple(named(c) for c in document.get("callbacks") or ()))


def named(value: str | Mapping) -> Named:
    """`Adam` is short for `{type: Adam}`, as the schema allows for optimizers and losses."""
    value = {"type": value} if isinstance(value, str) else value
    return Named(value["type"], _frozen({k: v for k, v in value.items() if k != "type"}, None))


def optimizer_of(value: str | Mapping) -> Optimizer:
    plain = named(value)
    rate = plain.arguments.get("learning_rate")
    if not isinstance(rate, Mapping):
        return Optimizer(plain.type, plain.arguments, None)
    arguments = MappingProxyType({k: v for k, v in plain.arguments.items() if k != "learning_rate"})
    return Optimizer(plain.type, arguments, named(rate))


def as_mapping(section) -> dict:
    """A section as the plain mapping the YAML wrote, keys left out where the section has None (for code that
    takes its parameters so, like the augmentation steps)."""
    return {f.name: plain(as_mapping(v) if is_dataclass(v) else v)
            for f in fields(section) if (v := getattr(section, f.name)) is not None}


def plain(value):
    """A section's value as YAML writes it: tuples as lists, read-only mappings as dicts (for `yaml.safe_dump`)."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def _build(cls: type, mapping: Mapping):
    # Only the fields: a key the schema gained before this module did is caught by the test, not by a TypeError.
    return cls(**{f.name: _frozen(mapping.get(f.name), _NESTED.get((cls, f.name))) for f in fields(cls)})


def _frozen(value, section: type | None):
    if value is None:
        return None
    if section is not None:  # a list of sections (training.phases) is a tuple of them
        return tuple(_build(section, v) for v in value) if isinstance(value, list) else _build(section, value)
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
