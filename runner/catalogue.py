"""The experiments folder as a catalogue: what each file is, how big its model is, and its best result so far."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import XrunError
from .spec import load_spec


def entries(folder: str, tracking_uri: str | None = None) -> list[dict]:
    files = sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")], key=_natural)
    if not files:
        raise XrunError(f"no .yaml files in {folder}", hint="give the folder that holds your experiments")
    best = _best_results(tracking_uri)
    return [_entry(f, best) for f in files]


def _natural(path: Path) -> list:
    """model2 before model10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _entry(path: Path, best: dict) -> dict:
    row = {"file": path.name, "name": "", "dataset": "", "params": None, "runs": 0, "best_test_acc": None,
           "description": ""}
    try:
        spec = load_spec(path)
    except XrunError as exc:
        return {**row, "description": f"invalid: {exc.line()}"}
    runs, accuracy = best.get(spec.name, (0, None))
    return {**row, "name": spec.name, "dataset": spec.document["data"]["dataset"], "params": _param_count(spec),
            "runs": runs, "best_test_acc": accuracy, "description": _first_sentence(spec.document.get("description"))}


def _param_count(spec) -> int | None:
    from .compiler import build_model

    try:
        return build_model(spec).count_params()
    except XrunError:
        return None


def _best_results(tracking_uri: str | None) -> dict[str, tuple[int, float | None]]:
    """Run name -> (finished runs, best test accuracy) over every experiment in the store."""
    from . import tracking

    out: dict[str, tuple[int, float | None]] = {}
    for run in tracking.find_runs(tracking_uri, where="attributes.status = 'FINISHED'"):
        count, best = out.get(run.name, (0, None))
        accuracy = run.metrics.get("test_accuracy")
        better = accuracy if best is None or (accuracy is not None and accuracy > best) else best
        out[run.name] = (count + 1, better)
    return out


def _first_sentence(text: str | None) -> str:
    text = " ".join((text or "").split())
    cut = text.find(". ")
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= 90 else text[:89] + "…"
