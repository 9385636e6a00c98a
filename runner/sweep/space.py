"""What a sweep searches: its grid and random keys from the YAML and --grid, as plain data (no Optuna here).

`xrun sweep --dry-run` lists a grid or a search space from this module alone: no TensorFlow, MLflow or Optuna.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import Location, XrunError
from runner.language.sections import Sweep, plain
from runner.language.source import parse, python_tuple
from runner.language.spec import Spec, load_spec
from runner.records.run_names import short_name, yaml_value  # noqa: F401 (short_name: the sweep's API)

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Variant:
    """One point of the sweep: the overrides that make it, as `--set` texts."""

    overrides: tuple[str, ...]

    @property
    def key(self) -> str:
        return " ".join(self.overrides)


@dataclass
class Space:
    """The keys a sweep varies: `grid` key -> values, `random` key -> {distribution: args}, in the YAML's order."""

    grid: dict
    random: dict
    method: str
    trials: int | None        # None: every grid point
    metric: str
    direction: str
    pruner: dict              # {"type": name, **arguments}
    seed: int
    keys: list = field(default_factory=list)

    def __post_init__(self):
        self.keys = [*self.grid, *self.random]

    def points(self) -> list[Variant]:
        """Every grid combination, in order."""
        return [variant_of(dict(zip(self.grid, c))) for c in itertools.product(*self.grid.values())]

    @property
    def target(self) -> int:
        """How many trials the study runs: the grid's points (at most `trials`), or `trials` draws."""
        if self.method != "grid":
            return self.trials
        size = math.prod(len(v) for v in self.grid.values())
        return size if self.trials is None else min(size, self.trials)


# --- the YAML section and --grid ----------------------------------------------------------------------------

def parse_grid_option(text: str) -> tuple[str, list]:
    """`--grid training.batch_size=32,64,128` -> ('training.batch_size', [32, 64, 128]).

    Commas inside brackets or quotes do not split: `--grid model.layers[0].kernel_size=[3,3],[5,5]`.
    """
    where = Location(f"--grid {text}")
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise XrunError("expected KEY=V1,V2,...", where=where, hint="e.g. --grid training.batch_size=64,128")
    return key.strip(), [_parse_value(v, where) for v in _split_values(values)]


def _split_values(text: str) -> list[str]:
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":  # `(3, 3)` too, so that it is refused whole, with its hint, not as `(3` and `3)`
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    return [p.strip() for p in [*parts, "".join(current)]]


def _parse_value(raw: str, where: Location):
    """A value read as `--set` reads it (so `1e-3` is a number, as in the YAML files)."""
    if not raw:
        raise XrunError("an empty value in the list", where=where, hint="e.g. --grid training.batch_size=64,128")
    if listed := python_tuple(raw):
        raise XrunError(f"{raw} is a Python tuple, which YAML reads as text", where=where,
                        hint=f"write a YAML list: {listed}")
    try:
        return parse(f"v: {raw}", str(where))[0]["v"]
    except XrunError as exc:
        raise XrunError(f"'{raw}' is not a YAML value ({exc.message})", where=where) from None


def space(spec: Spec, cli_grid: list[str] = ()) -> Space:
    """The sweep section (schema defaults filled) plus --grid, checked for what the schema cannot say."""
    section = spec.sections.sweep or Sweep(None, None, None, None, "val_accuracy", None, "none", 0)
    grid, rand = plain(section.grid or {}), plain(section.random or {})
    both = sorted(set(grid) & set(rand))
    if both:
        raise XrunError(f"{both[0]} is both in sweep.grid and sweep.random", where=spec.locate(("sweep", "random")),
                        path="sweep", hint="sweep each key one way")
    for key, values in map(parse_grid_option, cli_grid):
        grid[key] = values  # --grid replaces the file's values for that key (grid or random)
        rand.pop(key, None)
    if not grid and not rand:
        raise XrunError("nothing to sweep", where=spec.locate(("name",)),
                        hint="add a `sweep:` section with grid/random, or pass --grid KEY=V1,V2")
    method = section.method or ("random" if rand else "grid")
    metric = section.metric
    direction = section.direction or ("minimize" if metric.endswith("loss") else "maximize")
    pruner = plain(section.pruner)
    out = Space(grid, rand, method, section.trials, metric, direction,
                pruner if isinstance(pruner, dict) else {"type": pruner}, section.seed)
    _check(spec, out)
    return out


def _check(spec: Spec, s: Space) -> None:
    where = spec.locate(("sweep", "method")) or spec.locate(("sweep",))
    if s.method == "grid" and s.random:
        raise XrunError("method grid tries every point of sweep.grid, and cannot draw sweep.random",
                        where=where, path="sweep.method",
                        hint="use method: random, tpe or cmaes (each grid key is then a choice), or list the values "
                             "in sweep.grid")
    if s.method != "grid" and s.trials is None:
        raise XrunError(f"method {s.method} needs sweep.trials (how many trials to draw)", where=where,
                        path="sweep.method", hint="e.g. trials: 20")
    if s.method == "cmaes" and not s.random:
        raise XrunError("method cmaes searches numbers: it needs sweep.random with uniform, loguniform or randint "
                        "keys", where=where, path="sweep.method", hint="use method: tpe for grid keys")
    _check_metric(spec, s)


