"""`xrun compare` against runs made here: columns, values, formats, sorting, filters, curves, config diffs, errors."""

import csv
import io
import json
import math

import pytest
from helpers import dense_yaml, store_uri, xrun

from runner.records import plots, query
from runner.records import tables as cmp

TINY = dense_yaml("tiny", "A tiny dense net for the compare tests. It trains in seconds.", experiment="compare-a",
                  seed=1)
OTHER = TINY.replace("name: tiny", "name: other").replace("units: 8", "units: 16") \
    .replace("compare-a", "compare-b").replace("A tiny dense net", "A wider dense net")

RESULTS = ["params", "epochs", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "test_loss",
           "test_acc", "seconds", "status"]



@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs: tiny at batch 64, then at batch 128 (experiment compare-a), then `other` (compare-b)."""
    folder = tmp_path_factory.mktemp("compare")
    uri = store_uri(folder)
    (folder / "tiny.yaml").write_text(TINY)
    (folder / "other.yaml").write_text(OTHER)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(folder)
        for args in (["tiny.yaml"], ["tiny.yaml", "--set", "training.batch_size=128"], ["other.yaml"]):
            code, out, err = xrun("run", *args, "-q")
            assert code == 0, err
        a = query.find_runs(uri, experiments=["compare-a"])
        b = query.find_runs(uri, experiments=["compare-b"])
        yield {"uri": uri, "folder": folder, "b128": a[0], "b64": a[1], "other": b[0]}


def records(store, *names):
    return [store[n] for n in names]


def test_csv_has_name_first_then_what_differs_then_results(store):
    code, out, err = xrun("compare", "-e", "compare-a", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    # Only batch_size differs (the seed is fixed), so it is the one param column; descriptions are equal: none.
    assert list(rows[0]) == ["name", "run", "training.batch_size", *RESULTS]
    assert [r["run"] for r in rows] == [store["b128"].run_id, store["b64"].run_id]  # newest first
    for row, run in zip(rows, records(store, "b128", "b64")):
        m = run.metrics
        assert row["name"] == "tiny"
        assert row["training.batch_size"] == run.params["training.batch_size"]
        assert int(row["params"]) == 6370 == int(run.params["model.total_params"])
        assert int(row["epochs"]) == 1
        assert float(row["train_loss"]) == m["loss"] and float(row["train_acc"]) == m["accuracy"]
        assert float(row["val_loss"]) == m["val_loss"] and float(row["val_acc"]) == m["val_accuracy"]
        assert float(row["best_val_acc"]) == m["best_val_accuracy"]
        assert float(row["test_loss"]) == m["test_loss"] and float(row["test_acc"]) == m["test_accuracy"]
        assert float(row["seconds"]) == pytest.approx(run.seconds)
        assert row["status"] == "FINISHED"
    assert [r["training.batch_size"] for r in rows] == ["128", "64"]


def test_json_holds_the_same_values_typed(store):
    code, out, _ = xrun("compare", "-e", "compare-a", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert list(rows[0]) == ["name", "run", "training.batch_size", *RESULTS]
    run = store["b64"]
    row = rows[1]
    assert row["run"] == run.run_id and row["params"] == 6370 and row["epochs"] == 1
    assert row["test_acc"] == run.metrics["test_accuracy"] and row["test_loss"] == run.metrics["test_loss"]
    assert row["training.batch_size"] == "64"


def test_markdown_pastes_into_a_readme(store):
    code, out, _ = xrun("compare", "-e", "compare-a", "--format", "markdown", "--sort", "training.batch_size")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("| name | run | batch_size | params | epochs | train_loss | train_acc | val_loss | val_acc "
                        "| best_val_acc | test_loss | test_acc | seconds | status |")
    assert lines[1] == "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    assert len(lines) == 4
    run = store["b64"]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:5] == ["tiny", run.run_id[:8], "64", "6,370", "1"]
    assert cells[11] == f"{100 * run.metrics['test_accuracy']:.2f} %"
    assert cells[10] == f"{run.metrics['test_loss']:.4f}"
    assert cells[-1] == "FINISHED"


def test_table_shows_every_run(store):
    code, out, _ = xrun("compare", "-e", "compare-a")
    assert code == 0
    for column in ["name", "run", "batch_size", *RESULTS]:
        assert column in out
    assert store["b64"].run_id[:8] in out and store["b128"].run_id[:8] in out
    assert store["other"].run_id[:8] not in out


def test_all_params_shows_the_params_that_are_the_same(store):
    _, out, _ = xrun("compare", "-e", "compare-a", "--format", "json", "--all-params")
    row = json.loads(out)[0]
    assert row["optimizer.type"] == "Adam" and row["training.epochs"] == "1" and row["data.limit"] == "128"
    assert row["description"].startswith("A tiny dense net")
    assert "name" in row and "runtime.overrides" not in row


def test_description_shows_when_it_differs_and_architectures_are_summed_up(store):
    code, out, _ = xrun("compare", store["b64"].run_id, store["other"].run_id, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    # The layer widths differ, but nobody set them: the params count and the description tell the models apart.
    assert list(rows[0]) == ["name", "run", "tracking.experiment", *RESULTS, "description"]
    assert [r["params"] for r in rows] == [6370, 12730]
    assert rows[1]["description"].startswith("A wider dense net")


@pytest.mark.parametrize("args, expected", [
    (["--sort", "training.batch_size"], ["b64", "b128"]),
    (["--sort", "training.batch_size", "--desc"], ["b128", "b64"]),
    (["--sort", "batch_size", "--desc"], ["b128", "b64"]),  # the short header the table shows works too
    (["--sort", "name"], ["b128", "b64"]),  # equal names keep their order (newest first): a stable sort
    (["--sort", "name", "--desc"], ["b128", "b64"]),
])
def test_sort(store, args, expected):
    _, out, _ = xrun("compare", "-e", "compare-a", "--format", "json", *args)
    assert [r["run"] for r in json.loads(out)] == [store[n].run_id for n in expected]


def test_sort_by_accuracy_orders_numbers(store):
    _, out, _ = xrun("compare", "-e", "compare-a", "-e", "compare-b", "--format", "json", "--sort", "test_acc")
    values = [r["test_acc"] for r in json.loads(out)]
    assert values == sorted(values) and len(values) == 3


def test_latest_experiment_where_and_ids_pick_runs(store):
    def picked(*args):
        code, out, err = xrun("compare", "--format", "json", *args)
        assert code == 0, err
        return [r["run"] for r in json.loads(out)]

    b64, b128, other = (store[n].run_id for n in ("b64", "b128", "other"))
    assert picked("-e", "compare-a", "--latest", "1") == [b128]
    assert picked("--latest", "2") == [other, b128]
    assert picked("-e", "compare-b") == [other]
    assert picked("-e", "compare-a", "-e", "compare-b") == [other, b128, b64]
    assert picked("--where", "params.training.batch_size = '128'") == [b128]
    assert picked(b64, other) == [b64, other]
    assert picked(b64[:8], b128[:8]) == [b64, b128]  # the ids the tables show


def test_plot_writes_one_curve_per_run_in_each_panel(store, tmp_path):
    path = tmp_path / "curves.png"
    code, _, err = xrun("compare", "-e", "compare-a", "-e", "compare-b", "--plot", path, "--format", "csv")
    assert code == 0 and f"wrote {path}" in err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = records(store, "b64", "b128", "other")
    figure = plots.overlay_curves(cmp.curves(runs, store["uri"]))
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["train loss", "val loss", "train accuracy", "val accuracy"]
    for ax in panels:
        assert len(ax.lines) == len(runs)
        assert sorted(line.get_label() for line in ax.lines) == sorted(f"{r.name} ({r.run_id[:8]})" for r in runs)


def test_config_diff_shows_the_changed_line(store):
    code, out, _ = xrun("compare", store["b64"].run_id[:8], store["b128"].run_id, "--config")
    assert code == 0
    lines = out.splitlines()
    assert "-  batch_size: 64" in lines and "+  batch_size: 128" in lines
    assert lines[0] == f"--- {store['b64'].run_id[:8]} tiny"
    assert sum(1 for line in lines if line[:1] in "+-" and line[:3] not in ("---", "+++")) == 2


def test_config_diff_of_a_run_with_itself(store):
    _, out, _ = xrun("compare", store["b64"].run_id, store["b64"].run_id, "--config")
    assert out == "the resolved configs are identical\n"


@pytest.mark.parametrize("args, message", [
    (["-e", "nope"], "no MLflow experiment named 'nope'; known: "),
    (["0123456789abcdef0123456789abcdef"], "no MLflow run with id '0123456789abcdef0123456789abcdef'"),
    (["zzzz1234"], "no MLflow run with id 'zzzz1234'"),
    (["--where", "params.training.batch_size = '999'"], "no runs to compare; no run matches --where"),
    (["--where", "params.training.batch_size ="], "bad run filter"),
    (["--config", "RUN_A"], "--config compares exactly two runs, got 1"),
    (["--config", "a", "b", "c"], "--config compares exactly two runs, got 3"),
    (["-e", "compare-a", "--sort", "tst_acc"], "no column 'tst_acc' to sort by; did you mean 'test_acc'?"),
    (["-e", "compare-a", "RUN_A"], "give RUN_IDS or --experiment/--where, not both"),
])
def test_errors_are_one_line_and_exit_2(store, args, message):
    code, out, err = xrun("compare", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(message), err


# --- the table's parts, without runs ---------------------------------------------------------------------

def test_sort_rows_puts_missing_values_last_and_text_naturally():
    rows = [{"name": n, "acc": a} for n, a in [("model10", 0.5), ("model2", None), ("model1", math.nan),
                                               ("model3", 0.9)]]
    assert [r["name"] for r in cmp.sort_rows(rows, "acc")] == ["model10", "model3", "model2", "model1"]
    assert [r["name"] for r in cmp.sort_rows(rows, "acc", True)] == ["model3", "model10", "model2", "model1"]
    assert [r["name"] for r in cmp.sort_rows(rows, "name")] == ["model1", "model2", "model3", "model10"]


def test_headers_are_the_shortest_unambiguous_tails():
    columns = ["name", "run", "training.batch_size", "model.layers.0.units", "model.layers.2.units",
               "training.epochs", "epochs", "optimizer.learning_rate"]
    assert cmp.headers(columns) == ["name", "run", "batch_size", "layers.0.units", "layers.2.units",
                                    "training.epochs", "epochs", "learning_rate"]


def test_cells_and_json_for_people_and_machines():
    assert cmp.cell(0.99361, "test_acc") == "99.36 %"
    assert cmp.cell(0.024941, "test_loss") == "0.0249"
    assert cmp.cell(1.4e22, "train_loss") == "1.4e+22"
    assert cmp.cell(math.nan, "test_loss") == "nan"
    assert cmp.cell(37987722, "params") == "37,987,722"
    assert cmp.cell(12.345, "seconds") == "12.3"
    assert cmp.cell("0123456789abcdef", "run") == "01234567"
    assert json.loads(cmp.to_json([{"test_loss": math.nan, "x": math.inf}])) == [{"test_loss": None, "x": None}]
    assert cmp.to_markdown([{"name": "a|b", "test_acc": 0.5}]) == "| name | test_acc |\n|---|---:|\n| a\\|b | 50.00 % |\n"


def test_a_changed_line_in_a_unified_diff():
    diff = cmp.diff_text("training:\n  batch_size: 64\n", "training:\n  batch_size: 128\n", "a", "b")
    assert "-  batch_size: 64\n" in diff and "+  batch_size: 128\n" in diff
