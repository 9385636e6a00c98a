"""When the store fails or the process is told to stop: Ctrl-C and SIGTERM held over a store write, the
impatient mode of a process that is stopping, and the errors that say the store did not take something."""

from __future__ import annotations

import functools
import os
import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import mlflow

if TYPE_CHECKING:
    from runner.records.writer import Run


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


class StoreSkipped(OSError):
    """Not sent: the store already failed a run that is stopping (the journal has it)."""


class StoreFailed(Exception):
    """The store did not confirm a run's end; its state and files are in the journal for `xrun sync`."""

    def __init__(self, run: Run, cause: str):
        self.run_id, self.folder, self.cause = run.run_id, run.journal.folder, cause
        super().__init__(f"the tracking store did not take {cause}; run {run.run_id[:8]} and its model are kept "
                         f"in {run.journal.folder}")


def is_store_error(exc: BaseException) -> bool:
    """The store failed (full disk, a server down or refusing), as opposed to a bug in what was sent."""
    return isinstance(exc, (OSError, mlflow.exceptions.MlflowException))
