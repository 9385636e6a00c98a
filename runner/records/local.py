"""What xrun knows about its runs without importing MLflow: where the default store is, and whether a run's process
is alive. Commands that only read (compare, list, refusing a bad run id) use these and answer in a fraction of a
second; `import mlflow` alone takes seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path

from runner.errors import XrunError
from runner.records import names

STORE_DIR = Path(names.STORE_DIR)
STALE_SECONDS = 900       # a RUNNING run whose heartbeat is older than this is dead, wherever it ran


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the project's SQLite store under ./mlruns."""
    uri = explicit or os.environ.get(names.TRACKING_URI_ENV)
    if uri:
        return uri
    STORE_DIR.mkdir(exist_ok=True)
    return default_uri()


def default_uri() -> str:
    """The project's SQLite store under ./mlruns, as a URI (the folder is not made)."""
    return f"{names.SQLITE_PREFIX}{(STORE_DIR / names.STORE_DB).resolve()}"


def check_store(uri: str) -> str:
    """`uri`, if its store exists or is not a local SQLite file; one that does not is refused, naming it, so that
    reading (a run id looked up, a model found) never creates an empty store where nothing was recorded."""
    db = uri.removeprefix(names.SQLITE_PREFIX).split("?", 1)[0] if uri.startswith(names.SQLITE_PREFIX) else ""
    if db not in ("", ":memory:") and not Path(db).is_file():
        raise XrunError(f"there is no MLflow store at {Path(db).resolve()}: nothing has been recorded there",
                        hint="run xrun in the folder where the runs were recorded (the one holding mlruns/), or "
                             "give --tracking-uri (or MLFLOW_TRACKING_URI)")
    return uri


def is_dead(status: str, tags: dict, now_s: float | None = None) -> bool:
    """A RUNNING run whose process is gone (same host), or whose heartbeat is older than STALE_SECONDS."""
    if status != "RUNNING" or names.HEARTBEAT not in tags:
        return False  # not ours, or made before xrun kept heartbeats: nothing to go by
    if tags.get(names.HOST) == os.uname().nodename and tags.get(names.PID, "").isdigit():
        pid = int(tags[names.PID])
        alive = _pid_alive(pid) and _process_start(pid) == tags.get(names.PROCESS_START, _process_start(pid))
        if not alive:
            return True
    now_s = now_s if now_s is not None else time.time()
    return now_s - float(tags[names.HEARTBEAT]) > STALE_SECONDS


def _process_start(pid: int | None = None) -> str:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not taken for the run's."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
