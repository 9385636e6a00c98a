"""Everything xrun records in MLflow goes through here; no other module imports mlflow."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from runner.errors import XrunError

# MLflow narrates database set-up and migrations at INFO; a user only needs to hear about problems.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# MLflow's HTTP client retries a dead server for minutes by default; a training run should not stall that long
# on a metric it can keep and send later. (The environment can still say otherwise.)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

METRICS_PER_BATCH = 1000  # MLflow's limit on metrics in one request
OFFLINE_DIR = Path("mlruns") / "offline"


def offline_file(run_id: str) -> Path:
    """Where metrics wait while the tracking store cannot be reached (one JSON object per line)."""
    OFFLINE_DIR.mkdir(parents=True, exist_ok=True)
    return OFFLINE_DIR / f"{run_id}.jsonl"


def notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

STORE_DIR = Path("mlruns")
MAX_PARAM_CHARS = 6000   # MLflow's limit on a param value
PARAMS_PER_BATCH = 100   # MLflow's limit on params in one request


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the project's SQLite store under ./mlruns."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    STORE_DIR.mkdir(exist_ok=True)
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


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


def flatten(config, prefix: str = "") -> dict[str, str]:
    """Dotted keys for a nested config: {'optimizer.learning_rate': '0.001', 'model.layers.0.filters': '32'}."""
    if isinstance(config, dict) and not config and prefix:
        return {prefix: "{}"}  # keep the key: an empty section was still asked for
    if isinstance(config, dict):
        items = [(f"{prefix}.{_key(k)}" if prefix else _key(k), v) for k, v in config.items()]
    elif isinstance(config, list) and any(isinstance(v, (dict, list)) for v in config):
        items = [(f"{prefix}.{i}", v) for i, v in enumerate(config)]  # MLflow keys allow no brackets
    else:
        return {prefix: _param_text(config)}
    out: dict[str, str] = {}
    for key, value in items:
        out.update(flatten(value, key))
    return out


def _key(key) -> str:
    """A YAML key as an MLflow name: `a[0]` -> `a.0`; characters MLflow refuses -> `_`."""
    text = re.sub(r"\[(\d+)\]", r".\1", str(key))
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", text)


def _param_text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_CHARS]


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _interrupts_held():
    """Hold Ctrl-C and SIGTERM until a store write is done, then deliver them as they would have been.

    An interrupt raised inside SQLAlchemy's session handling surfaces as an unrelated error (IllegalStateChangeError)
    instead of KeyboardInterrupt, so a run stopped at that moment would end FAILED rather than KILLED.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives Python signal handlers
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in _INTERRUPTS}  # read first, so a restore never misses one
    try:
        for s in _INTERRUPTS:
            signal.signal(s, lambda signum, frame: received.append(signum))
        yield
    finally:
        _put_back(list(previous.items()))
        if received:
            signal.raise_signal(received[0])  # the handler that was in place now acts on it


def _put_back(handlers: list) -> None:
    """Restore each handler, even when a signal fires (and raises) while an earlier one is put back: a handler
    left holding would swallow every later Ctrl-C."""
    signum, handler = handlers[0]
    try:
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    finally:
        if handlers[1:]:
            _put_back(handlers[1:])


