"""The records' front door: `store.Run`, `store.sync`, `store.client` and the rest, each defined in the module of
its concern (writer, delivery, edits, connection, failures, heartbeat, values, local) and named here for callers."""

from __future__ import annotations

# Re-exported: callers across xrun use these as store.NAME (_process_start: a test of runs reads it).
from runner.records.connection import client, creating_client, ui_command  # noqa: F401
from runner.records.delivery import end_dead, replay, sync  # noqa: F401
from runner.records.edits import add_to_run, delete_run, end_run, plain_run, reopen  # noqa: F401
from runner.records.failures import (  # noqa: F401
    StoreFailed,
    StoreSkipped,
    interrupts_held,
    is_store_error,
    stopping,
)

# Kept MLflow-free in local.py, so commands that only read answer without importing MLflow.
from runner.records.local import (  # noqa: F401
    STALE_SECONDS,
    STORE_DIR,
    _process_start,
    is_dead,
    tracking_uri,
)
from runner.records.values import MAX_PARAM_CHARS, flatten, model_name  # noqa: F401
from runner.records.writer import NullRun, Run  # noqa: F401
