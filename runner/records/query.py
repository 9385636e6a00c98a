"""Reading runs back from MLflow as plain records: finding them, their metric histories and artifacts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
from mlflow.tracking import MlflowClient

from runner.errors import XrunError
from runner.records.store import _get_run, _short, client, tracking_uri


def load_logged_model(model_uri: str):
    return mlflow.keras.load_model(model_uri)


def metric_history(run_id: str, key: str, uri: str | None = None) -> list[float]:
    return [m.value for m in sorted(client(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


def is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --- finding runs (compare, list, sweep) ----------------------------------------------------------------

@dataclass
class RunRecord:
    """A run as plain data, so the modules that compare and list runs never touch mlflow."""

    run_id: str
    name: str
    experiment: str
    status: str
    description: str
    params: dict
    metrics: dict
    tags: dict
    start_ms: int
    end_ms: int | None

    @property
    def seconds(self) -> float | None:
        return (self.end_ms - self.start_ms) / 1000 if self.end_ms else None


def find_runs(uri: str | None = None, *, experiments: list[str] | None = None, run_ids: list[str] | None = None,
              latest: int | None = None, where: str = "", parent_run_id: str | None = None) -> list[RunRecord]:
    """Runs, newest first: given ids, or those of the named experiments (all if none) matching `where`
    (MLflow's filter syntax, e.g. "params.training.batch_size = '64'" or "tags.xrun.sweep = 'abc'")."""
    c = client(uri)
    names = {e.experiment_id: e.name for e in c.search_experiments()}
    if run_ids:
        return [_record(_get_run(c, r), names) for r in run_ids]
    ids = [i for i, n in names.items() if not experiments or n in experiments]
    if experiments and not ids:
        raise XrunError(f"no MLflow experiment named {', '.join(repr(e) for e in experiments)}",
                        hint="known: " + ", ".join(sorted(names.values())) if names else "no runs recorded yet")
    clauses = [w for w in (where, f"tags.mlflow.parentRunId = '{parent_run_id}'" if parent_run_id else "") if w]
    runs = _search(c, ids, " and ".join(clauses), latest)
    return [_record(r, names) for r in runs]


def _search(c: MlflowClient, ids: list[str], filter_string: str, latest: int | None) -> list:
    if not ids:
        return []
    try:
        return c.search_runs(ids, filter_string=filter_string, order_by=["attributes.start_time DESC"],
                             max_results=latest or 10000)
    except mlflow.exceptions.MlflowException as exc:
        raise XrunError(f"bad run filter '{filter_string}' ({_short(exc)})",
                        hint="e.g. --where \"params.training.batch_size = '64'\"") from None


def _record(run, names: dict) -> RunRecord:
    return RunRecord(run.info.run_id, run.info.run_name or "", names.get(run.info.experiment_id, ""),
                     run.info.status, run.data.tags.get("mlflow.note.content", ""), dict(run.data.params),
                     dict(run.data.metrics), dict(run.data.tags), run.info.start_time, run.info.end_time)


def histories(run_id: str, keys, uri: str | None = None) -> dict[str, list[float]]:
    """Per-epoch values of each metric, in step order (missing metrics are left out)."""
    c = client(uri)
    out = {}
    for key in keys:
        values = [m.value for m in sorted(c.get_metric_history(run_id, key), key=lambda m: m.step)]
        if values:
            out[key] = values
    return out


def artifact_text(run_id: str, path: str, uri: str | None = None) -> str:
    mlflow.set_tracking_uri(tracking_uri(uri))
    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")
    except Exception as exc:
        raise XrunError(f"run {run_id} has no artifact {path} ({_short(exc)})",
                        hint="only runs made by xrun have it") from None
