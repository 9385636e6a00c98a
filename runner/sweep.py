"""Run a family of variants of one experiment as nested MLflow runs: grids, random samples, resumable."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runner.errors import Location, XrunError
from runner.language.source import parse
from runner.language.spec import Spec, load_spec

# Nothing here imports TensorFlow or MLflow at module level: `xrun sweep --dry-run` needs neither.


@dataclass(frozen=True)
class Variant:
    """One point of the sweep: the overrides that make it, as `--set` texts."""

    overrides: tuple[str, ...]

    @property
    def key(self) -> str:
        return " ".join(self.overrides)


# --- the variants ----------------------------------------------------------------------------------------

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
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
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
    try:
        return parse(f"v: {raw}", str(where))[0]["v"]
    except XrunError as exc:
        raise XrunError(f"'{raw}' is not a YAML value ({exc.message})", where=where) from None


def variants(spec: Spec, cli_grid: list[str] = ()) -> list[Variant]:
    """Every grid combination, times each random sample (the YAML's `sweep` section plus --grid), without repeats."""
    section = spec.document.get("sweep") or {}
    grid, space = dict(section.get("grid") or {}), dict(section.get("random") or {})
    both = sorted(set(grid) & set(space))
    if both:
        raise XrunError(f"{both[0]} is both in sweep.grid and sweep.random", where=spec.locate(("sweep", "random")),
                        path="sweep", hint="sweep each key one way")
    for key, values in map(parse_grid_option, cli_grid):
        grid[key] = values  # --grid replaces the file's values for that key (grid or random)
        space.pop(key, None)
    samples = _random_samples(space, section)
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    out = [Variant(tuple(f"{k}={_yaml_value(v)}" for k, v in {**p, **s}.items())) for p in points for s in samples]
    if out == [Variant(())]:
        raise XrunError("nothing to sweep", where=spec.locate(("name",)),
                        hint="add a `sweep:` section with grid/random, or pass --grid KEY=V1,V2")
    # Random draws can repeat (a `choice`, a narrow `randint`); with one shared seed a repeat is the same run again.
    return list(dict.fromkeys(out))


def _random_samples(space: dict, section: dict) -> list[dict]:
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
    if kind in ("uniform", "loguniform"):
        # Six significant digits keep run names readable; rounding must not step outside the range asked for.
        value = min(max(float(f"{value:.6g}"), min(arg)), max(arg))
    return value


def _yaml_value(value) -> str:
    """The value as `--set` text that reads back as the same value."""
    if isinstance(value, str):
        try:
            if parse(f"v: {value}", "value")[0]["v"] == value:
                return value
        except XrunError:
            pass
    if isinstance(value, float) and math.isfinite(value):
        text = format(value, ".12g")  # 1e+12, not 1000000000000.0
        return text if any(c in text for c in ".e") else text + ".0"  # and a float stays a float
    return json.dumps(value)  # JSON is YAML: quoted strings, numbers, flow lists and mappings


def check(path: Path, overrides: list[str], todo: list[Variant]) -> list[Spec]:
    """Load every variant before anything trains, so a bad value fails the whole sweep at once."""
    return [load_spec(path, [*overrides, *v.overrides]) for v in todo]


def sweep_key(spec: Spec, all_variants: list[Variant]) -> str:
    """Identifies 'the same sweep' across restarts: the experiment as resolved, and its variants."""
    blob = json.dumps([spec.document, [v.key for v in all_variants]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shared_seed(base: Spec, key: str) -> list[str]:
    """Variants of an unseeded experiment share one seed (derived from the sweep), so only the swept keys differ."""
    if base.document["training"].get("seed") is not None:
        return []
    return [f"training.seed={int(key[:8], 16) % 2**31}"]


@dataclass
class _Plan:
    base: Spec
    key: str
    overrides: list[str]            # the command's --set, plus the shared seed
    specs: dict                     # Variant -> its checked Spec, in sweep order


def _prepare(path: Path, overrides: list[str], cli_grid: list[str]) -> _Plan:
    base = load_spec(path, overrides)
    all_variants = variants(base, cli_grid)
    key = sweep_key(base, all_variants)
    # A variant is one experiment: its `sweep` section (the family it came from) stays with the parent run.
    overrides = [*overrides, *_shared_seed(base, key), "sweep={}"]
    return _Plan(base, key, overrides, dict(zip(all_variants, check(path, overrides, all_variants))))


def plan(path: Path, overrides: list[str], cli_grid: list[str]) -> list[Variant]:
    """The variants a sweep would train, each checked as `xrun validate` would (no TensorFlow, no MLflow)."""
    return list(_prepare(path, overrides, cli_grid).specs)


# --- running them ----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    variant: Variant
    status: str
    error: str = ""
    seconds: float = 0.0


def run_name(name: str, variant: Variant) -> str:
    """A child run's name says what varied."""
    return f"{name} [{variant.key}]"


def run_in_process(spec: Spec, variant: Variant, *, parent_id: str, uri: str, data_dir, console) -> Outcome:
    from runner.run import run_experiment

    started = time.perf_counter()
    try:
        run_experiment(spec, tracking_uri=uri, data_dir=data_dir, console=console, quiet=True,
                       parent_run_id=parent_id, run_name=run_name(spec.name, variant),
                       tags={"xrun.variant": variant.key})
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing variant is recorded FAILED; the sweep goes on
        message = exc.line() if isinstance(exc, XrunError) else f"{type(exc).__name__}: {exc}"
        return Outcome(variant, "FAILED", _one_line(message), time.perf_counter() - started)
    return Outcome(variant, "FINISHED", seconds=time.perf_counter() - started)


def run_in_subprocess(path: Path, overrides: list[str], variant: Variant, *, parent_id: str, uri: str,
                      data_dir) -> Outcome:
    """One variant in its own process (for --jobs > 1): TensorFlow state and memory stay separate."""
    command = [sys.executable, "-m", "runner.cli", "run", str(path), "-q", "--tracking-uri", uri,
               "--parent-run-id", parent_id, "--variant", variant.key]
    command += [a for o in [*overrides, *variant.overrides] for a in ("--set", o)]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode == 0:
        return Outcome(variant, "FINISHED", seconds=seconds)
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return Outcome(variant, "FAILED", _one_line(last), seconds)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def run_all(todo: list[Variant], run_one: Callable[[int, Variant], Outcome], jobs: int) -> list[Outcome]:
    """Outcomes in the order of `todo`, whatever order they finish in."""
    if jobs <= 1:
        return [run_one(i, v) for i, v in enumerate(todo, 1)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_one, range(1, len(todo) + 1), todo))


@dataclass
class Report:
    parent_id: str | None
    all_variants: list[Variant]
    skipped: list[Variant]
    outcomes: list[Outcome]


def run_sweep(path: Path, overrides: list[str], cli_grid: list[str], *, jobs: int = 1, uri: str,
              data_dir=None, console=None, progress: Callable[[str], None] | None = None,
              reclaim: bool = False) -> Report:
    """Run every variant not yet FINISHED under one parent run; a failing variant does not stop the others.

    Machines that share a tracking server can run the same sweep at once: each claims a variant before
    training it (see store.claim), so none is run twice. `reclaim` retries variants whose claim was left
    RUNNING by a machine that stopped.
    """
    from runner.records import store

    p = _prepare(path, overrides, cli_grid)
    all_variants = list(p.specs)
    parent_id, done = _parent(store, p, uri)
    todo = [v for v in all_variants if v.key not in done]
    say = progress or (lambda line: None)
    if done:
        say(f"sweep {parent_id[:8]}: {len(done & {v.key for v in all_variants})} variants finished earlier, "
            f"{len(todo)} to run")

    def one(i: int, v: Variant) -> Outcome:
        claim_id = store.claim(uri, parent_id, v.key, reclaim=reclaim)
        if claim_id is None:  # another machine sharing this tracking server has it
            say(f"[{i}/{len(todo)}] {v.key}: taken by another process")
            return Outcome(v, "SKIPPED", "claimed by another process")
        say(f"[{i}/{len(todo)}] {v.key}: training")
        outcome = Outcome(v, "FAILED", "interrupted")
        try:
            if jobs > 1:
                outcome = run_in_subprocess(path, p.overrides, v, parent_id=parent_id, uri=uri, data_dir=data_dir)
            else:
                outcome = run_in_process(p.specs[v], v, parent_id=parent_id, uri=uri, data_dir=data_dir,
                                         console=console)
        finally:
            store.release(uri, claim_id, outcome.status)
        say(f"[{i}/{len(todo)}] {v.key}: {outcome.status} in {outcome.seconds:.1f}s")
        return outcome

    status = "KILLED"
    try:
        outcomes = run_all(todo, one, jobs)
        status = "FAILED" if any(o.status == "FAILED" for o in outcomes) else "FINISHED"
    except KeyboardInterrupt:
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:  # the parent never stays RUNNING
        store.end_run(parent_id, status, uri)
    return Report(parent_id, all_variants, [v for v in all_variants if v.key in done], outcomes)


def _parent(store, p: _Plan, uri: str) -> tuple[str, set[str]]:
    """The parent run of this sweep (reopened if an earlier attempt made it) and its FINISHED variants."""
    from runner.records import query

    experiment = p.base.document["tracking"]["experiment"]
    try:
        earlier = query.find_runs(uri, experiments=[experiment], where=f"tags.`xrun.sweep_key` = '{p.key}'")
    except XrunError:  # the experiment does not exist yet
        earlier = []
    if not earlier:
        _new_parent(store, p, uri, experiment)
        # Machines starting the same sweep together each made a parent: all adopt the oldest, the rest go.
        earlier = query.find_runs(uri, experiments=[experiment], where=f"tags.`xrun.sweep_key` = '{p.key}'")
        oldest = min(earlier, key=lambda r: (r.start_ms, r.run_id))
        for other in earlier:
            if other.run_id != oldest.run_id and other.status == "RUNNING" and not query.find_runs(
                    uri, parent_run_id=other.run_id):
                store.delete_run(other.run_id, uri)
        return oldest.run_id, set()
    parent_id = min(earlier, key=lambda r: (r.start_ms, r.run_id)).run_id
    store.reopen(parent_id, uri)
    # Children are looked for in every experiment: a sweep over tracking.experiment puts them elsewhere.
    children = query.find_runs(uri, parent_run_id=parent_id)
    return parent_id, {c.tags.get("xrun.variant") for c in children if c.status == "FINISHED"}


def _new_parent(store, p: _Plan, uri: str, experiment: str) -> str:
    base = p.base
    run = store.Run(uri, experiment, f"{base.name} sweep", base.document.get("description", ""),
                       tags={"xrun.sweep_key": p.key, "xrun.sweep": "parent", "xrun.variants": len(p.specs),
                             "experiment.file": str(base.path)})
    try:
        run.log_text(base.text, f"config/{base.path.name}")
        run.log_text("".join(f"{v.key}\n" for v in p.specs), "sweep/variants.txt")
        run.log_text("".join(f"{o}\n" for o in p.overrides), "config/overrides.txt")
    finally:
        shutil.rmtree(run.artifact_dir, ignore_errors=True)  # a parent trains nothing: its scratch folder goes
    return run.run_id
