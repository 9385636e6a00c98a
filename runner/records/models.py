"""Logged models read back: found by run id (an 8-character prefix will do) or models:/ URI, with their facts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import mlflow
from mlflow.entities import ViewType

from runner.errors import XrunError
from runner.records.connection import client
from runner.records.local import check_store, tracking_uri
from runner.records.values import _short

_FULL_ID = re.compile(r"[0-9a-f]{32}")
MODEL_URI_SCHEMES = ("models:/", "runs:/")


@dataclass
class LoggedModel:
    """Where a logged model is and what it says about itself (the MLmodel metadata xrun writes)."""

    model_uri: str
    name: str
    model_id: str | None = None
    run_id: str | None = None
    run_name: str = ""
    experiment: str = ""
    metadata: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)   # the training run's params: data.dataset, data.limit, ...


def find(model: str, uri: str | None = None) -> LoggedModel:
    """The logged model MODEL names: a models:/ or runs:/ URI, or a run id (full or a unique prefix)."""
    uri = check_store(tracking_uri(uri))
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve through the default store
    if model.startswith(MODEL_URI_SCHEMES):
        return _from_uri(model, uri)
    return _from_run(_run(model, uri), uri)


def _from_uri(model_uri: str, uri: str) -> LoggedModel:
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception as exc:  # noqa: BLE001 - MLflow's errors for a bad URI vary by scheme: one line for all
        raise XrunError(f"no logged model at {model_uri} ({_short(exc)})",
                        hint="give a run id, or a models:/ URI that `xrun compare` or the MLflow UI shows") from None
    found = LoggedModel(model_uri, info.name or info.artifact_path or "model", model_id=info.model_id,
                        run_id=info.run_id, metadata=dict(info.metadata or {}))
    if info.run_id:
        run = client(uri).get_run(info.run_id)
        _with_run(found, run, uri)
    return found


def _from_run(run, uri: str) -> LoggedModel:
    c = client(uri)
    models = [m for m in c.search_logged_models(experiment_ids=[run.info.experiment_id],
                                                filter_string=f"source_run_id = '{run.info.run_id}'")
              if str(m.status).endswith("READY")]  # PENDING or FAILED: the upload did not finish
    if not models:
        raise XrunError(f"run {run.info.run_id[:8]} ({run.info.run_name}, {run.info.status}) has no logged model",
                        hint="train with tracking.log_model: true (the default); a run that failed before its "
                             "end has none")
    newest = max(models, key=lambda m: m.creation_timestamp)
    info = mlflow.models.get_model_info(newest.model_uri)
    return _with_run(LoggedModel(newest.model_uri, newest.name, model_id=newest.model_id, run_id=run.info.run_id,
                                 metadata=dict(info.metadata or {})), run, uri)


def _with_run(found: LoggedModel, run, uri: str) -> LoggedModel:
    found.run_name, found.params = run.info.run_name or "", dict(run.data.params)
    found.experiment = client(uri).get_experiment(run.info.experiment_id).name
    return found


def _run(run_id: str, uri: str):
    """The run with this id or unique prefix, deleted ones included (so that a deleted run is named as such)."""
    c = client(uri)
    if _FULL_ID.fullmatch(run_id):
        try:
            run = c.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            raise _no_such_run(run_id) from None
    else:
        run = _by_prefix(c, run_id.lower())
    if run.info.lifecycle_stage == "deleted":
        raise XrunError(f"run {run.info.run_id[:8]} ({run.info.run_name}) is deleted",
                        hint=f"restore it (mlflow runs restore --run-id {run.info.run_id}) or give another run")
    return run


def _by_prefix(c, prefix: str):
    if not re.fullmatch(r"[0-9a-f]{1,32}", prefix):
        raise XrunError(f"'{prefix}' is neither a run id, a models:/ URI nor a .keras file",
                        hint="give a run id (8 characters will do), models:/MODEL_ID or a path ending in .keras")
    ids = [e.experiment_id for e in c.search_experiments(view_type=ViewType.ALL)]
    runs = [r for r in c.search_runs(ids, run_view_type=ViewType.ALL, max_results=50000)
            if r.info.run_id.startswith(prefix)] if ids else []
    if len(runs) > 1:
        raise XrunError(f"run id '{prefix}' is ambiguous ({len(runs)} runs start with it)", hint="give more of the id")
    if not runs:
        raise _no_such_run(prefix)
    return runs[0]


def _no_such_run(run_id: str) -> XrunError:
    return XrunError(f"no MLflow run with id '{run_id}'", hint="xrun compare --latest 10 lists recent runs")


def load_keras(found: LoggedModel):
    """The Keras model itself, uncompiled (inference needs no optimizer)."""
    return mlflow.keras.load_model(found.model_uri, load_model_kwargs={"compile": False})