def _check_metric(spec: Spec, s: Space) -> None:
    """The metric must be one the runs log: an epoch metric of the compiled model, or a test score."""
    if s.metric in ("test_accuracy", "test_loss"):
        if s.pruner["type"] != "none":
            raise XrunError(f"{s.metric} is measured once, after training: a pruner has nothing to compare per "
                            "epoch", where=spec.locate(("sweep", "pruner")), path="sweep.pruner",
                            hint="prune on an epoch metric (metric: val_accuracy), or use pruner: none")
        return
    base = s.metric.removeprefix("val_")
    known = ["loss", *spec.sections.metrics]
    validated = spec.data.validation != "none"
    if base not in known or (s.metric.startswith("val_") and not validated):
        names = [*known, *(f"val_{k}" for k in known if validated), "test_accuracy", "test_loss"]
        raise XrunError(f"the runs log no metric '{s.metric}'", where=spec.locate(("sweep", "metric")),
                        path="sweep.metric", hint="one of " + ", ".join(names))


# --- values as --set texts, and short names ------------------------------------------------------------------

def variant_of(values: dict) -> Variant:
    return Variant(tuple(f"{k}={yaml_value(v)}" for k, v in values.items()))


def choices(values: list) -> list:
    """Values as Optuna's categorical choices: scalars as they are, lists and mappings as their --set text."""
    return list(values) if all(isinstance(v, _SCALARS) for v in values) else [yaml_value(v) for v in values]


def from_choice(value, values: list):
    """The YAML value a categorical choice stands for (the inverse of `choices`)."""
    return value if all(isinstance(v, _SCALARS) for v in values) else values[choices(values).index(value)]


def values_of(params: dict, s: Space) -> dict:
    """A trial's params (Optuna's choices and numbers) as the YAML values they stand for, in the sweep's order."""
    out = {k: from_choice(params[k], v) for k, v in s.grid.items() if k in params}
    for key, dist in s.random.items():
        if key in params:
            out[key] = from_choice(params[key], dist["choice"]) if "choice" in dist else params[key]
    return out


# --- checking before anything trains -------------------------------------------------------------------------

def probes(s: Space) -> list[Variant]:
    """Variants to load before a sweep starts: every grid point; otherwise each listed value and each bound of
    every key (others at their first value), which is where a bad key or value shows."""
    if s.method == "grid":
        return s.points()
    ends = {**{k: list(v) for k, v in s.grid.items()},
            **{k: _ends(d) for k, d in s.random.items()}}
    first = {k: v[0] for k, v in ends.items()}
    out = [variant_of({**first, k: value}) for k, values in ends.items() for value in values]
    return list(dict.fromkeys(out))


def _ends(dist: dict) -> list:
    (kind, arg), = dist.items()
    return list(arg)  # a choice's values, or a range's two ends


def sweep_key(spec: Spec, s: Space) -> str:
    """Identifies 'the same sweep' across restarts and machines: the experiment as resolved, and what it varies."""
    blob = json.dumps([spec.resolved_document(), s.grid, s.random], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shared_seed(base: Spec, key: str) -> list[str]:
    """Variants of an unseeded experiment share one seed (derived from the sweep), so only the swept keys differ."""
    if base.training.seed is not None:
        return []
    return [f"training.seed={int(key[:8], 16) % 2**31}"]


@dataclass
class Plan:
    base: Spec
    path: Path
    space: Space
    key: str
    overrides: list[str]      # the command's --set, and the shared seed
    cli_overrides: list[str]  # the command's own --set
    cli_grid: list[str]

    @property
    def study_name(self) -> str:
        return f"xrun-{self.base.name}-{self.key}"

    def load(self, variant: Variant) -> Spec:
        """One trial's experiment; its `sweep` section (the family it came from) stays with the parent run."""
        return load_spec(self.path, [*self.overrides, *variant.overrides]).without_sweep()


def prepare(path: Path, overrides: list[str], cli_grid: list[str]) -> Plan:
    """The sweep, every probe variant loaded as `xrun validate` would, so a bad value fails before anything trains."""
    base = load_spec(path, overrides)
    s = space(base, cli_grid)
    key = sweep_key(base, s)
    plan = Plan(base, Path(path), s, key, [*overrides, *shared_seed(base, key)], list(overrides),
                list(cli_grid))
    for variant in probes(s):
        plan.load(variant)
    return plan


def describe(s: Space) -> list[str]:
    """The lines of a dry run: the grid's points, or the search space and how it is searched."""
    if s.method == "grid":
        return [f"{i:3d}  {v.key}" for i, v in enumerate(s.points(), 1)]
    lines = [f"{s.target} trials drawn by {s.method} from:"]
    lines += [f"  {k}: choice of {', '.join(map(yaml_value, v))}" for k, v in s.grid.items()]
    lines += [f"  {k}: {kind} {', '.join(map(yaml_value, arg))}" for k, d in s.random.items()
              for kind, arg in d.items()]
    return lines


def params(s: Space) -> dict:
    """The search space as a sweep parent's MLflow params: `sweep.grid.KEY` its values, `sweep.random.KEY` its
    distribution (so the parent's Parameters say what was searched)."""
    out = {f"sweep.grid.{k}": ", ".join(map(yaml_value, v)) for k, v in s.grid.items()}
    out.update({f"sweep.random.{k}": f"{kind} {', '.join(map(yaml_value, arg))}" for k, d in s.random.items()
                for kind, arg in d.items()})
    return out
