"""Everything xrun records in MLflow goes through here; no other module imports mlflow."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from runner.errors import XrunError
from runner.records import journal, names

# Kept MLflow-free in local.py, so commands that only read answer without importing MLflow.
from runner.records.local import (  # noqa: F401
    STALE_SECONDS,
    STORE_DIR,
    _pid_alive,
    _process_start,
    is_dead,
    tracking_uri,
)

# MLflow narrates database set-up and migrations at INFO; a user only needs to hear about problems.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# MLflow's HTTP client retries a dead server for minutes by default; a training run should not stall that long
# on a metric it can keep and send later. (The environment can still say otherwise.)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per checkpoint download is noise

METRICS_PER_BATCH = 1000  # MLflow's limit on metrics in one request
HEARTBEAT_SECONDS = 60    # a running run's xrun.heartbeat tag is at most this old (plus one store write)


def notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

MAX_PARAM_CHARS = 6000   # MLflow's limit on a param value
PARAMS_PER_BATCH = 100   # MLflow's limit on params in one request


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


_STOPPING: dict[str, str | None] = {}  # while stopping: the environment's values from before
_STOPPING_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "3", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def stopping(now: bool = True) -> None:
    """The process was asked to stop: from now on a store that does not answer gets seconds, not minutes, per
    write, and once one write has failed the rest go straight to the run's journal. `now=False` when the run
    has ended (a notebook or a sweep goes on with the usual patience)."""
    if now and not _STOPPING:
        _STOPPING.update({k: os.environ.get(k) for k in _STOPPING_ENV})
        os.environ.update(_STOPPING_ENV)
    elif not now and _STOPPING:
        for key, value in _STOPPING.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        _STOPPING.clear()


@contextmanager
def _interrupts_held(remote: bool = False):
    """Hold Ctrl-C and SIGTERM until a store write is done, then deliver them as they would have been.

    An interrupt raised inside SQLAlchemy's session handling surfaces as an unrelated error (IllegalStateChangeError)
    instead of KeyboardInterrupt, so a run stopped at that moment would end FAILED rather than KILLED. A write to a
    server (`remote`) is only a request, which a hung server could hold for minutes: there the signal acts at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives Python signal handlers
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in _INTERRUPTS}  # read first, so a restore never misses one

    def hold(signum, frame):
        stopping()
        if remote and callable(previous[signum]):
            previous[signum](signum, frame)  # the handler in place acts now (KeyboardInterrupt ends the write)
        else:
            received.append(signum)

    try:
        for s in _INTERRUPTS:
            signal.signal(s, hold)
        yield
    finally:
        _put_back(list(previous.items()))
        if received:
            signal.raise_signal(received[0])  # the handler that was in place now acts on it


