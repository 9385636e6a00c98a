"""A parent run that records nothing itself (a sweep's, a cross-validation's) marked as a live run is, so that
`xrun sync` ends it KILLED once its process is gone instead of leaving it RUNNING."""

from __future__ import annotations

from contextlib import contextmanager

from runner.records import journal, store
from runner.records.heartbeat import _Heartbeat, _process_tags


@contextmanager
def kept_alive(uri: str, run_id: str):
    """While the block runs, the run has a live run's process tags, heartbeat and journal (whose lock this process
    holds): a killed process leaves a journal that `xrun sync` delivers as KILLED."""
    root = journal.root(uri)
    root.mkdir(parents=True, exist_ok=True)
    kept = journal.Journal.open(uri, run_id)
    store.add_to_run(run_id, uri, tags=_process_tags())
    beat = _Heartbeat(uri, run_id)
    try:
        yield
    finally:
        beat.stop()
        kept.discard()
