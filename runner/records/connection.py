"""The connection to a tracking store: a client whose store exists and answers, the experiment a run goes
in, and where a local store keeps its artifacts."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from runner.errors import XrunError
from runner.records.local import check_store, tracking_uri
from runner.records.values import _short

# MLflow narrates database set-up and migrations at INFO; a user only needs to hear about problems.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# MLflow's HTTP client retries a dead server for minutes by default; a training run should not stall that long
# on a metric it can keep and send later. (The environment can still say otherwise.)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per checkpoint download is noise
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # MLflow's "View run" line on xrun's stdout


def ui_command(uri: str) -> str:
    return f"mlflow ui --backend-store-uri {uri}"


def _artifact_root(uri: str) -> str | None:
    """Artifacts go beside a local SQLite store (mlruns/mlflow.db -> mlruns/artifacts/).

    MLflow's default would be ./mlruns of whatever directory the first run happened to start in, which scatters
    one store's artifacts over working directories (and a test's into the repository).
    """
    if not uri.startswith("sqlite:///"):
        return None
    db = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if db in ("", ":memory:"):
        return None
    return (Path(db).parent / "artifacts").resolve().as_uri()


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_root(uri))
    except mlflow.exceptions.MlflowException:
        # Another process created it between our look-up and our create: use theirs.
        return client.get_experiment_by_name(name).experiment_id


_READY: set[str] = set()


def _check_server(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a tracking server is not answering."""
    import urllib.error
    import urllib.request

    for attempt in range(HEALTH_ATTEMPTS):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
            return
        except (urllib.error.URLError, OSError) as exc:
            # A refused connection is final at once; a server that is only slow (busy, one worker) gets more time.
            if attempt + 1 < HEALTH_ATTEMPTS and _timed_out(exc):
                continue
            raise XrunError(f"the MLflow tracking server at {uri} is not answering ({_short(exc)})",
                            hint="start it (mlflow server ...), or fix --tracking-uri / MLFLOW_TRACKING_URI") from None


HEALTH_ATTEMPTS = 4  # of 5 s each, for a server that answers slowly


def _timed_out(exc: Exception) -> bool:
    import socket

    return isinstance(getattr(exc, "reason", exc), (socket.timeout, TimeoutError))


_DRIVERS = {"postgresql": "psycopg2", "postgresql+psycopg2": "psycopg2", "postgresql+psycopg": "psycopg"}


def _check_driver(uri: str) -> None:
    """A PostgreSQL store needs its driver, which xrun installs only with its `postgres` extra: say so, in one
    line, instead of SQLAlchemy's traceback."""
    import importlib.util

    scheme = uri.split("://", 1)[0]
    module = _DRIVERS.get(scheme)
    if module is None or importlib.util.find_spec(module) is not None:
        return
    other = "postgresql+psycopg://" if module == "psycopg2" and importlib.util.find_spec("psycopg") else None
    raise XrunError(f"the tracking store {scheme}://... needs the {module} driver, which is not installed",
                    hint=f"write the URI as {other}... (psycopg 3 is installed)" if other else
                    "pip install 'xrun[postgres]' and write the URI as postgresql+psycopg://USER@HOST/DB")


def _ready_client(uri: str) -> MlflowClient:
    """A client whose store exists. MLflow creates and migrates a new SQLite store's tables on first use, and
    several processes doing that at once collide ("table ... already exists"), so they take turns."""
    if uri in _READY:
        return MlflowClient(uri)
    _check_driver(uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
        _READY.add(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    lock_path = Path(uri.removeprefix("sqlite:///")).with_suffix(".init-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        c = MlflowClient(uri)
        c.search_experiments(max_results=1)
    _READY.add(uri)
    return c


def client(uri: str | None = None) -> MlflowClient:
    """A client of an existing store, for reading it (and editing its runs): a missing one is not created."""
    return _ready_client(check_store(tracking_uri(uri)))


def creating_client(uri: str | None = None) -> MlflowClient:
    """A client of the store, made (tables migrated) if it does not exist yet: for code that records."""
    return _ready_client(tracking_uri(uri))


def _get_run(c: MlflowClient, run_id: str):
    try:
        return c.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise XrunError(f"no MLflow run with id '{run_id}'", hint="xrun compare --latest 10 lists recent runs") from None


def _download(c: MlflowClient, run_id: str, path: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return Path(c.download_artifacts(run_id, path, str(folder)))
    except Exception:  # noqa: BLE001 - whatever the artifact store raised, there is no model to give
        raise XrunError(f"run {run_id} has no saved model ({path}) to resume from",
                        hint="only a run that was interrupted after building its model can be resumed") from None


def _readable(checkpoint: Path, run_id: str) -> Path:
    """A .keras file is a zip archive: one cut short (a full disk, a copy interrupted) is refused before the run
    is reopened, so it stays as it was."""
    import zipfile

    try:
        with zipfile.ZipFile(checkpoint) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        bad = f"{type(exc).__name__}: {_short(exc)}"
    if bad is not None:
        raise XrunError(f"run {run_id[:8]}'s saved model ({checkpoint.name}) is damaged ({bad}); it cannot be "
                        f"resumed", hint="start a new run without --resume (the run keeps its records as they are)")
    return checkpoint
