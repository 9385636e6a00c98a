"""A sweep's study in an Optuna journal file on a shared folder (NFS, SMB, a mounted bucket): machines share a
sweep without a database server, with the same dead-worker retry as on a database.

Optuna 5.1's JournalStorage keeps no heartbeats, so they are added here: a worker's trial writes the time into the
journal every --heartbeat seconds (as a system attribute named by the trial's id, so a retry's copy of the dead
trial's attributes is not its own beat), and a RUNNING trial silent for --grace-period seconds is failed and
retried by the next worker that looks, as RDBStorage does. The times are each machine's clock: machines whose
clocks differ by more than a fraction of the grace period would retry live trials.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from runner.errors import XrunError

SCHEME = "journal://"  # journal:///shared/sweeps/study.journal
SUFFIX = ".journal"    # or a plain path ending in .journal
BEAT = "xrun:heartbeat:"  # + the trial's id: the time of its last beat


def is_journal(url: str) -> bool:
    return url.startswith(SCHEME) or (url.endswith(SUFFIX) and "://" not in url)


def path_of(url: str) -> Path:
    """The journal file a --storage value names, made absolute (workers get it in their environment)."""
    return Path(url.removeprefix(SCHEME)).expanduser().resolve()


def url_of(path: Path) -> str:
    return f"{SCHEME}{path}"


def open_storage(url: str, *, heartbeat: int, grace: int, on_stale) -> JournalStorage:
    """The journal at `url` (made if missing, its folder too) with heartbeats. Its lock is a symlink beside it,
    which works on NFS v2 and later; a lock left by a killed worker is broken after 30 s."""
    path = path_of(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
    except OSError as exc:
        # mkdir of a folder that is a file says "File exists"
        why = f"{path.parent} is a file" if path.parent.is_file() else exc.strerror or str(exc)
        raise XrunError(f"cannot open the study journal {path} ({why})",
                        hint="give --storage a file in a folder every machine on the sweep can write") from None
    return BeatingJournal(backend, heartbeat=heartbeat, grace=grace, on_stale=on_stale)


def gone(url: str) -> str | None:
    """Why the journal cannot be read now, or None."""
    return None if path_of(url).is_file() else "its file was deleted"


class BeatingJournal(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with RDBStorage's heartbeat: Optuna's optimize loop beats for each running trial
    and fails the stale ones (`fail_stale_trials`), handing each to `on_stale`."""

    def __init__(self, backend, *, heartbeat: int, grace: int, on_stale):
        super().__init__(backend)
        self._beat_seconds, self._grace, self._on_stale = heartbeat, grace, on_stale

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, f"{BEAT}{trial_id}", time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker already failed it as stale (this one was paused); its end says so

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if now - last_beat(t) > self._grace]

    def get_heartbeat_interval(self) -> int:
        return self._beat_seconds

    def get_heartbeat_stale_trial_callback(self):
        return self._on_stale


def last_beat(trial) -> float:
    """When a running trial last beat: its own beat, or its start if it has none yet (a worker killed before its
    first beat is found too)."""
    return trial.system_attrs.get(f"{BEAT}{trial._trial_id}", trial.datetime_start.timestamp())
