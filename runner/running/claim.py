"""One process at a time resumes a run: a claim tag on the run, written and read back after a settle, with the
store as the only arbiter (no lock service of xrun's own, so it holds on any store MLflow writes to)."""

from __future__ import annotations

import os
import time

from runner.errors import XrunError
from runner.records import local, names

# Longer than a store takes between one process reading the claim and writing its own: two processes that both
# found the run free have both written when either reads back, and the one tag holds the last writer's claim.
SETTLE_SECONDS = 1.0


def claim(uri: str, run_id: str) -> None:
    """Make this process the run's resumer, or raise XrunError naming the live process that is."""
    from runner.records.connection import client

    c = client(uri)
    mine = _mine()
    _refuse_if_held(run_id, _holder(c, run_id), mine)
    c.set_tag(run_id, names.RESUME_CLAIM, mine)
    time.sleep(SETTLE_SECONDS)
    holder = _holder(c, run_id)
    if holder != mine:
        raise _held(run_id, holder)


def _mine() -> str:
    """host pid process-start written-at: who claims, told apart from a later process with the same pid."""
    return f"{os.uname().nodename} {os.getpid()} {local._process_start()} {int(time.time())}"


def _holder(c, run_id: str) -> str:
    return c.get_run(run_id).data.tags.get(names.RESUME_CLAIM, "")


def _refuse_if_held(run_id: str, holder: str, mine: str) -> None:
    if holder and holder.split()[:3] != mine.split()[:3] and _alive(holder):
        raise _held(run_id, holder)


def _alive(holder: str) -> bool:
    """A claim holds while its process lives (this host) or, from another host, for local.STALE_SECONDS."""
    host, pid, start, written = (holder.split() + ["", "", "", "0"])[:4]
    if host == os.uname().nodename and pid.isdigit():
        return local._pid_alive(int(pid)) and local._process_start(int(pid)) == start
    return time.time() - float(written or 0) < local.STALE_SECONDS


def _held(run_id: str, holder: str) -> XrunError:
    host, pid = (holder.split() + ["?", "?"])[:2]
    return XrunError(f"run {run_id[:8]} is being resumed by process {pid} on {host}",
                     hint="wait for it to end; one process at a time may resume a run")
