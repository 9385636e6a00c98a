"""Compare runs side by side: one row per run, name first, only the params that differ; table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re

from runner.errors import XrunError, did_you_mean
from runner.records import names, query, run_names
from runner.records.query import RunRecord
from runner.text import first_sentence, natural_key

# Params every run has that say nothing about what was varied (or that are shown in their own column).
_NOT_COMPARED = {"description", "name", "model.total_params", "model.trainable_params",
                 "model.non_trainable_params", "runtime.overrides"}
# Params that follow from others (data.limit, validation_split) and that a run failing early never logs: shown with
# --all-params, but not as a difference.
_DERIVED = {"data.train_examples", "data.val_examples", "data.test_examples", "runtime.global_batch_size",
            "runtime.per_replica_batch_size", "runtime.replicas", "runtime.workers", "runtime.distribute"}

# The columns every table has, in order: who, then what it cost and how well it did, then how it ended. The params
# that differ go between "run" and "params"; "description" comes last, and only when the runs' descriptions differ.
LEAD_COLUMNS = ["name", "run"]
RESULT_COLUMNS = ["params", "epochs", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc",
                  "test_loss", "test_acc", "seconds", "status"]
_NUMERIC = {"params", "epochs", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "test_loss",
            "test_acc", "seconds", "runs", "best_test_acc", "partial_runs"}
_PERCENT = {"train_acc", "val_acc", "best_val_acc", "test_acc", "best_test_acc"}

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Keras names the accuracy metric after the string given to compile(); the first key a run has wins.
_ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")
_OVERRIDE_KEY = re.compile(r"(?:^|\s)([A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*)=")


# --- which runs ------------------------------------------------------------------------------------------

def select(run_ids: list[str], experiments: list[str], latest: int | None, where: str,
           uri: str | None) -> list[RunRecord]:
    """RUN_IDS (full or unique prefixes; a sweep's parent stands for its variants), else the runs of the named
    experiments (all if none) that match `where`, newest first; sweep parents, which hold no results, and xrun's own
    bookkeeping runs are left out."""
    if run_ids and (experiments or where):
        raise XrunError("give RUN_IDS or --experiment/--where, not both",
                        hint="RUN_IDS already say which runs; drop the filter or the ids")
    internal = [e for e in experiments if e in INTERNAL_EXPERIMENTS]
    if internal:
        raise XrunError(f"experiment '{internal[0]}' holds xrun's own bookkeeping, not runs to compare",
                        hint="give the experiment your runs are in (tracking.experiment in the YAML)")
    if run_ids:
        runs = expand_sweeps(query.find_runs(uri, run_ids=resolve_ids(run_ids, uri)), uri)
    else:
        runs = [r for r in query.find_runs(uri, experiments=experiments or None, where=where)
                if not is_sweep_parent(r) and not is_internal(r)]
    runs = runs[:latest] if latest else runs
    if not runs:
        raise XrunError("no runs to compare", hint=_no_runs_hint(experiments, where))
    return runs


def _no_runs_hint(experiments: list[str], where: str) -> str:
    if where:
        return f"no run matches --where {where!r}; try a looser filter"
    if experiments:
        return f"{', '.join(experiments)} has no runs yet; train one with `xrun FILE`"
    return "no runs are recorded yet; train one with `xrun FILE`"


resolve_ids = query.resolve_ids  # ids or the 8-character prefixes the tables show (also used by --resume)


# Experiments xrun kept for its own bookkeeping: sweep claims, in stores from before Optuna handed out the trials.
INTERNAL_EXPERIMENTS = {"xrun-sweep-claims"}


def is_internal(run: RunRecord) -> bool:
    return run.experiment in INTERNAL_EXPERIMENTS or names.CLAIM_OF in run.tags


def is_sweep_parent(run: RunRecord) -> bool:
    """A sweep's parent, or a cross-validation's (xrun cv): it stands for its child runs in the tables."""
    return run.tags.get(names.SWEEP) == "parent" or run.tags.get(names.CV) == "parent"


def expand_sweeps(runs: list[RunRecord], uri: str | None) -> list[RunRecord]:
    """Each sweep parent replaced by its variants (the latest attempt of each), without repeats."""
    out: dict[str, RunRecord] = {}
    for run in runs:
        for r in sweep_children(run.run_id, uri) if is_sweep_parent(run) else [run]:
            out.setdefault(r.run_id, r)
    return list(out.values())


def sweep_children(parent_id: str, uri: str | None) -> list[RunRecord]:
    """The newest child run of each variant of a sweep: a retried variant's earlier failures are history."""
    latest: dict[str, RunRecord] = {}
    for run in query.find_runs(uri, parent_run_id=parent_id):  # newest first
        latest.setdefault(run.tags.get(names.VARIANT) or run.run_id, run)
    return list(latest.values())


# --- the table -------------------------------------------------------------------------------------------

def table(runs: list[RunRecord], include_all: bool = False, uri: str | None = None) -> list[dict]:
    """One row per run: the lead columns, the params that differ (every param with include_all), the results."""
    keys = differing_params(runs, include_all)
    describe = include_all or len({r.description for r in runs}) > 1
    return [_row(r, keys, describe, uri) for r in runs]


def differing_params(runs: list[RunRecord], include_all: bool = False) -> list[str]:
    """Param keys whose values are not the same in every run (all keys with include_all).

    A model.* key shows only if some run set it (--set or a sweep): runs of different architectures differ in
    dozens of layer arguments, which the params count and the description sum up better than columns would.
    """
    keys = sorted({k for r in runs for k in r.params} - _NOT_COMPARED)
    if include_all:
        return keys
    chosen = set().union(*(overridden(r) for r in runs))
    return [k for k in keys if k not in _DERIVED and len({r.params.get(k) for r in runs}) > 1
            and (not k.startswith("model.") or k in chosen)]


def overridden(run: RunRecord) -> set[str]:
    """The param keys a run's --set overrides (and sweep variant) named."""
    text = " ".join([run.params.get("runtime.overrides", ""), run.tags.get(names.VARIANT, "")])
    return {_param_key(k) for k in _OVERRIDE_KEY.findall(text)}


def _param_key(override_key: str) -> str:
    """`model.layers[0].filters` (as --set writes it) -> `model.layers.0.filters` (as MLflow params hold it)."""
    return re.sub(r"\[(\d+)\]", r".\1", override_key)


def _name(run: RunRecord, param_keys: list[str]) -> str:
    """A sweep variant's or --set run's name without its `[key=value ...]` when the table shows those keys as
    columns anyway."""
    variant = run.tags.get(names.VARIANT) or run.params.get("runtime.overrides", "")
    name, bracket, _ = run.name.partition(" [")  # an experiment's name has no spaces: the rest is what varied
    keys = {_param_key(k) for k in _OVERRIDE_KEY.findall(variant) if run_names.named(k)}
    if bracket and run.name.endswith("]") and keys and keys <= set(param_keys):
        return name
    return run.name


def _row(run: RunRecord, param_keys: list[str], describe: bool, uri: str | None) -> dict:
    m = run.metrics
    accuracy = next((k for k in _ACCURACY_KEYS if k in m), "accuracy")
    row = {"name": _name(run, param_keys), "run": run.run_id}
    row.update({k: run.params.get(k) for k in param_keys})
    row.update({"params": _int(run.params.get("model.total_params")), "epochs": _int(m.get("epochs_run")),
                "train_loss": m.get("loss"), "train_acc": m.get(accuracy), "val_loss": m.get("val_loss"),
                "val_acc": m.get(f"val_{accuracy}"), "best_val_acc": _best_val(run, accuracy, uri),
                "test_loss": m.get("test_loss"), "test_acc": m.get("test_accuracy"), "seconds": run.seconds,
                "status": "PRUNED" if run.tags.get(names.PRUNED) == "true" else run.shown_status})
    if describe:
        row["description"] = first_sentence(run.description, 60)
    return row


def _best_val(run: RunRecord, accuracy: str, uri: str | None) -> float | None:
    if "best_val_accuracy" in run.metrics or f"val_{accuracy}" not in run.metrics:
        return run.metrics.get("best_val_accuracy")
    # A run that failed or was stopped never logged its summary; its epochs still say what it reached.
    values = [v for v in query.metric_history(run.run_id, f"val_{accuracy}", uri) if not math.isnan(v)]
    return max(values) if values else None


def sort_rows(rows: list[dict], column: str | None, descending: bool = False) -> list[dict]:
    """Rows by `column` (numbers as numbers, text naturally: model2 before model10); a stable sort, so equal values
    keep their order (newest first), and rows without a value stay last either way."""
    if not column or not rows:
        return rows
    column = _column(column, list(rows[0]))
    present = [r for r in rows if not _missing(r.get(column))]
    missing = [r for r in rows if _missing(r.get(column))]
    return sorted(present, key=lambda r: _sort_key(r[column]), reverse=descending) + missing


def _column(name: str, columns: list[str]) -> str:
    """A column by its key or by the short header the table shows (`batch_size` for `training.batch_size`)."""
    shown = dict(zip(headers(columns), columns))
    if name in columns or name in shown:
        return name if name in columns else shown[name]
    hint = did_you_mean(name, [*columns, *shown]) or "columns: " + ", ".join(shown)
    raise XrunError(f"no column '{name}' to sort by", hint=hint)


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _sort_key(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (1, 0.0, natural_key(str(value), ignore_case=True))
    return (0, number, ()) if not math.isnan(number) else (2, 0.0, ())


def _int(value):
    return None if value is None else int(float(value))


# --- output ----------------------------------------------------------------------------------------------

def cell(value, column: str = "") -> str:
    """A value as people read it: accuracies in percent, losses to 4 decimals, counts with separators."""
    if value is None:
        return ""
    if column == "run":
        return str(value)[:8]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if column in _PERCENT and isinstance(value, (int, float)):
        return f"{100 * value:.2f} %"
    if column == "seconds" and isinstance(value, (int, float)):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1e6 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, str) and _long_decimal(value):
        return format(float(value), ".4g")  # a drawn param (learning rate 0.000316227766017) as people read it
    return str(value)


def _long_decimal(text: str) -> bool:
    """A decimal of 7 or more significant digits: a value a sweep drew, not one a person wrote."""
    if not re.fullmatch(r"-?(\d*\.\d+|\d+\.?\d*e[-+]?\d+)(e[-+]?\d+)?", text):
        return False
    return len(text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")) >= 7


def headers(columns: list[str]) -> list[str]:
    """Column titles for people: a param key shortened to its shortest unambiguous tail (`batch_size` for
    `training.batch_size`; `layers.1.units` only where another layer's units are a column too)."""
    tails = [_tails(c) for c in columns]
    counts: dict[str, int] = {}
    for options in tails:
        for t in set(options):
            counts[t] = counts.get(t, 0) + 1
    return [next((t for t in options if counts[t] == 1 and (t == c or t not in columns)), c)
            for c, options in zip(columns, tails)]


def _tails(column: str) -> list[str]:
    """`model.layers.1.units` -> ['units', 'layers.1.units', 'model.layers.1.units'] (none starts at an index)."""
    parts = column.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1, -1, -1) if not parts[i].isdigit()]


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return out.getvalue()


