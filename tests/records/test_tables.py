"""`xrun compare` against runs made here: columns, values, formats, sorting, filters, curves, config diffs, errors."""

import csv
import io
import json
import math

import pytest
from helpers import dense_yaml, store_uri, xrun

from runner.errors import XrunError
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


def test_a_set_run_is_named_by_what_it_changed_and_the_table_shows_that_as_a_column(store):
    assert (store["b128"].name, store["b64"].name) == ("tiny [batch_size=128]", "tiny")


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


# --- runs written through the MLflow client as xrun writes them: no training -----------------------------

T0 = 1_700_000_000_000  # start times one minute apart, so "newest first" is fixed


def _record(c, experiment: str, name: str, params: dict, *, minute: int, accuracy: float | None = None,
            tags: dict | None = None, status: str = "FINISHED") -> str:
    """A run as xrun records one: params flattened to text, the Keras metrics per epoch, the summary at the end."""
    from mlflow.entities import Metric, Param

    found = c.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else c.create_experiment(experiment)
    start = T0 + minute * 60_000
    run_id = c.create_run(experiment_id, start_time=start, run_name=name,
                          tags={"mlflow.note.content": "Recorded by the test.", **(tags or {})}).info.run_id
    metrics = []
    if accuracy is not None:
        for step, (loss, acc) in enumerate([(0.9, accuracy - 0.1), (0.5, accuracy - 0.05)]):
            metrics += [Metric("loss", loss, start + step, step), Metric("accuracy", acc, start + step, step),
                        Metric("val_loss", loss + 0.1, start + step, step),
                        Metric("val_accuracy", acc + 0.01, start + step, step)]
        metrics += [Metric(k, v, start + 9, 0) for k, v in [("epochs_run", 2.0), ("best_val_accuracy", accuracy - 0.04),
                                                             ("test_loss", 0.25), ("test_accuracy", accuracy)]]
    c.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    if status != "RUNNING":
        c.set_terminated(run_id, status, end_time=start + 12_300)
    return run_id


