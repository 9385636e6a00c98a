"""A run's durable local journal: its state, metrics, files and latest model kept on local disk until the store has
confirmed them, so a store that fails (or a process that dies) loses nothing, and `xrun sync` delivers it later."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from runner.records import names

FOLDER = "journal"
STATE = "state.json"
METRICS = "metrics.jsonl"
LOCK = ".lock"
# A SIGKILLed process never ends its run: whoever replays its journal ends it with this.
DIED = "KILLED"
DIED_REASON = "the process ended without ending the run (killed or crashed); ended by xrun sync"


def root(uri: str) -> Path:
    """Beside a local SQLite store (mlruns/mlflow.db -> mlruns/journal/); ./mlruns/journal for any other store."""
    if uri.startswith("sqlite:///"):
        db = uri.removeprefix("sqlite:///").split("?", 1)[0]
        if db not in ("", ":memory:"):
            return Path(db).resolve().parent / FOLDER
    return (Path(names.STORE_DIR) / FOLDER).resolve()


class Journal:
    """The folder of one run in progress: state.json, metrics.jsonl (every value, written before it is sent) and
    files/ (artifacts not yet confirmed, at their artifact paths). The owning process holds its lock while it runs,
    so `xrun sync` leaves a live run alone and takes over a dead one's."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = folder / "files"
        self._lock = None

    @classmethod
    def open(cls, uri: str, run_id: str, **state) -> "Journal":
        self = cls(root(uri) / run_id)
        self.files.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.folder / LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        previous = self.state() if (self.folder / STATE).exists() else {}
        self.write_state(**{**previous, "run_id": run_id, "uri": uri, "status": "RUNNING", "end_reason": "",
                            "host": os.uname().nodename, "pid": os.getpid(), **state})
        return self

    def state(self) -> dict:
        return json.loads((self.folder / STATE).read_text())

    def write_state(self, **changes) -> None:
        """Atomically: a crash mid-write leaves the previous state, never half of one."""
        path = self.folder / STATE
        state = {**(json.loads(path.read_text()) if path.exists() else {}), **changes}
        _atomic_write(path, json.dumps(state, indent=1))

    def set_tags(self, tags: dict) -> None:
        self.write_state(tags={**self.state().get("tags", {}), **{k: str(v) for k, v in tags.items()}})

    def add_metrics(self, entries: list[dict]) -> None:
        with (self.folder / METRICS).open("a") as out:
            out.writelines(json.dumps(e) + "\n" for e in entries)
            out.flush()
            os.fsync(out.fileno())

    @property
    def checkpoint(self) -> Path:
        """The latest model, optimizer state included, at the artifact path it is delivered to."""
        return self.files / names.CHECKPOINT

    def save_model(self, model, epoch: int) -> None:
        """Write to a new file and rename it over the old one: a kill mid-save leaves the previous checkpoint."""
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint.with_name("last.partial.keras")
        model.save(partial)
        os.replace(partial, self.checkpoint)
        self.write_state(checkpoint_epoch=epoch)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def discard(self) -> None:
        """Only once the store has confirmed everything in it."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def waiting(uri: str) -> bool:
    """Whether any journal beside this store, or in ./mlruns/journal, waits to be delivered (no MLflow needed)."""
    return bool(folders(root(uri), root("http://")))


def folders(*roots: Path) -> list[Path]:
    """Journals left by runs whose process has gone (a live process holds its journal's lock)."""
    out = []
    for base in dict.fromkeys(roots):
        for folder in sorted(base.glob("*/")) if base.is_dir() else []:
            if (folder / STATE).is_file() and not locked(folder):
                out.append(folder)
    return out


def locked(folder: Path) -> bool:
    """Whether a process holds the journal: its live run, or a sync delivering it."""
    try:
        probe = open(folder / LOCK, "a")
    except FileNotFoundError:  # delivered and removed meanwhile
        return False
    with probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
    return False


class Busy(Exception):
    """Another process holds the journal: its run is alive, or another sync is delivering it."""


@contextmanager
def taken(folder: Path):
    """Hold a journal's lock while delivering it, so two syncs never deliver one journal at once."""
    with open(folder / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{folder} is in use by another xrun process") from None
        yield


def metrics(folder: Path) -> list[dict]:
    """Every value the run logged, in order (a line cut short by a kill is dropped)."""
    return metrics_file(folder / METRICS)


def metrics_file(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def files(folder: Path) -> list[tuple[Path, str | None]]:
    """(local file, artifact folder) for every file waiting to be delivered; half-written ones are left out."""
    base = folder / "files"
    found = sorted(p for p in base.rglob("*") if p.is_file() and ".partial" not in p.name) if base.is_dir() else []
    return [(p, str(p.parent.relative_to(base)) if p.parent != base else None) for p in found]


def final_state(folder: Path) -> dict:
    """What the run's end should be: its own, or KILLED when its process died before ending it."""
    state = json.loads((folder / STATE).read_text())
    if state.get("status", "RUNNING") == "RUNNING":
        state.update(status=DIED, end_reason=DIED_REASON, end_ms=_mtime_ms(folder))
    return state


def _mtime_ms(folder: Path) -> int:
    """When the dead run last wrote anything: the nearest we know to when it ended."""
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and p.name != LOCK]
    return int(1000 * max(times, default=time.time()))