def to_json(rows: list[dict]) -> str:
    # JSON has no NaN: a diverged run's losses become null rather than output other tools refuse.
    return json.dumps([{k: _json_value(v) for k, v in r.items()} for r in rows], indent=2) + "\n"


def _json_value(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def to_markdown(rows: list[dict]) -> str:
    """A GitHub table, numbers right-aligned, to paste into a README."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(headers(columns)) + " |",
             "|" + "|".join("---:" if c in _NUMERIC else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell(r[c], c).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# A terminal table keeps who the run is, what varied, how well it did and how it ended at full width; to fit, it
# leaves out other columns, first to last in this order (and says which), then abbreviates long values.
_DROPPED_FIRST = ["train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "seconds", "epochs", "run",
                  "best_val_acc", "dataset", "partial_runs", "params", "runs", "file"]
LONG_VALUE = 28  # characters of a name or a param value shown in a table that has to fit
_WRAPPED = {"description": 24}  # wraps onto more lines in what is left, at least this wide
_FRAME = 3       # a column's share of the borders and padding: "│ " + value + " "


def rich_table(rows: list[dict], title: str = "", width: int | None = None):
    """A rich Table; with `width` (the terminal's), columns are left out and long values abbreviated until the
    table fits, so the columns that matter never shrink to nothing; the caption says what was left out."""
    from rich.table import Table
    from rich.text import Text

    columns = list(rows[0]) if rows else LEAD_COLUMNS + RESULT_COLUMNS
    texts = [{c: cell(v, c) for c, v in r.items()} for r in rows]
    shown, dropped, limit = fit_columns(columns, texts, width)
    caption = f"left out to fit {width} columns: {', '.join(dropped)} (--format csv has them all)" if dropped else None
    out = Table(title=title or None, title_justify="left", caption=caption, caption_justify="left")
    for column, header in zip(shown, headers(shown)):
        natural = max([len(header), *(len(_abbreviated(t[column], limit)) for t in texts)])
        fitted = width is not None and column not in _WRAPPED
        out.add_column(header, justify="right" if column in _NUMERIC else "left", overflow="fold",
                       no_wrap=column in _NUMERIC or column == "run" or fitted, min_width=natural if fitted else None)
    for t in texts:
        out.add_row(*(Text(t[c] if c in _WRAPPED else _abbreviated(t[c], limit)) for c in shown))  # not markup
    return out


def fit_columns(columns: list[str], texts: list[dict], width: int | None) -> tuple[list[str], list[str], int | None]:
    """(columns shown, columns left out, longest value shown) for a table at most `width` characters wide."""
    if width is None or _table_width(columns, texts, None) <= width:
        return columns, [], None
    for limit in (LONG_VALUE, LONG_VALUE // 2):  # abbreviate long values first, then leave columns out
        shown, dropped = list(columns), []
        for column in [None, *_DROPPED_FIRST]:
            if column in shown:
                shown.remove(column)
                dropped.append(column)
            if _table_width(shown, texts, limit) <= width:
                return shown, dropped, limit
    return shown, dropped, LONG_VALUE // 2  # still too wide: rich folds what is left


def _table_width(columns: list[str], texts: list[dict], limit: int | None) -> int:
    heads = headers(columns)
    natural = [max([len(h), *(len(_abbreviated(t[c], limit)) for t in texts)]) for c, h in zip(columns, heads)]
    return 1 + sum(_FRAME + min(n, _WRAPPED.get(c, n)) for c, n in zip(columns, natural))


def _abbreviated(text: str, limit: int | None) -> str:
    """Its start and its end, which is where values that varied tend to differ (`..._fn_0`, `..._fn_1`)."""
    if limit is None or len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


# --- curves and configs ----------------------------------------------------------------------------------

def curves(runs: list[RunRecord], uri: str | None) -> list[tuple[str, dict]]:
    """(label, per-epoch history) for each run, as runner.plots.overlay_curves takes them."""
    return [(f"{r.name} ({r.run_id[:8]})", query.histories(r.run_id, HISTORY_KEYS, uri)) for r in runs]


def config_diff(run_ids: list[str], uri: str | None) -> str:
    """A unified diff of two runs' resolved YAML."""
    if len(run_ids) != 2:
        raise XrunError(f"--config compares exactly two runs, got {len(run_ids)}",
                        hint="xrun compare RUN_A RUN_B --config")
    a, b = query.find_runs(uri, run_ids=resolve_ids(run_ids, uri))
    text_a, text_b = (query.artifact_text(r.run_id, names.RESOLVED_CONFIG, uri) for r in (a, b))
    return diff_text(text_a, text_b, f"{a.run_id[:8]} {a.name}", f"{b.run_id[:8]} {b.name}")


def diff_text(text_a: str, text_b: str, name_a: str, name_b: str) -> str:
    diff = difflib.unified_diff(text_a.splitlines(keepends=True), text_b.splitlines(keepends=True),
                                fromfile=name_a, tofile=name_b)
    return "".join(diff) or "the resolved configs are identical\n"
