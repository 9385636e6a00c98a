"""The experiments folder as a catalogue: what each file is, how big its model is, and its best result so far."""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import XrunError
from runner.language.spec import load_spec

COLUMNS = ["file", "name", "dataset", "params", "runs", "best_test_acc", "description"]


def entries(folder: str, tracking_uri: str | None = None) -> list[dict]:
    """One row per experiment file in `folder` (not its sub-folders, where bases live), model2 before model10."""
    where = Path(folder)
    if not where.is_dir():
        raise XrunError(f"no folder {folder}", hint="give the folder that holds your experiments")
    files = sorted([*where.glob("*.yaml"), *where.glob("*.yml")], key=_natural)
    if not files:
        raise XrunError(f"no .yaml files in {folder}", hint="give the folder that holds your experiments")
    best = _best_results(tracking_uri)
    return [_entry(f, best) for f in files]


def _natural(path: Path) -> list:
    """model2 before model10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _entry(path: Path, best: dict) -> dict:
    row = dict.fromkeys(COLUMNS, None) | {"file": path.name, "name": "", "dataset": "", "runs": 0}
    try:
        spec = load_spec(path)
    except XrunError as exc:
        return {**row, "description": f"invalid: {_reason(exc, path)}"}
    experiment = spec.tracking.experiment
    runs, accuracy = best.get((experiment, spec.name), (0, None))
    data = spec.document["data"]  # a built-in dataset's name, or where the own data is
    row.update(name=spec.name, dataset=data.get("dataset") or f"{data['source']}:{data['path']}", runs=runs, best_test_acc=accuracy,
               description=_first_sentence(spec.document.get("description")))
    try:
        row["params"] = _param_count(spec)
    except XrunError as exc:  # valid YAML whose layers do not fit together: say so where the size would be
        row["description"] = f"does not build: {_reason(exc, path)}"
    return row


def _reason(exc: XrunError, path: Path) -> str:
    """The error's first line, without the file name the row already shows."""
    return exc.line().removeprefix(f"{path}:")


def _param_count(spec) -> int:
    from runner.model.compiler import build_model

    return build_model(spec).count_params()


def _best_results(tracking_uri: str | None) -> dict[tuple[str, str], tuple[int, float | None]]:
    """(MLflow experiment, run name) -> (finished runs, best test accuracy), over the whole store.

    A sweep's variants are named `NAME [what varied]`, so only plain runs of the experiment count.
    """
    from runner.records import query

    out: dict[tuple[str, str], tuple[int, float | None]] = {}
    for run in query.find_runs(tracking_uri, where="attributes.status = 'FINISHED'"):
        count, best = out.get((run.experiment, run.name), (0, None))
        accuracy = run.metrics.get("test_accuracy")
        if accuracy is not None and accuracy != accuracy:  # NaN: no result to rank
            accuracy = None
        better = accuracy if best is None or (accuracy is not None and accuracy > best) else best
        out[(run.experiment, run.name)] = (count + 1, better)
    return out


def _first_sentence(text: str | None) -> str:
    text = " ".join((text or "").split())
    cut = text.find(". ")
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= 90 else text[:89] + "…"
