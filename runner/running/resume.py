"""Resuming a run safely, before TensorFlow loads: the run's recorded config is the truth, and the experiment file
and any new --set values are checked against it (another model is refused; other drift only when asked for)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import XrunError
from runner.language.spec import Spec, load_spec
from runner.records import local, names, query
from runner.running.claim import claim

RESUMABLE = ("KILLED", "FAILED", "FINISHED", "RUNNING")  # FINISHED: to train more epochs; RUNNING: when dead
IGNORED = ("description",)  # rewording a description changes nothing that trains
SHOWN = 3                   # differences named in one line; the rest are counted
# training keys whose value in a file (this one) leaves the decision to the run, which records what it decided
DECIDED_BY_THE_RUN = {"seed": None, "precision": "auto"}


@dataclass
class Plan:
    """What a resume will do: which run, as what it was recorded, and what the user changed on top."""

    run_id: str
    status: str                  # as recorded; a dead RUNNING run is ended KILLED before it resumes
    spec: Spec                   # the file with the run's own --set values, then the new ones
    done_epochs: int             # epochs its saved model completed
    changes: dict = field(default_factory=dict)   # flattened key -> (recorded value, new value)
    recorded_text: str = ""      # the run's config/resolved.yaml as it was before this resume


def plan(file: str | Path, overrides: list[str], run_id: str, uri: str | None = None,
         allow_changes: bool = False) -> Plan:
    """Check a `--resume` against the run's record; raises XrunError (one line) if it cannot go ahead as asked."""
    uri = local.tracking_uri(uri)
    full = query.resolve_id(run_id, uri)  # a bad id is refused here, before MLflow is even imported
    run = query.find_runs(uri, run_ids=[full])[0]
    _check_status(run)
    recorded_text = _artifact(full, names.RESOLVED_CONFIG, uri)
    recorded = _recorded_spec(recorded_text)
    original = [line for line in _artifact(full, names.OVERRIDES, uri).splitlines() if line.strip()]
    spec = load_spec(file, original + list(overrides))
    # What the run decided for itself (a drawn seed, what `auto` precision chose there) is in its resolved config.
    decided = {key: getattr(recorded.training, key) for key, undecided in DECIDED_BY_THE_RUN.items()
               if getattr(spec.training, key) == undecided}
    spec = spec.pinned(len(original), **decided) if decided else spec
    changes = _differences(recorded.resolved_document(), spec.resolved_document())
    _refuse_another_model(full, spec, changes)
    asked = {k: v for k, v in changes.items() if _set_by(k, overrides)}
    drift = {k: v for k, v in changes.items() if k not in asked}
    if drift and not allow_changes:
        raise XrunError(f"{spec.path} differs from the config run {full[:8]} was trained with: {_listed(drift)}",
                        hint="pass --allow-changes to resume with these changes (they are recorded on the run), "
                             "or undo them")
    done = _done_epochs(run)
    _check_epochs(run, spec, done)
    claim(uri, full)  # last: a resume refused for any other reason claims nothing
    return Plan(full, run.status, spec, done, changes, recorded_text)


def _check_status(run: query.RunRecord) -> None:
    if run.status == "RUNNING" and not local.is_dead(run.status, run.tags):
        where = f"process {run.tags[names.PID]} on {run.tags[names.HOST]}" if names.PID in run.tags else "elsewhere"
        raise XrunError(f"run {run.run_id[:8]} is RUNNING ({where})",
                        hint="wait for it to end, or stop it; a run whose process has gone can be resumed")
    if run.status not in RESUMABLE:
        raise XrunError(f"run {run.run_id[:8]} is {run.status}; it cannot be resumed",
                        hint="start a new run without --resume")


def _artifact(run_id: str, path: str, uri: str) -> str:
    try:
        return query.artifact_text(run_id, path, uri)
    except XrunError:
        raise XrunError(f"run {run_id[:8]} has no recorded config ({path}) to resume from",
                        hint="only runs made by xrun can be resumed; start a new run without --resume") from None


def _recorded_spec(text: str) -> Spec:
    """The resolved config the run recorded, loaded as any file is (so both sides have the same defaults)."""
    # Read as a file in a folder of its own (never written), so a relative data path means nothing it did not.
    return load_spec(Path(tempfile.gettempdir()) / "xrun-resume" / "resolved.yaml", text=text, data_must_exist=False)


def _differences(recorded: dict, now: dict) -> dict:
    from runner.records.store import flatten  # as the run's params were written

    was, new = flatten(recorded), flatten(now)
    return {k: (was.get(k, "(unset)"), new.get(k, "(unset)")) for k in sorted(was.keys() | new.keys())
            if was.get(k) != new.get(k) and k not in IGNORED}


def _refuse_another_model(run_id: str, spec: Spec, changes: dict) -> None:
    model = {k: v for k, v in changes.items() if k == "model" or k.startswith("model.")}
    if model:
        first = next(iter(model))
        raise XrunError(f"run {run_id[:8]} trained another model: {_listed(model)}",
                        where=spec.locate(_path(first)) or spec.locate(("model",)) or str(spec.path),
                        hint="resume it with the file it ran (its config/resolved.yaml), or start a new run "
                             "without --resume")


def _path(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def _set_by(key: str, overrides: list[str]) -> bool:
    """Whether one of the new --set values is what changed `key` (a --set of a section covers its keys)."""
    for text in overrides:
        target = text.split("=", 1)[0].strip().replace("[", ".").replace("]", "")
        if key == target or key.startswith(target + "."):
            return True
    return False


def _listed(changes: dict) -> str:
    shown = [f"{k} {was} -> {now}" for k, (was, now) in list(changes.items())[:SHOWN]]
    more = len(changes) - SHOWN
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _done_epochs(run: query.RunRecord) -> int:
    if run.tags.get(names.CHECKPOINT_EPOCH, "").isdigit():
        return int(run.tags[names.CHECKPOINT_EPOCH])
    return int(run.metrics.get("epochs_run", 0))


def _check_epochs(run: query.RunRecord, spec: Spec, done: int) -> None:
    epochs = spec.training.epochs
    if run.status == "FINISHED" and epochs <= done:
        raise XrunError(f"run {run.run_id[:8]} is FINISHED after {done} epochs; there is nothing left to train",
                        hint=f"to train it further, add --set training.epochs=N with N > {done}")


def changes_text(changes: dict) -> str:
    """How a resume changed the config, for the run's xrun.resume_changes tag."""
    return "; ".join(f"{k}: {was} -> {now}" for k, (was, now) in changes.items())