def interrupts_held():
    """Ctrl-C and SIGTERM wait until the block is done (a local save that must not be cut in half)."""
    return _interrupts_held()


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
    def wrapper(self, *args, **kwargs):
        with _interrupts_held(remote=self.uri.startswith(("http://", "https://"))):
            return method(self, *args, **kwargs)
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
        all_tags = {**(tags or {}), **_process_tags(), "mlflow.note.content": description}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=_tag_texts(all_tags))
        self._open(run.info.run_id)

    def _open(self, run_id: str) -> None:
        """The run's local journal (which is also where its files are written) and its heartbeat."""
        self.run_id = run_id
        self._pending, self._offline_since = [], None
        self.unconfirmed: list[str] = []  # what the store failed to take; while not empty the journal stays
        self.journal = journal.Journal.open(self.uri, run_id)
        self.artifact_dir = self.journal.files
        self.tags: dict = {}  # as recorded when reopened (a resumed run's)
        self._heartbeat = _Heartbeat(self.uri, run_id)

    @classmethod
    def resume(cls, uri: str, run_id: str) -> tuple["Run", Path, int]:
        """Reopen a run (its status was checked by the caller): the run, its saved model (checkpoints/last.keras,
        downloaded) and the epoch that model completed."""
        mlflow.set_tracking_uri(uri)
        c = _ready_client(uri)
        found = _get_run(c, run_id)
        self = cls.__new__(cls)
        self.uri, self.client = uri, c
        self.experiment_id = found.info.experiment_id
        folder = journal.root(uri) / found.info.run_id / "resume"
        checkpoint = _download(c, found.info.run_id, names.CHECKPOINT, folder)
        epoch = found.data.tags.get(names.CHECKPOINT_EPOCH)
        epochs = int(epoch) if epoch else max((m.step for m in c.get_metric_history(found.info.run_id, "loss")),
                                              default=0)
        c.update_run(found.info.run_id, status="RUNNING")
        self._open(found.info.run_id)
        self.tags = dict(found.data.tags)
        self.set_tags(_process_tags())
        return self, checkpoint, epochs

    @_uninterrupted
    def log_params(self, params: dict) -> None:
        entities = [mlflow.entities.Param(k[:250], _param_text(v)) for k, v in params.items()]
        for start in range(0, len(entities), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entities[start:start + PARAMS_PER_BATCH])

    @_uninterrupted
    def set_tags(self, tags: dict) -> None:
        self.journal.set_tags(_tag_texts(tags))  # first on disk: a sync delivers what the store did not take
        if not tags:
            return
        self._not_while_failing()
        self.client.log_batch(self.run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in _tag_texts(tags).items()])

    @_uninterrupted
    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        """Numbers only; NaN and infinities are logged too, since a diverging run should show it.

        Each value is in the journal before it is sent; a store that does not answer gets them later."""
        now = _now_ms()
        entities = [mlflow.entities.Metric(k, float(v), now, step) for k, v in metrics.items() if _number(v)]
        self.journal.add_metrics([{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                                  for m in entities])
        self._pending.extend(entities)
        try:
            self._send_pending()
        except Exception as exc:  # the server went away: training goes on, the values wait here and on disk
            self._keep_offline(exc)

    def _send_pending(self) -> None:
        was_offline = self._offline_since is not None
        beat = [mlflow.entities.RunTag(names.HEARTBEAT, str(_now_ms() // 1000))]
        while self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending[:METRICS_PER_BATCH], tags=beat)
            del self._pending[:METRICS_PER_BATCH]
        if was_offline:
            self._offline_since = None
            notify(f"xrun: the tracking store is back; the metrics kept meanwhile were sent to run {self.run_id}")

    def _keep_offline(self, exc: Exception) -> None:
        if self._offline_since is None:
            self._offline_since = _now_ms()
            notify(f"xrun: cannot reach the tracking store ({_short(exc)}); training goes on, metrics are kept "
                   f"and sent when it is back (a copy is in {self.journal.folder / journal.METRICS})")

    # Artifacts are written into the journal's files/ at their artifact path, then sent; one the store does not
    # take stays there (the run goes on), and the run's end says so and keeps the journal for `xrun sync`.

    def log_text(self, text: str, name: str) -> None:
        self._local(name).write_text(text)
        self.log_file(self._local(name), str(Path(name).parent) if Path(name).parent != Path(".") else None)

    def log_dict(self, value: dict, name: str) -> None:
        self.log_text(json.dumps(value, indent=2), name)

    def log_figure(self, figure, name: str) -> None:
        figure.savefig(self._local(name))
        self.log_file(self._local(name), str(Path(name).parent) if Path(name).parent != Path(".") else None)

    def _local(self, name: str) -> Path:
        path = self.artifact_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @_uninterrupted
    def log_file(self, path: Path, folder: str | None = None) -> None:
        try:
            self._not_while_failing()
            self.client.log_artifact(self.run_id, str(path), folder)
        except Exception as exc:
            if not is_store_error(exc):
                raise
            self._keep_file(path, folder, exc)

    def _keep_file(self, path: Path, folder: str | None, exc: Exception) -> None:
        """A file the store did not take waits in the journal (a copy, if it was written elsewhere)."""
        kept = self._local(f"{folder}/{path.name}" if folder else path.name)
        if Path(path).resolve() != kept.resolve():
            shutil.copyfile(path, kept)
        if not self.unconfirmed:
            notify(f"xrun: the tracking store did not take {kept.name} ({_short(exc)}); the run goes on, its files "
                   f"are kept in {self.artifact_dir}")
        self.keep(str(Path(folder or "") / path.name), exc)

    def held(self):
        """Signals held until the block is done (a server's write still stops at once)."""
        return _interrupts_held(remote=self.uri.startswith(("http://", "https://")))

    def epoch_history(self, up_to: int) -> dict[str, list[float]]:
        """The run's per-epoch metrics for epochs 1..up_to, as recorded (an epoch logged twice: its last value)."""
        out = {}
        for key in self.client.get_run(self.run_id).data.metrics:
            by_step = {m.step: m.value for m in sorted(self.client.get_metric_history(self.run_id, key),
                                                       key=lambda m: (m.step, m.timestamp))}
            if all(step in by_step for step in range(1, up_to + 1)):
                out[key] = [by_step[step] for step in range(1, up_to + 1)]
        return out

    @_uninterrupted
    def log_dataset(self, name: str, source: str, digest: str, kind: str, sizes: dict) -> None:
        """The data as the run's MLflow dataset input (the UI's Dataset column): name, where it is, fingerprint."""
        from mlflow.entities import DatasetInput, InputTag

        dataset = _meta_dataset(name, source, digest)
        tags = [InputTag("mlflow.data.context", "training"), InputTag("xrun.data.source", kind),
                *(InputTag(f"xrun.examples.{split}", str(n)) for split, n in sizes.items())]
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])

    @_uninterrupted
    def log_model(self, model, example_inputs, predictions, *, name: str = "model", metadata: dict | None = None,
                  linked_metrics: tuple[str, ...] = ()) -> str:
        """The model in MLflow's Keras flavour as MLflow 3's logged model `name`: its input/output signature,
        `metadata` (class names) in its MLmodel file, and the run's `linked_metrics` (its test scores) attached to it,
        as the model page shows them. (No input example: MLflow 3.17's Keras flavour writes it before it creates
        the model's folder, and fails.)"""
        import keras
        from mlflow.models import infer_signature

        signature = infer_signature(example_inputs, predictions)
        # An outer active run (a sweep's parent, a notebook's) would make start_run refuse; nest under it instead.
        with mlflow.start_run(run_id=self.run_id, nested=mlflow.active_run() is not None):
            info = mlflow.keras.log_model(
                model, name=model_name(name), signature=signature,
                metadata=metadata, pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={_tf_version()}"])
        self.link_metrics(info.model_id, linked_metrics)
        return info.model_uri

    @_uninterrupted
    def link_metrics(self, model_id: str, keys, dataset_name: str | None = None,
                     dataset_digest: str | None = None) -> None:
        """Attach this run's latest values of `keys` to a logged model (measured on `dataset_name`, if given).
        Each is sent again exactly as it was logged (key, value, step, timestamp), so the run's own history keeps
        one entry: the store drops the identical copy and keeps only the link."""
        latest = [max(self.client.get_metric_history(self.run_id, key), key=lambda m: (m.step, m.timestamp),
                      default=None) for key in keys]
        linked = [mlflow.entities.Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id,
                                         dataset_name=dataset_name, dataset_digest=dataset_digest)
                  for m in latest if m is not None]
        if linked:
            self.client.log_batch(self.run_id, metrics=linked)

    def end(self, status: str, reason: str = "") -> None:
        """FINISHED, FAILED or KILLED; a run never stays RUNNING.

        The end is in the journal first. Once the store has confirmed it, and everything before it, the journal
        goes; otherwise it stays, and this raises StoreFailed saying where it is and how to deliver it."""
        self._heartbeat.stop()
        self.journal.write_state(status=status, end_reason=reason, end_ms=_now_ms())
        try:
            self._deliver_end(status)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised, the journal keeps the run
            self.unconfirmed.append(f"the run's end ({_short(exc)})")
        if self.unconfirmed:
            self.journal.close()
            raise StoreFailed(self, self.unconfirmed[0])
        self.journal.discard()

    @_uninterrupted
    def _deliver_end(self, status: str) -> None:
        self._not_while_failing()
        if self._pending:
            self._send_pending()
        epoch = self.journal.state().get("checkpoint_epoch")
        if epoch:  # which epoch checkpoints/last.keras holds: a resume starts after it
            self.client.set_tag(self.run_id, names.CHECKPOINT_EPOCH, str(epoch))
        self.client.set_terminated(self.run_id, status=status)

    def _not_while_failing(self) -> None:
        """A process that is stopping does not wait on a store that has already failed it once."""
        if _STOPPING and self.unconfirmed:
            raise StoreSkipped("the store failed while the run was stopping; kept for xrun sync")

    def keep(self, what: str, exc: BaseException) -> None:
        """Note that the store did not take something (it is in the journal), so the journal is kept."""
        self.unconfirmed.append(f"{what} ({type(exc).__name__}: {_short(exc)})")


class StoreSkipped(OSError):
    """Not sent: the store already failed a run that is stopping (the journal has it)."""


class StoreFailed(Exception):
    """The store did not confirm a run's end; its state and files are in the journal for `xrun sync`."""

    def __init__(self, run: Run, cause: str):
        self.run_id, self.folder, self.cause = run.run_id, run.journal.folder, cause
        super().__init__(f"the tracking store did not take {cause}; run {run.run_id[:8]} and its model are kept "
                         f"in {run.journal.folder}")


def model_name(name: str) -> str:
    """An experiment's name as a logged model's name, which MLflow forbids `/ : . % " '` in."""
    return re.sub(r"[/:.%\"']", "-", name) or "model"


def is_store_error(exc: BaseException) -> bool:
    """The store failed (full disk, a server down or refusing), as opposed to a bug in what was sent."""
    return isinstance(exc, (OSError, mlflow.exceptions.MlflowException))


def _process_tags() -> dict:
    """Where the run is trained: a RUNNING run whose process is gone from this host is dead (see is_dead)."""
    return {names.HOST: os.uname().nodename, names.PID: os.getpid(), names.PROCESS_START: _process_start(),
            names.HEARTBEAT: _now_ms() // 1000}


def _download(c: MlflowClient, run_id: str, path: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return Path(c.download_artifacts(run_id, path, str(folder)))
    except Exception:
        raise XrunError(f"run {run_id} has no saved model ({path}) to resume from",
                        hint="only a run that was interrupted after building its model can be resumed") from None


class _Heartbeat:
    """Refreshes the run's xrun.heartbeat tag every HEARTBEAT_SECONDS from a thread of its own, so a run in a
    long epoch is not taken for dead; a store that does not answer only delays it."""

    def __init__(self, uri: str, run_id: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(uri, run_id), daemon=True, name="xrun-heartbeat")
        self._thread.start()

    def _beat(self, uri: str, run_id: str) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                MlflowClient(uri).set_tag(run_id, names.HEARTBEAT, str(_now_ms() // 1000))
            except Exception:  # noqa: BLE001, S112 - the next beat tries again; the run's own writes report problems
                continue

    def stop(self) -> None:
        self._stop.set()


def end_dead(uri: str, run_id: str) -> str:
    """End a dead run KILLED: its journal delivered, when it is on this machine, else just the status."""
    folder = journal.root(uri) / run_id
    if folder in journal.folders(journal.root(uri)):
        return replay(folder)
    c = _ready_client(uri)
    c.set_tag(run_id, names.END_REASON, journal.DIED_REASON)
    c.set_terminated(run_id, status=journal.DIED)
    return journal.DIED


def replay(folder: Path) -> str:
    """Deliver a journal to its store (metrics, tags, files, the end) and remove it; returns the run's status.

    Sending twice is harmless: MLflow keeps one copy of a metric value logged again with the same step and time,
    and a file logged again replaces itself."""
    with journal.taken(folder):
        return _replay(folder)


def _replay(folder: Path) -> str:
    state = journal.final_state(folder)
    c, run_id = _ready_client(state["uri"]), state["run_id"]
    entries = [mlflow.entities.Metric(m["key"], m["value"], m["timestamp"], m["step"])
               for m in journal.metrics(folder)]
    for start in range(0, len(entries), METRICS_PER_BATCH):
        c.log_batch(run_id, metrics=entries[start:start + METRICS_PER_BATCH])
    tags = {**state.get("tags", {}), names.END_REASON: state.get("end_reason", "")}
    if "checkpoint_epoch" in state:
        tags[names.CHECKPOINT_EPOCH] = state["checkpoint_epoch"]
    c.log_batch(run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in _tag_texts(tags).items()])
    for path, artifact_folder in journal.files(folder):
        c.log_artifact(run_id, str(path), artifact_folder)
    c.set_terminated(run_id, status=state["status"], end_time=state.get("end_ms"))
    shutil.rmtree(folder, ignore_errors=True)
    return state["status"]


def sync(uri: str | None = None, only_this: bool = False) -> list[tuple[str, str, str]]:
    """Deliver every journal left by a run whose process has gone: (run id, its store, the status it ended with,
    or why it could not be delivered yet) each; one store that is still down does not hold up the others.

    Looks beside the given (or default) store and in ./mlruns/journal, where runs on a server keep theirs;
    `only_this`: only the journals of that store (what `xrun run` delivers before it starts)."""
    out, uri = [], tracking_uri(uri)
    for folder in journal.folders(journal.root(uri), journal.root("http://")):
        where = json.loads((folder / journal.STATE).read_text()).get("uri", "")
        if only_this and where != uri:
            continue
        try:
            out.append((folder.name, where, replay(folder)))
        except XrunError as exc:
            out.append((folder.name, where, f"not delivered: {exc.message}"))
        except Exception as exc:  # noqa: BLE001 - the store is still failing: the journal stays for next time
            out.append((folder.name, where, f"not delivered: {type(exc).__name__}: {_short(exc)}"))
    return out if only_this else out + _sync_offline(uri)


OLD_OFFLINE = Path("mlruns") / "offline"  # where xrun before the journal kept metrics a server did not take


def _sync_offline(uri: str) -> list[tuple[str, str, str]]:
    """Metrics an older xrun kept in mlruns/offline/RUN_ID.jsonl: sent to their run, if it is in this store."""
    out = []
    for path in sorted(OLD_OFFLINE.glob("*.jsonl")):
        try:
            _ready_client(uri).get_run(path.stem)
        except Exception:  # noqa: BLE001 - not this store's run (or the store is down): left for another sync
            out.append((path.stem, uri, f"not delivered: {path} is for a run that is not in this store"))
            continue
        entries = [mlflow.entities.Metric(m["key"], m["value"], m["timestamp"], m["step"])
                   for m in journal.metrics_file(path)]
        for start in range(0, len(entries), METRICS_PER_BATCH):
            _ready_client(uri).log_batch(path.stem, metrics=entries[start:start + METRICS_PER_BATCH])
        path.unlink()
        out.append((path.stem, uri, f"{len(entries)} metric values from {path} delivered"))
    return out


def _meta_dataset(name: str, source: str, digest: str):
    """A dataset MLflow knows by name, source and digest only: nothing is read or copied."""
    import warnings

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    try:
        with warnings.catch_warnings():  # a local path matches two equivalent source kinds; either will do
            warnings.simplefilter("ignore")
            where = resolve_dataset_source(source)
    except Exception:  # noqa: BLE001 - not a path or URL (a pip wheel, say): record it as text
        where = CodeDatasetSource(tags={"source": source})
    return MetaDataset(where, name=name, digest=digest)


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
    journal = None
    unconfirmed: list = []
    tags: dict = {}

    def __init__(self):
        self.artifact_dir = Path(tempfile.mkdtemp(prefix="xrun-worker-"))

    def held(self):
        return _interrupts_held()

    def epoch_history(self, up_to: int) -> dict:
        return {}

    def __getattr__(self, name):
        if name.startswith(("log_", "set_", "end")):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


# --- runs that train nothing (a sweep's parent), and writes to runs made earlier ------------------------

def plain_run(uri: str, experiment: str, name: str, description: str, tags: dict, texts: dict) -> str:
    """A run with tags and text files only, left RUNNING, with no journal or heartbeat: a sweep's parent, which
    whichever worker finishes the study ends (so no one process's life is the run's)."""
    c = _ready_client(uri)
    run_id = c.create_run(_experiment_id(c, experiment, uri), run_name=name,
                          tags=_tag_texts({**tags, "mlflow.note.content": description})).info.run_id
    for path, text in texts.items():
        c.log_text(run_id, text, path)
    return run_id


def add_to_run(run_id: str, uri: str, *, tags: dict = (), metrics: dict = (), files: dict = ()) -> None:
    """Tags, final metrics and files (a matplotlib figure, a dict as JSON, or text, by path) on an existing run."""
    c = _ready_client(uri)
    c.log_batch(run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in _tag_texts(dict(tags)).items()],
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
