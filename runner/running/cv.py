"""`xrun cv`: k-fold cross-validation as one parent MLflow run with a nested run per fold (`data.validation: fold`),
the parent holding the mean and spread of each metric the folds' runs ended with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from runner.errors import XrunError
from runner.language.spec import Spec, load_spec
from runner.records import names, query, store
from runner.records.alive import kept_alive

# The parent's metrics: names.CV_STAT of each metric and these; std is NumPy's default, the population's (ddof=0).
STATS: dict[str, Callable[[np.ndarray], float]] = {"mean": np.mean, "std": np.std, "min": np.min, "max": np.max}


@dataclass
class Report:
    parent_id: str
    folds: list = field(default_factory=list)   # (fold, run id, test accuracy) of each fold's run
    stats: dict = field(default_factory=dict)   # names.CV_STAT name -> value, as logged on the parent


def fold_overrides(folds: int, fold: int) -> list[str]:
    """The --set values that make a run one fold of `folds`."""
    return ["data.validation=fold", f"data.folds={folds}", f"data.fold={fold}"]


def plan(path: Path, overrides: list[str], folds: int) -> list[Spec]:
    """Every fold's experiment, checked before anything trains (a bad file fails here, leaving no parent run)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise XrunError(f"--folds {folds}: cross-validation needs 2 folds or more", where=str(path),
                        hint="give --folds 5 (or 10)")
    return [load_spec(path, [*overrides, *fold_overrides(folds, i)]).without_sweep() for i in range(folds)]


def stats(metrics: list[dict]) -> dict[str, float]:
    """names.CV_STAT of each metric every fold's run has (its last value), over the folds."""
    common = sorted(set.intersection(*(set(m) for m in metrics))) if metrics else []
    # Sorted values: the statistics do not depend on the order the store lists the runs in, to the last bit.
    return {names.CV_STAT.format(metric=key, stat=stat): float(fn(np.sort([float(m[key]) for m in metrics])))
            for key in common for stat, fn in STATS.items()}


def run_cv(path: Path, overrides: list[str], folds: int, *, uri: str, data_dir: str | None = None,  # noqa: PLR0913
           console=None, quiet: bool = True, say: Callable[[str], None] = lambda line: None) -> Report:
    """Train each fold as a child of one parent run; the parent ends FINISHED with the folds' statistics, FAILED
    when a fold fails (the folds after it are not trained) and KILLED when interrupted."""
    specs = plan(path, overrides, folds)
    report = Report(_new_parent(specs[0], folds, overrides, uri))
    say(f"cross-validation of {specs[0].name} in {folds} folds; MLflow parent run {report.parent_id}")
    try:
        with kept_alive(uri, report.parent_id):  # a SIGKILLed cv leaves a parent `xrun sync` ends KILLED
            for fold, spec in enumerate(specs):
                report.folds.append(_train_fold(spec, fold, folds, report.parent_id, uri, data_dir, console, quiet,
                                                say))
    except BaseException as exc:
        _end_parent(report.parent_id, uri, exc)
        raise
    children = query.find_runs(uri, parent_run_id=report.parent_id)
    report.stats = stats([c.metrics for c in children if c.status == "FINISHED"])
    store.add_to_run(report.parent_id, uri, metrics=report.stats)
    store.end_run(report.parent_id, "FINISHED", uri)
    return report


def _train_fold(spec: Spec, fold: int, folds: int, parent_id: str, uri: str, data_dir, console, quiet: bool,  # noqa: PLR0913
                say) -> tuple:
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    say(f"[fold {fold}] training")
    result = run_experiment(RunRequest(spec, tracking_uri=uri, parent_run_id=parent_id, data_dir=data_dir,
                                       run_name=names.FOLD_RUN_NAME.format(name=spec.name, fold=fold),
                                       tags={names.CV_FOLD: fold, names.CV_FOLDS: folds}, console=console,
                                       quiet=quiet))
    say(f"[fold {fold}] run {result.run_id}: test accuracy {result.test_accuracy:.4f}"
        + (f", best val accuracy {result.best_val_accuracy:.4f}" if result.best_val_accuracy is not None else ""))
    return fold, result.run_id, result.test_accuracy


def _new_parent(spec: Spec, folds: int, overrides: list[str], uri: str) -> str:
    tags = {names.CV: "parent", names.CV_FOLDS: folds, names.EXPERIMENT_FILE: str(spec.path)}
    texts = {names.CONFIG.format(name=spec.path.name): spec.text,
             names.OVERRIDES: "".join(f"{o}\n" for o in overrides)}
    params = {"cv.folds": folds, "data.split_seed": spec.data.split_seed}
    return store.plain_run(uri, spec.tracking.experiment, names.CV_RUN_NAME.format(name=spec.name),
                           spec.description, tags, texts, params)


def _end_parent(parent_id: str, uri: str, exc: BaseException) -> None:
    """KILLED for an interrupt (Ctrl-C, SIGTERM), FAILED for an error, saying why; the folds' runs stay."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    reason = "interrupted" if interrupted else (exc.line() if isinstance(exc, XrunError)
                                                 else f"{type(exc).__name__}: {exc}")
    store.add_to_run(parent_id, uri, tags={names.END_REASON: f"a fold's run ended: {reason}"[:500]})
    store.end_run(parent_id, "KILLED" if interrupted else "FAILED", uri)
