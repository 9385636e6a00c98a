"""Reading runs back from MLflow as plain records: finding them, their metric histories and artifacts.

A local SQLite store is read with sqlite3 (runner.records.sqlite_read) and MLflow is not imported at all, so `compare`,
`list` and refusing a bad run id take a fraction of a second; other stores, and `--where` filters, go through MLflow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from runner.errors import XrunError
from runner.records import local, sqlite_read


def load_logged_model(model_uri: str):
    import mlflow

    return mlflow.keras.load_model(model_uri)


def metric_history(run_id: str, key: str, uri: str | None = None) -> list[float]:
    path = _sqlite(uri)
    if path is not None:
        try:
            return sqlite_read.metric_history(path, run_id, key)
        except sqlite_read.Unreadable:
            pass
    from runner.records.connection import client

    return [m.value for m in sorted(client(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


def _sqlite(uri: str | None) -> sqlite_read.Path | None:
    """The local SQLite file to read directly, or None where MLflow must be asked."""
    return sqlite_read.store_path(local.tracking_uri(uri))


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

    @property
    def shown_status(self) -> str:
        """As tables show it: DEAD for a RUNNING run whose process has gone (`xrun sync` or --resume ends it)."""
        return "DEAD" if local.is_dead(self.status, self.tags) else self.status


def find_runs(uri: str | None = None, *, experiments: list[str] | None = None, run_ids: list[str] | None = None,
              latest: int | None = None, where: str = "", parent_run_id: str | None = None,
              status: str | None = None) -> list[RunRecord]:
    """Runs, newest first: given ids, or those of the named experiments (all if none) with `status`, under
    `parent_run_id`, matching `where` (MLflow's filter syntax, e.g. "params.training.batch_size = '64'")."""
    path = None if where else _sqlite(uri)
    if path is not None:
        try:
            return _find_in_sqlite(path, experiments, run_ids, latest, status, parent_run_id)
        except sqlite_read.Unreadable:
            pass  # not the tables this MLflow writes: MLflow reads (and migrates) it
    return _find_in_mlflow(uri, experiments, run_ids, latest, where, status, parent_run_id)


def _find_in_sqlite(path, experiments, run_ids, latest, status, parent_run_id) -> list[RunRecord]:
    names = sqlite_read.experiments(path)
    if run_ids:
        try:
            runs = sqlite_read.get_runs(path, list(run_ids))
        except KeyError as missing:
            raise _no_run(missing.args[0]) from None
    else:
        runs = sqlite_read.search(path, _experiment_ids(names, experiments), status=status,
                                  parent_run_id=parent_run_id, limit=latest)
    return [RunRecord(r["run_id"], r["name"], names.get(r["experiment_id"], ""), r["status"],
                      r["tags"].get("mlflow.note.content", ""), r["params"], r["metrics"], r["tags"], r["start_ms"],
                      r["end_ms"]) for r in runs]


def _find_in_mlflow(uri, experiments, run_ids, latest, where, status, parent_run_id) -> list[RunRecord]:
    import mlflow

    from runner.records.connection import client

    c = client(uri)
    names = {e.experiment_id: e.name for e in c.search_experiments()}
    if run_ids:
        return [_record(_get_run(c, r, mlflow), names) for r in run_ids]
    clauses = [w for w in (where, f"attributes.status = '{status}'" if status else "",
                           f"tags.mlflow.parentRunId = '{parent_run_id}'" if parent_run_id else "") if w]
    return [_record(r, names) for r in _search(c, _experiment_ids(names, experiments), " and ".join(clauses), latest)]


def _get_run(c, run_id: str, mlflow):
    try:
        return c.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise _no_run(run_id) from None


def _experiment_ids(names: dict[str, str], experiments: list[str] | None) -> list[str]:
    ids = [i for i, n in names.items() if not experiments or n in experiments]
    if experiments and not ids:
        raise XrunError(f"no MLflow experiment named {', '.join(repr(e) for e in experiments)}",
                        hint="known: " + ", ".join(sorted(names.values())) if names else "no runs recorded yet")
    return ids


def _search(c, ids: list[str], filter_string: str, latest: int | None) -> list:
    import mlflow

    from runner.records.values import _short

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


# --- run ids as people give them ------------------------------------------------------------------------

def resolve_ids(run_ids: list[str], uri: str | None = None) -> list[str]:
    """Full run ids for ids or unique prefixes (the 8 characters the tables show); a bad one is refused at once."""
    listing: list[str] = []  # all run ids, read once where the store is not read directly
    return [_unique_match(r, uri, listing) for r in run_ids]


def resolve_id(run_id: str, uri: str | None = None) -> str:
    """The full id of the one run whose id is or starts with `run_id`; an XrunError (one line) otherwise.

    Quick on a local store (no MLflow, no TensorFlow), so a command can check its run id before loading anything.
    """
    return resolve_ids([run_id], uri)[0]


def _unique_match(run_id: str, uri: str | None, listing: list[str]) -> str:
    prefix = run_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,32}", prefix):
        raise _no_run(run_id, "run ids are hexadecimal (8 characters will do); "
                              "xrun compare --latest 10 lists recent runs")
    matches = _ids_starting(prefix, uri, listing)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise _no_run(run_id)
    raise XrunError(f"run id '{run_id}' is ambiguous ({len(matches)} runs start with it)",
                    hint="give more of the id")


def _ids_starting(prefix: str, uri: str | None, listing: list[str]) -> list[str]:
    path = _sqlite(local.check_store(local.tracking_uri(uri)))
    if path is not None:
        try:
            return sqlite_read.run_ids(path, prefix)
        except sqlite_read.Unreadable:
            pass
    if not listing:
        listing.extend(r.run_id for r in _find_in_mlflow(uri, None, None, None, "", None, None))
    return [k for k in listing if k.startswith(prefix)]


def _no_run(run_id: str, hint: str = "xrun compare --latest 10 lists recent runs") -> XrunError:
    return XrunError(f"no MLflow run with id '{run_id}'", hint=hint)


def histories(run_id: str, keys, uri: str | None = None) -> dict[str, list[float]]:
    """Per-epoch values of each metric, in step order (missing metrics are left out)."""
    out = {}
    for key in keys:
        values = metric_history(run_id, key, uri)
        if values:
            out[key] = values
    return out


def artifact_text(run_id: str, path: str, uri: str | None = None) -> str:
    import mlflow

    from runner.records import connection  # noqa: F401 - MLflow as the store uses it: quiet logs, quick HTTP retries
    from runner.records.values import _short

    mlflow.set_tracking_uri(local.tracking_uri(uri))
    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")
    except Exception as exc:  # noqa: BLE001 - MLflow's errors for a missing file vary by store: one line for all
        raise XrunError(f"run {run_id} has no artifact {path} ({_short(exc)})",
                        hint="only runs made by xrun have it") from None