LONG_NAME = "a_rather_long_experiment_name"
RATES = ["0.001", "0.0003", "0.0001"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Experiment `fit`: a sweep's three variants (the learning rate and a long activation name varied), a claim run
    in `xrun-sweep-claims` (the newest run of all), a run left RUNNING without a heartbeat, and a deleted run."""
    from helpers import client

    uri = store_uri(tmp_path_factory.mktemp("recorded"))
    c = client(uri)
    ids = {}
    for i, rate in enumerate(RATES):
        variant = f"optimizer.learning_rate={rate} model.layers.0.activation=very_long_activation_function_{i}"
        ids[rate] = _record(c, "fit", f"{LONG_NAME} [{variant}]", {
            "optimizer.learning_rate": rate, "model.layers.0.activation": f"very_long_activation_function_{i}",
            "training.epochs": 2, "model.total_params": 6370, "runtime.overrides": variant}, minute=i,
            accuracy=0.9 + i / 100, tags={"xrun.variant": variant})
    ids["running"] = _record(c, "fit", "left_running", {"training.epochs": 2}, minute=5, status="RUNNING")
    ids["deleted"] = _record(c, "fit", "deleted", {"training.epochs": 2}, minute=6, accuracy=0.5)
    c.delete_run(ids["deleted"])
    ids["claim"] = _record(c, "xrun-sweep-claims", "claim 0", {}, minute=9, tags={"xrun.claim_of": ids[RATES[0]]})
    return {"uri": uri, "ids": ids}


def test_a_local_store_is_read_without_mlflow_as_mlflow_reads_it(recorded):
    uri = recorded["uri"]
    fast = query.find_runs(uri)
    assert fast == query._find_in_mlflow(uri, None, None, None, "", None, None)
    assert [r.name.split(" [")[0] for r in fast] == ["claim 0", "left_running", LONG_NAME, LONG_NAME, LONG_NAME]
    assert [r.run_id for r in query.find_runs(uri, experiments=["fit"], status="FINISHED", latest=2)] == \
        [recorded["ids"][RATES[2]], recorded["ids"][RATES[1]]]
    deleted = recorded["ids"]["deleted"]
    assert query.find_runs(uri, run_ids=[deleted]) == query._find_in_mlflow(uri, None, [deleted], None, "", None, None)
    run = query.find_runs(uri, run_ids=[recorded["ids"][RATES[1]]])[0]
    assert run.params["optimizer.learning_rate"] == "0.0003" and run.metrics["test_accuracy"] == 0.91
    assert run.metrics["val_accuracy"] == pytest.approx(0.87) and run.seconds == 12.3
    assert query.metric_history(run.run_id, "loss", uri) == [0.9, 0.5]


def test_run_ids_are_resolved_quickly_and_refused_in_one_line(recorded):
    uri, ids = recorded["uri"], recorded["ids"]
    rate = ids[RATES[0]]
    assert query.resolve_id(rate[:8], uri) == rate and query.resolve_id(rate.upper(), uri) == rate
    with pytest.raises(XrunError) as bad:
        query.resolve_id("nonsense", uri)
    assert bad.value.line() == ("no MLflow run with id 'nonsense'; run ids are hexadecimal (8 characters will do); "
                                "xrun compare --latest 10 lists recent runs")
    with pytest.raises(XrunError) as deleted:
        query.resolve_id(ids["deleted"], uri)
    assert deleted.value.line() == f"no MLflow run with id '{ids['deleted']}'; xrun compare --latest 10 lists recent runs"


def test_a_prefix_of_several_runs_is_ambiguous(tmp_path):
    from helpers import client

    uri = store_uri(tmp_path)
    c = client(uri)
    ids: list[str] = []
    while len({i[0] for i in ids}) == len(ids):  # at most 17 runs before two share a first digit
        ids.append(_record(c, "many", "run", {}, minute=len(ids)))
    shared = ids[-1][0]
    with pytest.raises(XrunError) as bad:
        query.resolve_id(shared, uri)
    assert bad.value.line() == f"run id '{shared}' is ambiguous (2 runs start with it); give more of the id"
    assert query.resolve_ids([ids[-1], ids[0][:8]], uri) == [ids[-1], ids[0]]


def test_internal_runs_never_appear(recorded, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", recorded["uri"])
    code, out, err = xrun("compare", "--latest", "2", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["run"] for r in rows] == [recorded["ids"]["running"], recorded["ids"][RATES[2]]]
    assert rows[0]["status"] == "RUNNING"  # no heartbeat: not a run xrun can call dead
    code, out, err = xrun("compare", "-e", "xrun-sweep-claims")
    assert code == 2 and err == "experiment 'xrun-sweep-claims' holds xrun's own bookkeeping, not runs to compare; " \
                                "give the experiment your runs are in (tracking.experiment in the YAML)\n"


def _rendered(rows, width: int) -> list[str]:
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO())
    console.print(cmp.rich_table(rows, width=width))
    return console.export_text().splitlines()


def _columns(line: str) -> dict[str, int]:
    """Header -> the column's width in characters, padding included, from a rendered header line."""
    return {cell.strip(): len(cell) for cell in line.strip("┃").split("┃")}


@pytest.mark.parametrize("width, columns, first, left_out", [
    (100, {"name": 16, "activation": 16, "learning_rate": 15, "params": 8, "best_val_acc": 14, "test_acc": 10,
           "status": 10}, "│ a_rath…nt_name │ very_l…ction_2 │ 0.0001        │  6,370 │      88.00 % │  92.00 % │ FINISHED │",
     "left out to fit 100 columns: train_loss, val_loss, test_loss, train_acc, val_acc, seconds,"),
    (120, {"name": 30, "activation": 30, "learning_rate": 15, "params": 8, "test_acc": 10, "status": 10},
     "│ a_rather_long…xperiment_name │ very_long_act…ion_function_2 │ 0.0001        │  6,370 │  92.00 % │ FINISHED │",
     "left out to fit 120 columns: train_loss, val_loss, test_loss, train_acc, val_acc, seconds, epochs, run,"),
])
def test_compare_fits_the_terminal_keeping_what_matters(recorded, width, columns, first, left_out):
    rows = cmp.table(cmp.select([], ["fit"], None, "", recorded["uri"]), uri=recorded["uri"])
    lines = _rendered(rows, width)
    assert _columns(lines[1]) == columns
    assert len(lines[0]) <= width and lines[4] == first
    assert lines[3].startswith("│ left_running ") and lines[3].rstrip().endswith("│ RUNNING  │")
    assert lines[8].rstrip() == left_out


def test_a_table_that_fits_is_shown_whole_and_long_values_keep_their_ends():
    rows = [{"name": "a", "run": "0123456789abcdef", "test_acc": 0.5, "status": "FINISHED"}]
    lines = _rendered(rows, 120)
    assert _columns(lines[1]) == {"name": 6, "run": 10, "test_acc": 10, "status": 10}
    assert lines[3] == "│ a    │ 01234567 │  50.00 % │ FINISHED │" and len(lines) == 5  # no caption
    assert cmp._abbreviated("very_long_activation_function_2", 14) == "very_l…ction_2"
    texts = [{"name": "x" * 80, "run": "r", "test_acc": "1"}]
    assert cmp.fit_columns(["name", "test_acc"], texts, 200) == (["name", "test_acc"], [], None)
    assert cmp.fit_columns(["name", "run", "test_acc"], texts, 45) == (["name", "test_acc"], ["run"], 28)
    assert cmp.fit_columns(["name", "run", "test_acc"], texts, 40) == (["name", "run", "test_acc"], [], 14)
    assert cmp.fit_columns(["name", "run", "test_acc"], texts, 30) == (["name", "test_acc"], ["run"], 14)


def test_compare_and_refusing_a_bad_id_load_neither_tensorflow_nor_mlflow(recorded):
    from helpers import heavy_modules_after

    env = {"MLFLOW_TRACKING_URI": recorded["uri"]}
    out, loaded, err = heavy_modules_after("compare", "-e", "fit", "--format", "csv", env=env)
    assert loaded == "loaded [] 0", err
    assert [r["run"] for r in csv.DictReader(io.StringIO(out + "\n"))][1:] == \
        [recorded["ids"][r] for r in reversed(RATES)]
    out, loaded, err = heavy_modules_after("compare", "nonsense", env=env)
    assert (out, loaded) == ("", "loaded [] 2")
    assert err == ("no MLflow run with id 'nonsense'; run ids are hexadecimal (8 characters will do); "
                   "xrun compare --latest 10 lists recent runs\n")
