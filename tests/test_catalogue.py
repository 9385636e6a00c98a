"""`xrun list`: every experiment of a folder with its size and, once it has run, its runs and best test accuracy."""

import csv
import io
import json

import pytest
from helpers import dense_yaml, store_uri, xrun

from runner.records import query

DENSE = dense_yaml("alpha", "A tiny dense net. It is the one that runs.", experiment="list-test", seed=3)
CONV = """\
name: beta
description: A tiny conv net that never runs here.
data: {dataset: fashion_mnist}
model:
  layers:
    - {type: Conv2D, filters: 2, kernel_size: 3}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: SGD}
loss: SparseCategoricalCrossentropy
training: {epochs: 1}
tracking: {experiment: list-test}
"""
BROKEN = DENSE.replace("name: alpha", "name: broken").replace("type: Flatten", "type: Flaten")
TOO_BIG = CONV.replace("name: beta", "name: gamma").replace("kernel_size: 3", "kernel_size: 29")



@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """A folder of four files (model2 has run twice, model10 never, one invalid, one that does not build)."""
    root = tmp_path_factory.mktemp("catalogue")
    folder = root / "exps"
    (folder / "base").mkdir(parents=True)
    for name, text in {"model2.yaml": DENSE, "model10.yaml": CONV, "broken.yaml": BROKEN,
                       "toobig.yml": TOO_BIG, "base/shared.yaml": "data: {dataset: mnist}\n"}.items():
        (folder / name).write_text(text)
    uri = store_uri(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        for extra in ([], ["--set", "training.batch_size=32"]):
            assert xrun("run", folder / "model2.yaml", "-q", *extra)[0] == 0
        # a run of the same name in another MLflow experiment is another experiment's
        assert xrun("run", folder / "model2.yaml", "-q", "--set", "tracking.experiment=elsewhere")[0] == 0
        code, out, err = xrun("list", "exps", "--format", "json")
        yield {"uri": uri, "code": code, "rows": json.loads(out) if code == 0 else err,
               "runs": query.find_runs(uri, experiments=["list-test"])}


def test_every_file_in_natural_order(listed):
    assert listed["code"] == 0, listed["rows"]
    assert [r["file"] for r in listed["rows"]] == ["broken.yaml", "model2.yaml", "model10.yaml", "toobig.yml"]


def test_a_run_experiment_shows_its_runs_and_best_test_accuracy(listed):
    row = next(r for r in listed["rows"] if r["file"] == "model2.yaml")
    accuracies = [r.metrics["test_accuracy"] for r in listed["runs"]]
    assert len(accuracies) == 2
    assert row == {"file": "model2.yaml", "name": "alpha", "dataset": "mnist", "params": 784 * 8 + 8 + 8 * 10 + 10,
                   "runs": 2, "best_test_acc": max(accuracies), "description": "A tiny dense net."}


def test_an_experiment_not_yet_run(listed):
    row = next(r for r in listed["rows"] if r["file"] == "model10.yaml")
    assert row == {"file": "model10.yaml", "name": "beta", "dataset": "fashion_mnist",
                   "params": (3 * 3 * 2 + 2) + (26 * 26 * 2 * 10 + 10), "runs": 0, "best_test_acc": None,
                   "description": "A tiny conv net that never runs here."}


def test_rows_that_cannot_be_built_say_why(listed):
    broken = next(r for r in listed["rows"] if r["file"] == "broken.yaml")
    assert broken["params"] is None and broken["runs"] == 0 and broken["name"] == ""
    assert broken["description"] == "invalid: 6:14: model.layers[0].type: unknown layer type 'Flaten'; " \
                                    "did you mean 'Flatten'?"
    too_big = next(r for r in listed["rows"] if r["file"] == "toobig.yml")
    assert too_big["name"] == "gamma" and too_big["params"] is None
    assert too_big["description"].startswith("does not build: ") and "29x29 kernel does not fit" in \
        too_big["description"]


def test_table_csv_and_markdown(listed):
    code, out, _ = xrun("list", "exps", "--tracking-uri", listed["uri"])
    assert code == 0
    best = max(r.metrics["test_accuracy"] for r in listed["runs"])
    for text in ["model2.yaml", "model10.yaml", "6,370", "13,550", f"{100 * best:.2f} %", "invalid: 6:14"]:
        assert text in out
    _, out, _ = xrun("list", "exps", "--tracking-uri", listed["uri"], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["file", "name", "dataset", "params", "runs", "best_test_acc", "description"]
    assert float(rows[1]["best_test_acc"]) == best
    _, out, _ = xrun("list", "exps", "--tracking-uri", listed["uri"], "--format", "markdown")
    assert out.splitlines()[1] == "|---|---|---|---:|---:|---:|---|"


def test_folder_errors(tmp_path):
    code, _, err = xrun("list", tmp_path / "missing")
    assert code == 2 and err.startswith("no folder ") and err.count("\n") == 1
    code, _, err = xrun("list", tmp_path)
    assert code == 2 and err.startswith("no .yaml files in ") and err.count("\n") == 1
