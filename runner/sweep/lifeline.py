"""A sweep's processes tied to their lives: --jobs workers end with the process that started them, and while a
sweep process works its parent run is marked as a live run is, so `xrun sync` ends it KILLED once it is killed."""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

PARENT_ENV = "XRUN_SWEEP_PARENT_PID"   # set by the sweep process for the workers it starts
PR_SET_PDEATHSIG = 1                   # <linux/prctl.h>
POLL_SECONDS = 1.0


def worker_env() -> dict:
    """What a worker started by this process needs to know to end with it."""
    return {PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In a --jobs worker: SIGTERM (which ends its trial KILLED and queues it again) as soon as the sweep process
    that started it is gone, so a SIGKILLed sweep leaves no orphans training on."""
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit():
        return
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        _check_parent(int(expected))  # it may have died before the kernel was told to watch it
        return
    threading.Thread(target=_watch, args=(int(expected),), daemon=True, name="xrun-parent-watch").start()


def _check_parent(expected: int) -> bool:
    if os.getppid() == expected:
        return True
    os.kill(os.getpid(), signal.SIGTERM)
    return False


def _watch(expected: int) -> None:
    while _check_parent(expected):
        time.sleep(POLL_SECONDS)


@contextmanager
def parent_alive(uri: str, run_id: str):
    """While this process works on the sweep, its parent run has a live run's process tags, heartbeat and journal
    (whose lock the process holds): once the process is killed, `xrun sync` delivers the journal, ending the parent
    KILLED, and the run tables show it dead. Another sweep process on this machine holding it already keeps it."""
    from runner.records import journal
    from runner.records.alive import kept_alive

    root = journal.root(uri)
    root.mkdir(parents=True, exist_ok=True)
    # A gate taken without waiting: a second sweep process here must not wait on the journal's lock for the first.
    gate_path = root / f".{run_id}.sweep-lock"
    with open(gate_path, "w") as gate:
        try:
            fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield
            return
        try:
            with kept_alive(uri, run_id):
                yield
        finally:
            gate_path.unlink(missing_ok=True)  # while still held: no one else is let in on this file meanwhile
