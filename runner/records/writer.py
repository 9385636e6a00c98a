"""One MLflow run as a training writes it: params, metrics, files and the model, each kept in the run's
journal until the store has taken it; and the stand-in that writes nothing."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import mlflow

from runner.errors import XrunError
from runner.records import journal, logged, names
from runner.records.connection import _download, _experiment_id, _get_run, _readable, _ready_client
from runner.records.failures import (
    _STOPPING,
    StoreFailed,
    StoreSkipped,
    _interrupts_held,
    _uninterrupted,
    is_store_error,
)
from runner.records.heartbeat import _Heartbeat, _process_tags
from runner.records.values import (
    METRICS_PER_BATCH,
    PARAMS_PER_BATCH,
    _meta_dataset,
    _now_ms,
    _number,
    _param_text,
    _short,
    _tag_texts,
)


def notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _source_tags(tags: dict) -> dict:
    """MLflow's Source and Created by, which it fills in only for runs it starts: the experiment file the run came
    from (else the xrun command), and the user."""
    command = " ".join(["xrun", *sys.argv[1:2]])
    return {names.SOURCE_NAME: str(tags.get(names.EXPERIMENT_FILE) or command), names.SOURCE_TYPE: "LOCAL",
            names.USER: _user()}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's anonymous uid)
        return str(os.getuid())


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
        except Exception as exc:  # noqa: BLE001 - the store or server is not there: say so before anything trains
            raise XrunError(f"cannot reach the MLflow tracking store at {uri} ({_short(exc)})",
                            hint="start the server, fix --tracking-uri / MLFLOW_TRACKING_URI, or unset it "
                                 "to use the local store under mlruns/") from None
        all_tags = {**_source_tags(tags or {}), **(tags or {}), **_process_tags(), "mlflow.note.content": description}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=_tag_texts(all_tags))
        self._open(run.info.run_id)

    def _open(self, run_id: str) -> None:
        """The run's local journal (which is also where its files are written) and its heartbeat."""
        self.run_id = run_id
        self._pending, self._pending_tags, self._offline_since = [], {}, None
        self.unconfirmed: list[str] = []  # what the store failed to take; while not empty the journal stays
        self.journal = journal.Journal.open(self.uri, run_id)
        self.artifact_dir = self.journal.files
        self.tags: dict = {}  # as recorded when reopened (a resumed run's)
        self.dataset: tuple = (None, None)  # the name and digest of the data it trains on, once logged
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
        checkpoint = _readable(_download(c, found.info.run_id, names.CHECKPOINT, folder), found.info.run_id)
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
    @_uninterrupted
    def set_tags(self, tags: dict) -> None:
        """Tags go as metrics do: first on disk (a sync delivers what the store did not take), then sent, or kept
        for the next batch while the store is away."""
        self.journal.set_tags(_tag_texts(tags))
        if not tags:
            return
        self._not_while_failing()
        self._pending_tags.update(_tag_texts(tags))
        try:
            self._send_pending()
        except Exception as exc:  # noqa: BLE001 - the server went away: training goes on, tags wait with metrics
            self._keep_offline(exc)

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        """Numbers only; NaN and infinities are logged too, since a diverging run should show it.

        Each value is in the journal before it is sent; a store that does not answer gets them later."""
        self.log_steps({step: metrics})

    @_uninterrupted
    def log_steps(self, steps: dict[int, dict]) -> None:
        """log_metrics for several steps in one write (a range test's hundreds of steps: one each would take
        seconds)."""
        now = _now_ms()
        entities = [mlflow.entities.Metric(k, float(v), now, step) for step, metrics in steps.items()
                    for k, v in metrics.items() if _number(v)]
        self.journal.add_metrics([{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                                  for m in entities])
        self._pending.extend(entities)
        try:
            self._send_pending()
        except Exception as exc:  # noqa: BLE001 - the server went away: training goes on, values wait here and on disk
            self._keep_offline(exc)

    def _send_pending(self) -> None:
        was_offline = self._offline_since is not None
        tags = {**self._pending_tags, names.HEARTBEAT: str(_now_ms() // 1000)}
        beat = [mlflow.entities.RunTag(k, v) for k, v in tags.items()]
        while self._pending or self._pending_tags:
            self.client.log_batch(self.run_id, metrics=self._pending[:METRICS_PER_BATCH], tags=beat)
            del self._pending[:METRICS_PER_BATCH]
            self._pending_tags.clear()
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
        tags = [InputTag("mlflow.data.context", "training"), InputTag(names.DATA_SOURCE, kind),
                *(InputTag(names.EXAMPLES.format(split=split), str(n)) for split, n in sizes.items())]
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])
        self.dataset = (dataset.name, dataset.digest)  # what the test scores linked to the model were measured on

    @_uninterrupted
    def log_model(self, model, example_inputs, predictions, *, name: str = "model", metadata: dict | None = None,
                  linked_metrics: tuple[str, ...] = ()) -> str:
        """The model in MLflow's Keras flavour as MLflow 3's logged model `name`: its input/output signature,
        `metadata` (class names) in its MLmodel file, and the run's `linked_metrics` (its test scores) attached to it,
        as the model page shows them. (No input example: MLflow 3.17's Keras flavour writes it before it creates
        the model's folder, and fails.)"""
        try:
            return logged.log_keras(self.client, self.run_id, model, (example_inputs, predictions), name=name,
                                    metadata=metadata, linked_metrics=linked_metrics, dataset=self.dataset)
        except Exception as exc:
            if is_store_error(exc):  # `xrun sync` logs it from the journal
                logged.keep(self.journal.folder, model, example_inputs, name=name, metadata=metadata,
                            linked_metrics=linked_metrics, dataset=self.dataset)
            raise

    @_uninterrupted
    def link_metrics(self, model_id: str, keys, dataset_name: str | None = None,
                     dataset_digest: str | None = None) -> None:
        """Attach this run's latest values of `keys` to a logged model (measured on `dataset_name`, if given)."""
        logged.link_metrics(self.client, self.run_id, model_id, keys, dataset_name, dataset_digest)

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
