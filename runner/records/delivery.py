"""What a run's journal kept, delivered to its store once the run's process has gone: `xrun sync`, and the
end of a run that died."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import mlflow

from runner.errors import XrunError
from runner.records import journal, logged, names
from runner.records.connection import _ready_client
from runner.records.local import tracking_uri
from runner.records.values import METRICS_PER_BATCH, _short, _tag_texts


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
    logged.deliver_kept(c, run_id, folder)  # the MLflow model the store did not take, as it would have been
    c.set_terminated(run_id, status=state["status"], end_time=state.get("end_ms"))
    shutil.rmtree(folder, ignore_errors=True)
    return state["status"]


def _replay_once(folder: Path) -> str:
    """Replay a journal; if another sync took it first, wait for that one and say what it did."""
    try:
        return replay(folder)
    except (journal.Busy, FileNotFoundError):  # taken, or even delivered, since the journals were listed
        status = _status_or(folder, "")
    deadline = time.monotonic() + OTHER_SYNC_SECONDS
    while (folder / journal.STATE).exists() and journal.locked(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not (folder / journal.STATE).exists():
        return f"{status} (delivered by another xrun sync)" if status else "delivered by another xrun sync"
    return replay(folder)  # the other one failed, or still holds it: this one tries (or says it is busy)


def _status_or(folder: Path, default: str) -> str:
    try:
        return journal.final_state(folder)["status"]
    except OSError:  # the other one has delivered it already
        return default


def _store_of(folder: Path, uri: str) -> str:
    try:
        return json.loads((folder / journal.STATE).read_text()).get("uri", "")
    except OSError:  # another sync delivered it since it was listed: it was this store's, or beside it
        return uri


OTHER_SYNC_SECONDS = 120  # how long a sync waits for another that is delivering the same journal


def sync(uri: str | None = None, only_this: bool = False) -> list[tuple[str, str, str]]:
    """Deliver every journal left by a run whose process has gone: (run id, its store, the status it ended with,
    or why it could not be delivered yet) each; one store that is still down does not hold up the others.

    Looks beside the given (or default) store and in ./mlruns/journal, where runs on a server keep theirs;
    `only_this`: only the journals of that store (what `xrun run` delivers before it starts)."""
    out, uri = [], tracking_uri(uri)
    for folder in journal.folders(journal.root(uri), journal.root("http://")):
        where = _store_of(folder, uri)
        if only_this and where != uri:
            continue
        try:
            out.append((folder.name, where, _replay_once(folder)))
        except XrunError as exc:
            out.append((folder.name, where, f"not delivered: {exc.message}"))
        except Exception as exc:  # noqa: BLE001 - the store is still failing: the journal stays for next time
            out.append((folder.name, where, f"not delivered: {type(exc).__name__}: {_short(exc)}"))
    return out if only_this else out + _sync_offline(uri)


OLD_OFFLINE = Path(names.STORE_DIR) / "offline"  # where xrun before the journal kept metrics a server did not take


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
