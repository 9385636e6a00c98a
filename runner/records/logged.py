"""A run's MLflow model: logged in MLflow's Keras flavour, or, when the store does not take it, kept in the run's
journal (the model, a sample of its inputs and how to log it) so that `xrun sync` logs it later, as it would have
been."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow

from runner.records import journal, names, served
from runner.records.local import tracking_uri
from runner.records.values import _tf_version, model_name

FOLDER = "model"            # in the journal, beside files/ (which sync sends as artifacts)
MODEL = "model.keras"       # the model as it is logged
SAMPLE = "sample.npy"       # the inputs its signature is inferred from
REQUEST = "request.json"    # its name, metadata, the metrics linked to it and the data they were measured on


def log_keras(client, run_id: str, model, example: tuple, *, name: str, metadata: dict | None, linked_metrics,
              dataset: tuple) -> str:
    """The model as MLflow 3's logged model `name` of the run, its signature inferred from `example` (inputs, and
    the model's predictions for them, or None to have them made here), with
    the run's `linked_metrics` attached (measured on `dataset`: name, digest); returns its models:/ URI."""
    import keras
    from mlflow.models import ModelSignature, infer_signature

    example_inputs, predictions = example
    predictions = model.predict(example_inputs, verbose=0) if predictions is None else predictions
    # Outputs only: an input tensor spec makes the scoring server cast JSON to its dtype before the model sees it
    # (floats in [0, 1] to uint8 zeros); without one, JSON integers stay integers and floats floats, which
    # xrun_served tells apart. What goes in is said in the metadata's `input`.
    signature = ModelSignature(outputs=infer_signature(example_inputs, predictions).outputs)
    # The fluent API below logs to the global store: make it the client's (`xrun sync` delivers to any store).
    mlflow.set_tracking_uri(client.tracking_uri)
    # An outer active run (a sweep's parent, a notebook's) would make start_run refuse; nest under it instead.
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = served.log(model, name=model_name(name), signature=signature, metadata=metadata,
                          pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={_tf_version()}"])
    link_metrics(client, run_id, info.model_id, linked_metrics, *dataset)
    return info.model_uri


def link_metrics(client, run_id: str, model_id: str, keys, dataset_name: str | None = None,
                 dataset_digest: str | None = None) -> None:
    """Attach the run's latest values of `keys` to a logged model (measured on `dataset_name`, if given).
    Each is sent again exactly as it was logged (key, value, step, timestamp), so the run's own history keeps
    one entry: the store drops the identical copy and keeps only the link."""
    latest = [max(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp), default=None)
              for key in keys]
    linked = [mlflow.entities.Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id,
                                     dataset_name=dataset_name, dataset_digest=dataset_digest)
              for m in latest if m is not None]
    if linked:
        client.log_batch(run_id, metrics=linked)


def keep(journal_folder: Path, model, example_inputs, *, name: str, metadata: dict | None, linked_metrics,
         dataset: tuple) -> None:
    """What log_keras needs, in the journal; a disk too full for it leaves nothing half-written (the journal's
    checkpoint still has the trained model)."""
    import numpy as np

    folder = journal_folder / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder / MODEL)
        np.save(folder / SAMPLE, example_inputs)
        (folder / REQUEST).write_text(json.dumps({"name": name, "metadata": metadata,
                                                  "linked_metrics": list(linked_metrics), "dataset": list(dataset)}))
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


def waiting(uri: str | None) -> bool:
    """Whether a journal that sync would deliver keeps a model (which takes Keras to log)."""
    found = journal.folders(journal.root(tracking_uri(uri)), journal.root("http://"))
    return any((folder / FOLDER / REQUEST).is_file() for folder in found)


def deliver_kept(client, run_id: str, journal_folder: Path) -> None:
    """Log the model a run kept in its journal, if it kept one; the attempt the store failed is marked FAILED."""
    folder = journal_folder / FOLDER
    if not (folder / REQUEST).is_file():
        return
    import keras
    import numpy as np

    request = json.loads((folder / REQUEST).read_text())
    _fail_pending(client, run_id)
    model = keras.saving.load_model(folder / MODEL, compile=False)
    uri = log_keras(client, run_id, model, (np.load(folder / SAMPLE), None), name=request["name"],
                    metadata=request["metadata"], linked_metrics=request["linked_metrics"],
                    dataset=tuple(request["dataset"]))
    client.set_tag(run_id, names.MODEL_URI, uri)


def _fail_pending(client, run_id: str) -> None:
    """A logged model whose upload the store cut short stays PENDING: it never will be, so it is marked FAILED."""
    from mlflow.entities import LoggedModelStatus

    experiment = client.get_run(run_id).info.experiment_id
    for found in client.search_logged_models(experiment_ids=[experiment],
                                             filter_string=f"source_run_id = '{run_id}'"):
        if str(found.status).endswith("PENDING"):
            client.finalize_logged_model(found.model_id, LoggedModelStatus.FAILED)
