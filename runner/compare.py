"""Compare runs side by side: one row per run, only the params that differ, in table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import difflib
import io
import json
import math

from .errors import XrunError
from .tracking import RunRecord

# Params every run has that say nothing about what was varied (or that are shown in their own column).
_NOT_COMPARED = {"description", "name", "model.total_params", "model.trainable_params",
                 "model.non_trainable_params", "runtime.overrides"}

FIXED_COLUMNS = ["run", "name", "description", "params", "epochs", "best_val_acc", "final_val_acc",
                 "test_loss", "test_acc", "seconds", "status"]


def differing_params(runs: list[RunRecord], include_all: bool = False) -> list[str]:
    """Param keys whose values are not the same in every run (all keys with include_all)."""
    keys = sorted({k for r in runs for k in r.params} - _NOT_COMPARED)
    if include_all:
        return keys
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def rows(runs: list[RunRecord], param_keys: list[str], histories: dict[str, dict]) -> list[dict]:
    return [_row(r, param_keys, histories.get(r.run_id, {})) for r in runs]


def _row(run: RunRecord, param_keys: list[str], history: dict) -> dict:
    val = history.get("val_accuracy", [])
    row = {"run": run.run_id[:8], "name": run.name, "description": _short(run.description, 60),
           "params": _int(run.params.get("model.total_params")), "epochs": _int(run.metrics.get("epochs_run")),
           "best_val_acc": max(val) if val else run.metrics.get("best_val_accuracy"),
           "final_val_acc": val[-1] if val else run.metrics.get("val_accuracy"),
           "test_loss": run.metrics.get("test_loss"), "test_acc": run.metrics.get("test_accuracy"),
           "seconds": run.seconds, "status": run.status}
    row.update({k: run.params.get(k) for k in param_keys})
    return row


def sort_rows(table: list[dict], column: str | None, descending: bool = False) -> list[dict]:
    if not column:
        return table
    if table and column not in table[0]:
        raise XrunError(f"no column '{column}' to sort by", hint="columns: " + ", ".join(table[0]))
    present = [r for r in table if r.get(column) is not None]
    missing = [r for r in table if r.get(column) is None]
    return sorted(present, key=lambda r: _sort_key(r[column]), reverse=descending) + missing


def _sort_key(value):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _int(value):
    return None if value is None else int(float(value))


def _short(text: str, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def to_csv(table: list[dict]) -> str:
    out = io.StringIO()
    if table:
        writer = csv.DictWriter(out, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in table)
    return out.getvalue()


def to_json(table: list[dict]) -> str:
    return json.dumps(table, indent=2)


def to_markdown(table: list[dict]) -> str:
    if not table:
        return ""
    columns = list(table[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r[c]).replace("|", "\\|") for c in columns) + " |" for r in table]
    return "\n".join(lines) + "\n"


def rich_table(table: list[dict], title: str = ""):
    from rich.table import Table
    from rich.text import Text

    out = Table(title=title, title_justify="left")
    for column in (table[0] if table else FIXED_COLUMNS):
        out.add_column(column, justify="right" if column in _NUMERIC else "left", overflow="fold")
    for r in table:
        out.add_row(*(Text(cell(v)) for v in r.values()))  # Text: "[a=1]" in a run name is not markup
    return out


_NUMERIC = {"params", "epochs", "best_val_acc", "final_val_acc", "test_loss", "test_acc", "seconds"}


def config_diff(text_a: str, text_b: str, name_a: str, name_b: str) -> str:
    """A unified diff of two runs' resolved YAML."""
    diff = difflib.unified_diff(text_a.splitlines(keepends=True), text_b.splitlines(keepends=True),
                                fromfile=name_a, tofile=name_b)
    return "".join(diff) or "the resolved configs are identical\n"
