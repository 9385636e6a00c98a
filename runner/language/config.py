"""One run's resolved, typed and frozen configuration: the experiment with every decision made (seed, precision, how
the machine is used, the data's shape and classes); the only thing code below the CLI reads of an experiment."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from runner.errors import Location
from runner.language.data_facts import DataFacts
from runner.language.graph import Graph
from runner.language.sections import HasSections, Sections, plain
from runner.language.source import Path_
from runner.language.spec import Spec, load_spec


@dataclass(frozen=True)
class Settings:
    """How this run uses the machine, the YAML's `auto`s decided (runner.training.settings decides them)."""

    precision: str
    jit_compile: bool
    steps_per_execution: int
    device: str
    seed: int
    seed_given: bool
    deterministic: bool
    onednn: bool = False  # TensorFlow's oneDNN CPU kernels in use (switched on at its import, for the process)


@dataclass(frozen=True, eq=False)
class Config(HasSections):
    """A checked experiment with its decisions made: `training.seed` and `training.precision` are the ones used,
    `settings` how the machine is used, `facts` the data's example shape and class names (None where a source only
    says so when loaded)."""

    spec: Spec
    sections: Sections
    settings: Settings
    facts: DataFacts

    # --- what the experiment says -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def path(self) -> Path:
        return self.spec.path

    @property
    def text(self) -> str:
        return self.spec.text

    @property
    def overrides(self) -> tuple[str, ...]:
        return tuple(self.spec.overrides)

    @property
    def graph(self) -> Graph:
        return self.spec.graph

    @property
    def input_shape(self) -> tuple | None:
        return self.spec.input_shape

    def locate(self, path: Path_, key: bool = False) -> Location | None:
        return self.spec.locate(path, key)

    # --- written out and read back ------------------------------------------------------------------------------

    def resolved(self) -> dict:
        """The config as it runs, as YAML writes it (config/resolved.yaml): the file, its bases and overrides
        merged, the schema's defaults filled in, and the seed and precision this run used."""
        return self.spec.resolved_document(seed=self.training.seed, precision=self.training.precision)

    def __eq__(self, other) -> bool:
        """Equal configs run the same: the same sections, decisions and model (not the same file on disk)."""
        if not isinstance(other, Config):
            return NotImplemented
        return (self.sections, self.settings, self.facts, self.name, self.description, plain(self.resolved()["model"])) \
            == (other.sections, other.settings, other.facts, other.name, other.description,
                plain(other.resolved()["model"]))

    __hash__ = None  # type: ignore[assignment]


def resolve(spec: Spec, settings: Settings) -> Config:
    """The config of one run of `spec`, the machine's decisions made (`settings`); the data's facts read here."""
    decided = replace(spec.sections, training=replace(spec.training, seed=settings.seed,
                                                      precision=settings.precision))
    return Config(spec, decided, settings, spec.data_facts())


def read_resolved(text: str, path: str | Path, settings: Settings) -> Config:
    """A run's config/resolved.yaml read back as a Config (the file written somewhere as `path`, so that data paths
    relative to it mean what they meant)."""
    return resolve(load_spec_text(text, Path(path)), settings)


def load_spec_text(text: str, path: Path) -> Spec:
    """A Spec from YAML text, as if it were the file `path` (which is never read); its data may have gone since."""
    return load_spec(path, text=text, data_must_exist=False)

