"""Runs that train nothing (a sweep's parent), and writes to runs made earlier, by their id."""

from __future__ import annotations

import mlflow

from runner.records.connection import _experiment_id, _ready_client, client
from runner.records.values import _now_ms, _tag_texts


def reopen(run_id: str, uri: str | None = None) -> None:
    """Mark a run RUNNING again (a resumed sweep's parent)."""
    client(uri).update_run(run_id, status="RUNNING")


def end_run(run_id: str, status: str, uri: str | None = None) -> None:
    client(uri).set_terminated(run_id, status=status)


def plain_run(uri: str, experiment: str, name: str, description: str, tags: dict, texts: dict,  # noqa: PLR0913
              params: dict = ()) -> str:
    """A run with tags, params and text files only, left RUNNING, with no journal: a sweep's parent, which
    whichever worker finishes the study ends (so no one process's life is the run's)."""
    c = _ready_client(uri)
    run_id = c.create_run(_experiment_id(c, experiment, uri), run_name=name,
                          tags=_tag_texts({**tags, "mlflow.note.content": description})).info.run_id
    if params:
        c.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in _tag_texts(dict(params)).items()])
    for path, text in texts.items():
        c.log_text(run_id, text, path)
    return run_id


def add_to_run(run_id: str, uri: str, *, tags: dict = (), metrics: dict = (), files: dict = (),  # noqa: PLR0913
               params: dict = ()) -> None:
    """Tags, params, final metrics and files (a matplotlib figure, a dict as JSON, or text, by path) on an existing
    run."""
    c = _ready_client(uri)
    c.log_batch(run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in _tag_texts(dict(tags)).items()],
                params=[mlflow.entities.Param(k, v) for k, v in _tag_texts(dict(params)).items()],
                metrics=[mlflow.entities.Metric(k, float(v), _now_ms(), 0) for k, v in dict(metrics).items()])
    for path, value in dict(files).items():
        if isinstance(value, dict):
            c.log_dict(run_id, value, path)
        elif isinstance(value, str):
            c.log_text(run_id, value, path)
        else:
            c.log_figure(run_id, value, path)


def delete_run(run_id: str, uri: str | None = None) -> None:
    client(uri).delete_run(run_id)
