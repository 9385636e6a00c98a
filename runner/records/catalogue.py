"""The experiments folder as a catalogue: what each file is, how big its model is, and its best result so far.

No TensorFlow and no MLflow: the parameter count is arithmetic on the model's graph (runner.language.param_count,
checked against Keras in the tests), and the runs are read straight from a local store (runner.records.query).
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.errors import XrunError
from runner.language import param_count
from runner.language.source import dotted
from runner.language.spec import load_spec
from runner.text import first_sentence, natural_key

# runs, best_test_acc: runs of the experiment as written (its own epochs and data, no --set but tracking.*);
# partial_runs: its other finished runs (smoke tests with fewer epochs or less data, --set variants), not ranked.
COLUMNS = ["file", "name", "dataset", "params", "runs", "best_test_acc", "partial_runs", "description"]


def entries(folder: str, tracking_uri: str | None = None) -> list[dict]:
    """One row per experiment file in `folder` (not its sub-folders, where bases live), model2 before model10."""
    where = Path(folder)
    if not where.is_dir():
        raise XrunError(f"no folder {folder}", hint="give the folder that holds your experiments")
    files = sorted([*where.glob("*.yaml"), *where.glob("*.yml")], key=lambda path: natural_key(path.name))
    if not files:
        raise XrunError(f"no .yaml files in {folder}", hint="give the folder that holds your experiments")
    runs = _finished_runs(tracking_uri)
    return [_entry(f, runs) for f in files]


def _entry(path: Path, finished: dict) -> dict:
    row = dict.fromkeys(COLUMNS, None) | {"file": path.name, "name": "", "dataset": "", "runs": 0, "partial_runs": 0}
    try:
        spec = load_spec(path, data_must_exist=False)  # listed, data or not (the ImageNet ones are not included)
    except XrunError as exc:
        return {**row, "description": f"invalid: {_reason(exc, path)}"}
    data = spec.data  # a built-in dataset's name, or where the own data is
    row.update(name=spec.name, dataset=data.dataset or f"{data.source}:{data.options['path']}",
               description=first_sentence(spec.description, 90),
               **_results(spec, [r for r in finished.get(spec.tracking.experiment, []) if _ran_from(r, path, spec)]))
    try:
        row["params"] = _param_count(spec)
    except XrunError as exc:  # valid YAML whose layers do not fit together: say so where the size would be
        row["description"] = f"does not build: {_reason(exc, path)}"
    return row


def _reason(exc: XrunError, path: Path) -> str:
    """The error's first line, without the file name the row already shows."""
    return exc.line().removeprefix(f"{path}:")


def _param_count(spec) -> int | None:
    """Weights by arithmetic (no TensorFlow); None where only Keras knows (a KerasLayer, data whose size the files say)."""
    shape = spec.input_shape or spec.data_facts().shape
    if shape is None or None in shape:
        return None
    try:
        return param_count.count_params(spec.graph, shape)
    except param_count.DoesNotFit as exc:
        node = exc.node
        raise XrunError(f"{node.type}'s {exc}", where=spec.locate(node.origin + ("type",)), path=dotted(node.origin),
                        hint="use padding: same, a smaller window, or down-sample less before this layer") from None


def _finished_runs(tracking_uri: str | None) -> dict[str, list]:
    """MLflow experiment -> its finished runs (sweep parents aside: they trained nothing), over the whole store."""
    from runner.records import names, query

    out: dict[str, list] = {}
    for run in query.find_runs(tracking_uri, status="FINISHED"):
        if run.tags.get(names.SWEEP) != "parent":
            out.setdefault(run.experiment, []).append(run)
    return out


def _ran_from(run, path: Path, spec) -> bool:
    """The run came from this file: by its experiment-file tag, which two files of one `name:` do not share.

    The tag is the path as it was given, relative to where xrun ran: its parts end the file's absolute path.
    A run without the tag (an evaluation, an old store) is credited by its name, as before the tag.
    """
    from runner.records import names

    recorded = run.tags.get(names.EXPERIMENT_FILE)
    if recorded is None:
        return run.name == spec.name
    parts, full = Path(recorded).parts, path.resolve().parts
    return Path(recorded).resolve() == path.resolve() or (not Path(recorded).is_absolute() and full[-len(parts):] == parts)


def _results(spec, runs: list) -> dict:
    """How many runs trained the experiment as written, their best test accuracy, and how many others there are."""
    full = [r for r in runs if _as_written(r, spec)]
    accuracies = [a for r in full if (a := r.metrics.get("test_accuracy")) is not None and a == a]  # a NaN: no result
    return {"runs": len(full), "best_test_acc": max(accuracies, default=None), "partial_runs": len(runs) - len(full)}


def _as_written(run, spec) -> bool:
    """The run trained the file's own epochs on its own data, and changed nothing with --set but where it is recorded
    (params are as xrun logs them: JSON text of the resolved value)."""
    from runner.records import tables

    same = (run.params.get("training.epochs") == json.dumps(spec.training.epochs)
            and run.params.get("data.limit", "null") == json.dumps(spec.data.limit))
    return same and all(key.startswith("tracking.") for key in tables.overridden(run))

