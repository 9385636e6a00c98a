"""Run a family of variants of one experiment as nested MLflow runs: grids, random samples, resumable."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import Location, XrunError
from .spec import Spec, load_spec


@dataclass(frozen=True)
class Variant:
    """One point of the sweep: the overrides that make it, as `--set` texts."""

    overrides: tuple[str, ...]

    @property
    def key(self) -> str:
        return " ".join(self.overrides)


def parse_grid_option(text: str) -> tuple[str, list]:
    """`--grid training.batch_size=32,64,128` -> ('training.batch_size', [32, 64, 128])."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise XrunError("expected KEY=V1,V2,...", where=Location(f"--grid {text}"),
                        hint="e.g. --grid training.batch_size=64,128")
    import yaml

    return key.strip(), [yaml.safe_load(v) for v in values.split(",")]


def variants(spec: Spec, cli_grid: list[str] = ()) -> list[Variant]:
    """Every grid combination, times each random sample (the YAML's `sweep` section plus --grid)."""
    section = spec.document.get("sweep") or {}
    grid = dict(section.get("grid") or {})
    grid.update(parse_grid_option(g) for g in cli_grid)
    samples = _random_samples(section)
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    out = [Variant(tuple(f"{k}={_yaml_value(v)}" for k, v in {**p, **s}.items())) for p in points for s in samples]
    if out == [Variant(())]:
        raise XrunError("nothing to sweep", where=spec.locate(("name",)),
                        hint="add a `sweep:` section with grid/random, or pass --grid KEY=V1,V2")
    return out


def _random_samples(section: dict) -> list[dict]:
    space = section.get("random") or {}
    if not space:
        return [{}]
    rng = random.Random(section.get("seed", 0))
    return [{k: _draw(rng, d) for k, d in space.items()} for _ in range(section.get("samples", 1))]


def _draw(rng: random.Random, dist: dict):
    (kind, arg), = dist.items()
    draws = {"choice": lambda: rng.choice(arg),
             "uniform": lambda: rng.uniform(*arg),
             "loguniform": lambda: math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))),
             "randint": lambda: rng.randint(*arg)}
    value = draws[kind]()
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _yaml_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def check(path: Path, overrides: list[str], todo: list[Variant]) -> list[Spec]:
    """Load every variant before anything trains, so a bad value fails the whole sweep at once."""
    return [load_spec(path, [*overrides, *v.overrides]) for v in todo]


def sweep_key(spec: Spec, all_variants: list[Variant]) -> str:
    """Identifies 'the same sweep' across restarts: the experiment as resolved, and its variants."""
    blob = json.dumps([spec.document, [v.key for v in all_variants]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Outcome:
    variant: Variant
    status: str
    error: str = ""


def run_in_process(spec: Spec, variant: Variant, *, parent_id: str, uri: str, data_dir, console) -> Outcome:
    from .train import run_experiment

    try:
        run_experiment(spec, tracking_uri=uri, data_dir=data_dir, console=console, quiet=True,
                       parent_run_id=parent_id, run_name=f"{spec.name} [{variant.key}]",
                       tags={"xrun.variant": variant.key})
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing variant is recorded FAILED; the sweep goes on
        return Outcome(variant, "FAILED", f"{type(exc).__name__}: {exc}")
    return Outcome(variant, "FINISHED")


def run_in_subprocess(path: Path, overrides: list[str], variant: Variant, *, parent_id: str, uri: str,
                      data_dir) -> Outcome:
    """One variant in its own process (for --jobs > 1): TensorFlow state and memory stay separate."""
    command = [sys.executable, "-m", "runner.cli", "run", str(path), "-q", "--tracking-uri", uri,
               "--parent-run-id", parent_id, "--variant", variant.key]
    command += [a for o in [*overrides, *variant.overrides] for a in ("--set", o)]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return Outcome(variant, "FINISHED")
    return Outcome(variant, "FAILED", (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1])


def run_all(todo: list[Variant], run_one, jobs: int) -> list[Outcome]:
    if jobs <= 1:
        return [run_one(v) for v in todo]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_one, todo))


@dataclass
class Report:
    parent_id: str | None
    all_variants: list[Variant]
    skipped: list[Variant]
    outcomes: list[Outcome]


def run_sweep(path: Path, overrides: list[str], cli_grid: list[str], *, jobs: int = 1, uri: str,
              data_dir=None, console=None, dry_run: bool = False) -> Report:
    """Run every variant not yet FINISHED under one parent run; a failing variant does not stop the others."""
    from . import tracking

    base = load_spec(path, overrides)
    all_variants = variants(base, cli_grid)
    if dry_run:
        return Report(None, all_variants, [], [])
    key = sweep_key(base, all_variants)
    overrides = [*overrides, *_shared_seed(base, key)]
    specs = dict(zip(all_variants, check(path, overrides, all_variants)))
    experiment = base.document["tracking"]["experiment"]
    parent_id, done = _parent(tracking, base, key, experiment, uri)
    todo = [v for v in all_variants if v.key not in done]

    def one(v: Variant) -> Outcome:
        if jobs > 1:
            return run_in_subprocess(path, overrides, v, parent_id=parent_id, uri=uri, data_dir=data_dir)
        return run_in_process(specs[v], v, parent_id=parent_id, uri=uri, data_dir=data_dir, console=console)

    try:
        outcomes = run_all(todo, one, jobs)
    except KeyboardInterrupt:
        tracking.end_run(parent_id, "KILLED", uri)
        raise
    failed = any(o.status != "FINISHED" for o in outcomes)
    tracking.end_run(parent_id, "FAILED" if failed else "FINISHED", uri)
    return Report(parent_id, all_variants, [v for v in all_variants if v.key in done], outcomes)


def _shared_seed(base: Spec, key: str) -> list[str]:
    """Variants of an unseeded experiment share one seed (derived from the sweep), so only the swept keys differ."""
    if base.document["training"].get("seed") is not None:
        return []
    return [f"training.seed={int(key[:8], 16) % 2**31}"]


def _parent(tracking, base: Spec, key: str, experiment: str, uri: str) -> tuple[str, set[str]]:
    """The parent run of this sweep (reopened if an earlier attempt made it) and its FINISHED variants."""
    try:
        earlier = tracking.find_runs(uri, experiments=[experiment], where=f"tags.`xrun.sweep_key` = '{key}'")
    except XrunError:  # the experiment does not exist yet
        earlier = []
    if not earlier:
        run = tracking.Run(uri, experiment, f"{base.name} sweep", base.document.get("description", ""),
                           tags={"xrun.sweep_key": key, "xrun.sweep": "parent", "experiment.file": str(base.path)})
        return run.run_id, set()
    parent_id = earlier[0].run_id
    tracking.reopen(parent_id, uri)
    children = tracking.find_runs(uri, experiments=[experiment], parent_run_id=parent_id)
    return parent_id, {c.tags.get("xrun.variant") for c in children if c.status == "FINISHED"}