def _uninterrupted(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _interrupts_held():
            return method(*args, **kwargs)
    return wrapper


class Run:
    """One MLflow run: params, per-epoch metrics, artifacts, the model, and how it ended.

    Every write holds Ctrl-C and SIGTERM until it is done (see _interrupts_held).
    """

    def __init__(self, uri: str, experiment: str, name: str, description: str = "", tags: dict | None = None,
                 parent_run_id: str | None = None):
        mlflow.set_tracking_uri(uri)
        self.uri = uri
        try:
            self.client = _ready_client(uri)
            self.experiment_id = _experiment_id(self.client, experiment, uri)
        except XrunError:
            raise
        except Exception as exc:  # the store or server is not there: say so before anything trains
            raise XrunError(f"cannot reach the MLflow tracking store at {uri} ({_short(exc)})",
                            hint="start the server, fix --tracking-uri / MLFLOW_TRACKING_URI, or unset it "
                                 "to use the local store under mlruns/") from None
        all_tags = {**(tags or {}), "mlflow.note.content": description}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=_tag_texts(all_tags))
        self.run_id = run.info.run_id
        self._pending, self._offline_since = [], None
        self.artifact_dir = Path(tempfile.mkdtemp(prefix=f"xrun-{self.run_id[:8]}-"))

    @classmethod
    def resume(cls, uri: str, run_id: str) -> tuple["Run", Path, int]:
        """Reopen a KILLED or FAILED run: the run, its saved model (checkpoints/last.keras, downloaded) and the
        number of epochs it completed."""
        mlflow.set_tracking_uri(uri)
        c = _ready_client(uri)
        found = _get_run(c, run_id)
        if found.info.status not in ("KILLED", "FAILED"):
            raise XrunError(f"run {run_id} is {found.info.status}; only a KILLED or FAILED run can be resumed",
                            hint="start a new run without --resume")
        self = cls.__new__(cls)
        self.uri, self.client, self.run_id = uri, c, found.info.run_id
        self.experiment_id = found.info.experiment_id
        self._pending, self._offline_since = [], None
        self.artifact_dir = Path(tempfile.mkdtemp(prefix=f"xrun-{self.run_id[:8]}-"))
        checkpoint = self._download("checkpoints/last.keras")
        epochs = max((m.step for m in c.get_metric_history(self.run_id, "loss")), default=0)
        c.update_run(self.run_id, status="RUNNING")
        return self, checkpoint, epochs

    def _download(self, path: str) -> Path:
        try:
            return Path(self.client.download_artifacts(self.run_id, path, str(self.artifact_dir)))
        except Exception:
            raise XrunError(f"run {self.run_id} has no saved model ({path}) to resume from",
                            hint="only a run that was interrupted after building its model can be resumed") from None

    @_uninterrupted
    def log_params(self, params: dict) -> None:
        entities = [mlflow.entities.Param(k[:250], _param_text(v)) for k, v in params.items()]
        for start in range(0, len(entities), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entities[start:start + PARAMS_PER_BATCH])

    @_uninterrupted
    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in _tag_texts(tags).items()])

    @_uninterrupted
    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        """Numbers only; NaN and infinities are logged too, since a diverging run should show it."""
        now = _now_ms()
        entities = [mlflow.entities.Metric(k, float(v), now, step) for k, v in metrics.items() if _number(v)]
        self._pending.extend(entities)
        try:
            self._send_pending()
        except Exception as exc:  # the server went away: training goes on, the values wait here and on disk
            self._keep_offline(entities, exc)

    def _send_pending(self) -> None:
        was_offline = self._offline_since is not None
        while self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending[:METRICS_PER_BATCH])
            del self._pending[:METRICS_PER_BATCH]
        if was_offline:
            self._offline_since = None
            notify(f"xrun: the tracking store is back; the metrics kept meanwhile were sent to run {self.run_id}")

    def _keep_offline(self, entities: list, exc: Exception) -> None:
        path = offline_file(self.run_id)
        with path.open("a") as out:
            for m in entities:
                out.write(json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}) + "\n")
        if self._offline_since is None:
            self._offline_since = _now_ms()
            notify(f"xrun: cannot reach the tracking store ({_short(exc)}); training goes on, metrics are kept "
                   f"and sent when it is back (a copy is in {path})")

    @_uninterrupted
    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    @_uninterrupted
    def log_dict(self, value: dict, name: str) -> None:
        self.client.log_dict(self.run_id, value, name)

    @_uninterrupted
    def log_figure(self, figure, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    @_uninterrupted
    def log_file(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    @_uninterrupted
    def log_model(self, model, example_inputs, predictions) -> str:
        """The trained Keras model in MLflow's Keras flavour, with its input/output signature."""
        import keras
        from mlflow.models import infer_signature

        signature = infer_signature(example_inputs, predictions)
        # An outer active run (a sweep's parent, a notebook's) would make start_run refuse; nest under it instead.
        with mlflow.start_run(run_id=self.run_id, nested=mlflow.active_run() is not None):
            info = mlflow.keras.log_model(
                model, name="model", signature=signature,
                pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={_tf_version()}"])
        return info.model_uri

    @_uninterrupted
    def end(self, status: str) -> None:
        """FINISHED, FAILED or KILLED; a run never stays RUNNING."""
        if self._pending:
            try:
                self._send_pending()
            except Exception:  # still unreachable: the offline file holds them, and the user was told where
                notify(f"xrun: {len(self._pending)} metric values could not be sent; they are in "
                       f"{offline_file(self.run_id)}")
        self.client.set_terminated(self.run_id, status=status)


def _tag_texts(tags: dict) -> dict[str, str]:
    return {_key(k): str(v)[:5000] for k, v in tags.items() if v is not None}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or hasattr(value, "__float__")


def _now_ms() -> int:
    import time
    return int(time.time() * 1000)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200]


def _tf_version() -> str:
    """The installed TensorFlow's version, read from package metadata (records never import TensorFlow)."""
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-macos"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


# --- reading runs back (compare, list, tests) -----------------------------------------------------------

_READY: set[str] = set()


def _check_server(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a tracking server is not answering."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
    except (urllib.error.URLError, OSError) as exc:
        raise XrunError(f"the MLflow tracking server at {uri} is not answering ({_short(exc)})",
                        hint="start it (mlflow server ...), or fix --tracking-uri / MLFLOW_TRACKING_URI") from None


def _ready_client(uri: str) -> MlflowClient:
    """A client whose store exists. MLflow creates and migrates a new SQLite store's tables on first use, and
    several processes doing that at once collide ("table ... already exists"), so they take turns."""
    if uri in _READY:
        return MlflowClient(uri)
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
    return _ready_client(tracking_uri(uri))


def _get_run(c: MlflowClient, run_id: str):
    try:
        return c.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise XrunError(f"no MLflow run with id '{run_id}'", hint="xrun compare --latest 10 lists recent runs") from None


def reopen(run_id: str, uri: str | None = None) -> None:
    """Mark a run RUNNING again (a resumed sweep's parent)."""
    client(uri).update_run(run_id, status="RUNNING")


def end_run(run_id: str, status: str, uri: str | None = None) -> None:
    client(uri).set_terminated(run_id, status=status)


class NullRun:
    """Stands in for a Run on the non-chief workers of a multi-worker job: they train, only the chief records."""

    uri = ""
    run_id = ""

    def __init__(self):
        self.artifact_dir = Path(tempfile.mkdtemp(prefix="xrun-worker-"))

    def __getattr__(self, name):
        if name.startswith(("log_", "set_", "end")):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


# --- sweep claims: several machines share one sweep without running a variant twice ---------------------

CLAIMS_EXPERIMENT = "xrun-sweep-claims"


def claim(uri: str, parent_id: str, key: str, *, reclaim: bool = False) -> str | None:
    """Claim one variant of a sweep for this process; None if another process holds it or finished it.

    The claim is a small run in its own experiment. Two machines may create claims at the same moment, so
    after creating ours we look at every live claim for the variant and the oldest wins; a loser deletes its
    own. A FINISHED claim means the variant is done; with `reclaim`, RUNNING claims (left by a machine that
    died) no longer count.
    """
    c = _ready_client(uri)
    experiment_id = _experiment_id(c, CLAIMS_EXPERIMENT, uri)
    where = f"tags.`xrun.claim_of` = '{parent_id}' and tags.`xrun.claim` = '{key}'"
    mine = c.create_run(experiment_id, run_name=f"claim {key}",
                        tags={"xrun.claim_of": parent_id, "xrun.claim": key, "xrun.host": os.uname().nodename,
                              "xrun.pid": str(os.getpid())}).info.run_id
    live = ["FINISHED"] if reclaim else ["RUNNING", "FINISHED"]
    claims = [r for r in c.search_runs([experiment_id], filter_string=where, max_results=1000)
              if r.info.status in live or r.info.run_id == mine]
    winner = min(claims, key=lambda r: (r.info.status != "FINISHED", r.info.start_time, r.info.run_id))
    if winner.info.run_id != mine:
        c.delete_run(mine)
        return None
    return mine


def release(uri: str, claim_id: str, status: str) -> None:
    """FINISHED marks the variant done for every machine; any other status lets a later sweep retry it."""
    _ready_client(uri).set_terminated(claim_id, status=status)


def delete_run(run_id: str, uri: str | None = None) -> None:
    client(uri).delete_run(run_id)
