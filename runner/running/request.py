"""The one way into a run: what to run, where to record it and how, as one object (the CLI, resume, sweeps, notebooks
and tests all build one and call `runner.running.run.run_experiment` with it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from runner.language.spec import Spec
from runner.running.resume import Plan


@dataclass(frozen=True)
class RunRequest:
    """`spec` is what runs; to resume, `resume` is the plan `runner.running.resume.plan` made (FILE checked against
    the run's record) and `spec` its `plan.spec`."""

    spec: Spec
    tracking_uri: str | None = None       # MLflow store or server (None: $MLFLOW_TRACKING_URI, else ./mlruns)
    resume: Plan | None = None            # continue this run, into the same MLflow run
    parent_run_id: str | None = None      # nest the run under this one (a sweep's parent)
    run_name: str | None = None           # None: the experiment's name
    tags: Mapping[str, Any] = field(default_factory=dict)  # added to the run's own (a sweep's variant, trial)
    data_dir: str | None = None           # where built-in datasets' files are (--data-dir, $XRUN_DATA_DIR)
    quiet: bool = False                   # no progress display
    console: Any = None                   # a rich Console for messages (None: stderr)
    checkpoint_every: int = 1             # epochs between checkpoints to the run's journal (0: none)
    backup_dir: str | None = None         # multi-worker: where a restarted worker finds the job's state
    extra_callbacks: tuple = ()           # Keras callbacks from code (sweeps' pruning reports, notebooks, tests)
