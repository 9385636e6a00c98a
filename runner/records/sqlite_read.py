"""Reading a local MLflow SQLite store with Python's own sqlite3, so `compare`, `list` and refusing a bad run id
answer in a fraction of a second instead of the seconds `import mlflow` takes.

It reads the tables MLflow's SQL store writes (experiments, runs, params, tags, latest_metrics, metrics) and returns
what MlflowClient would: active experiments and runs only (a run asked for by id whatever its stage), runs newest
first, a run's latest value of each metric, NaN where MLflow marks one. It never writes and never creates a store.
A store it cannot read as expected (another layout, an older MLflow's tables) raises Unreadable, and the caller asks
MLflow instead; so do stores that are not local SQLite files, and MLflow filter strings (`--where`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

_ACTIVE = "active"


class Unreadable(Exception):
    """The file is not an MLflow SQLite store this module can read: ask MLflow."""


def store_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative or absolute), else None (a server, a file store...)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _query(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    if not path.is_file():
        return []  # no store yet: nothing recorded (MLflow would create one; reading should not)
    try:
        with closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise Unreadable(str(exc)) from exc


def experiments(path: Path) -> dict[str, str]:
    """Experiment id -> name, active experiments only (as MlflowClient.search_experiments())."""
    rows = _query(path, "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = ?", (_ACTIVE,))
    return {str(i): name for i, name in rows}


def run_ids(path: Path, prefix: str = "") -> list[str]:
    """Ids of the active runs that start with `prefix` (all active runs without one)."""
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    sql = "SELECT run_uuid FROM runs WHERE lifecycle_stage = ? AND run_uuid LIKE ? ESCAPE '\\'"
    return [r for (r,) in _query(path, sql, (_ACTIVE, like))]


def get_runs(path: Path, ids: list[str]) -> list[dict]:
    """The runs with these ids, in that order; KeyError names the first id that has no run."""
    found = {r["run_id"]: r for r in _runs(path, f"run_uuid IN ({','.join('?' * len(ids))})", tuple(ids))}
    for run_id in ids:
        if run_id not in found:
            raise KeyError(run_id)
    return [found[r] for r in ids]


def search(path: Path, experiment_ids: list[str], *, status: str | None = None, parent_run_id: str | None = None,
           limit: int | None = None) -> list[dict]:
    """Active runs of the experiments, newest first (ties by id, as MLflow orders them)."""
    if not experiment_ids:
        return []
    where = [f"experiment_id IN ({','.join('?' * len(experiment_ids))})", "lifecycle_stage = ?"]
    args: list = [*(int(e) for e in experiment_ids), _ACTIVE]
    if status:
        where.append("status = ?")
        args.append(status)
    if parent_run_id:
        where.append("run_uuid IN (SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?)")
        args.append(parent_run_id)
    return _runs(path, " AND ".join(where), tuple(args), limit)


def _runs(path: Path, where: str, args: tuple, limit: int | None = None) -> list[dict]:
    sql = (f"SELECT run_uuid, name, experiment_id, status, start_time, end_time FROM runs WHERE {where} "  # noqa: S608
           f"ORDER BY start_time DESC, run_uuid" + (f" LIMIT {int(limit)}" if limit else ""))
    runs = [{"run_id": r[0], "name": r[1] or "", "experiment_id": str(r[2]), "status": r[3], "start_ms": r[4],
             "end_ms": r[5], "params": {}, "metrics": {}, "tags": {}} for r in _query(path, sql, args)]
    by_id = {r["run_id"]: r for r in runs}
    if by_id:
        _attach(path, by_id)
    return runs


def _attach(path: Path, by_id: dict[str, dict]) -> None:
    """Each run's params, tags and latest metrics, in one query per table (not one per run)."""
    marks = ",".join("?" * len(by_id))
    ids = tuple(by_id)
    for table, field in (("params", "params"), ("tags", "tags")):
        for key, value, run_id in _query(path, f"SELECT key, value, run_uuid FROM {table} "  # noqa: S608 - fixed names
                                               f"WHERE run_uuid IN ({marks})", ids):
            by_id[run_id][field][key] = value
    sql = f"SELECT key, value, is_nan, run_uuid FROM latest_metrics WHERE run_uuid IN ({marks})"  # noqa: S608
    for key, value, is_nan, run_id in _query(path, sql, ids):
        by_id[run_id]["metrics"][key] = float("nan") if is_nan else float(value)


def metric_history(path: Path, run_id: str, key: str) -> list[float]:
    """A metric's values in step order (as MlflowClient.get_metric_history, sorted by step)."""
    sql = "SELECT value, is_nan FROM metrics WHERE run_uuid = ? AND key = ? ORDER BY step, timestamp"
    return [float("nan") if is_nan else float(value) for value, is_nan in _query(path, sql, (run_id, key))]
