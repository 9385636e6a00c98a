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
COPY = DENSE.replace("units: 8", "units: 32")  # the same `name: alpha`, never run



@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """A folder of five files (model2 has run twice, model10 and its copy never, one invalid, one that does not build)."""
    root = tmp_path_factory.mktemp("catalogue")
    folder = root / "exps"
    (folder / "base").mkdir(parents=True)
    for name, text in {"model2.yaml": DENSE, "model10.yaml": CONV, "broken.yaml": BROKEN,
                       "toobig.yml": TOO_BIG, "copy.yaml": COPY, "base/shared.yaml": "data: {dataset: mnist}\n"}.items():
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
    assert [r["file"] for r in listed["rows"]] == ["broken.yaml", "copy.yaml", "model2.yaml", "model10.yaml",
                                                 "toobig.yml"]


def test_a_run_experiment_shows_its_runs_and_best_test_accuracy(listed):
    row = next(r for r in listed["rows"] if r["file"] == "model2.yaml")
    batch_32, as_written = listed["runs"]  # newest first
    assert batch_32.params["runtime.overrides"] == "training.batch_size=32" and as_written.params["runtime.overrides"] == ""
    # the --set run is another experiment than the file's: counted, not ranked
    assert row == {"file": "model2.yaml", "name": "alpha", "dataset": "mnist", "params": 784 * 8 + 8 + 8 * 10 + 10,
                   "runs": 1, "best_test_acc": as_written.metrics["test_accuracy"], "partial_runs": 1,
                   "description": "A tiny dense net."}


def test_an_experiment_not_yet_run(listed):
    row = next(r for r in listed["rows"] if r["file"] == "model10.yaml")
    assert row == {"file": "model10.yaml", "name": "beta", "dataset": "fashion_mnist",
                   "params": (3 * 3 * 2 + 2) + (26 * 26 * 2 * 10 + 10), "runs": 0, "best_test_acc": None,
                   "partial_runs": 0, "description": "A tiny conv net that never runs here."}


def test_a_copy_of_the_same_name_that_never_ran_has_no_runs(listed):
    row = next(r for r in listed["rows"] if r["file"] == "copy.yaml")
    assert (row["name"], row["runs"], row["best_test_acc"], row["partial_runs"]) == ("alpha", 0, None, 0)


def test_rows_that_cannot_be_built_say_why(listed):
    broken = next(r for r in listed["rows"] if r["file"] == "broken.yaml")
    assert broken["params"] is None and broken["runs"] == 0 and broken["name"] == ""
    assert broken["description"] == "invalid: 6:14: model.layers[0].type: unknown layer type 'Flaten'; " \
                                    "did you mean 'Flatten'?"
    too_big = next(r for r in listed["rows"] if r["file"] == "toobig.yml")
    assert too_big["name"] == "gamma" and too_big["params"] is None
    assert too_big["description"] == "does not build: 6:14: model.layers[0]: Conv2D's 29x29 kernel does not fit its " \
                                     "28x28 input; use padding: same, a smaller window, or down-sample less before " \
                                     "this layer"


def test_table_csv_and_markdown(listed):
    code, out, _ = xrun("list", "exps", "--tracking-uri", listed["uri"])
    assert code == 0
    best = listed["runs"][1].metrics["test_accuracy"]
    for text in ["model2.yaml", "model10.yaml", "6,370", "13,550", f"{100 * best:.2f} %", "invalid: 6:14"]:
        assert text in out
    _, out, _ = xrun("list", "exps", "--tracking-uri", listed["uri"], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["file", "name", "dataset", "params", "runs", "best_test_acc", "partial_runs",
                             "description"]
    assert float(rows[2]["best_test_acc"]) == best
    _, out, _ = xrun("list", "exps", "--tracking-uri", listed["uri"], "--format", "markdown")
    assert out.splitlines()[1] == "|---|---|---|---:|---:|---:|---:|---|"


def test_folder_errors(tmp_path):
    code, _, err = xrun("list", tmp_path / "missing")
    assert code == 2 and err.startswith("no folder ") and err.count("\n") == 1
    code, _, err = xrun("list", tmp_path)
    assert code == 2 and err.startswith("no .yaml files in ") and err.count("\n") == 1


# --- how runs are counted, from records made by hand -----------------------------------------------------

def _run(params: dict, accuracy: float, tags: dict | None = None, name: str = "alpha") -> query.RunRecord:
    return query.RunRecord("0" * 32, name, "list-test", "FINISHED", "", params, {"test_accuracy": accuracy},
                           tags or {}, 0, 1)


def test_a_run_is_credited_to_the_file_it_came_from_by_its_tag(tmp_path, monkeypatch):
    from runner.records import catalogue

    (tmp_path / "exps").mkdir()
    path = tmp_path / "exps" / "alpha.yaml"
    spec = type("Spec", (), {"name": "alpha"})
    monkeypatch.chdir(tmp_path)
    came_from = [catalogue._ran_from(_run({}, 0.5, {"experiment.file": tag}), path, spec)
                 for tag in [str(path), "exps/alpha.yaml", "alpha.yaml", "exps/copy.yaml", str(tmp_path / "alpha.yaml")]]
    assert came_from == [True, True, True, False, False]
    # without the tag (an older store): by the run's name
    assert [catalogue._ran_from(_run({}, 0.5, name=n), path, spec) for n in ["alpha", "alpha evaluation"]] == \
           [True, False]


def test_only_runs_of_the_file_as_written_are_ranked(tmp_path):
    from runner.language.spec import load_spec
    from runner.records import catalogue

    (tmp_path / "alpha.yaml").write_text(DENSE)
    spec = load_spec(tmp_path / "alpha.yaml")
    own = {"training.epochs": "1", "data.limit": "128", "runtime.overrides": ""}
    runs = [_run(own, 0.5),
            _run(own | {"runtime.overrides": "tracking.tags.note=again"}, 0.6),  # where it is recorded: the same
            _run(own | {"training.epochs": "3", "runtime.overrides": "training.epochs=3"}, 0.9),
            _run(own | {"data.limit": "64", "runtime.overrides": "data.limit=64"}, 0.8),
            _run(own | {"runtime.overrides": "optimizer.learning_rate=0.01"}, 0.7),
            _run(own | {"data.limit": "null"}, 0.95)]  # recorded from an older file without the limit
    assert catalogue._results(spec, runs) == {"runs": 2, "best_test_acc": 0.6, "partial_runs": 4}
    assert catalogue._results(spec, []) == {"runs": 0, "best_test_acc": None, "partial_runs": 0}


# --- fast: no TensorFlow, no MLflow ----------------------------------------------------------------------

def test_list_sweep_dry_run_and_a_bad_resume_id_load_no_tensorflow(listed, repo, tmp_path):
    from helpers import heavy_modules_after

    env = {"MLFLOW_TRACKING_URI": listed["uri"]}
    out, loaded, err = heavy_modules_after("list", repo / "experiments", "--format", "csv", env=env)
    assert loaded == "loaded [] 0", err
    rows = list(csv.DictReader(io.StringIO(out + "\n")))
    assert len(rows) == len(list((repo / "experiments").glob("*.yaml")))
    assert next(r for r in rows if r["file"] == "model10.yaml")["params"] == "37987722"
    out, loaded, err = heavy_modules_after("sweep", repo / "experiments" / "seed001_cnn5.yaml", "--dry-run",
                                           "--grid", "training.batch_size=32,64", env=env)
    assert loaded == "loaded [] 0" and out == "  1  training.batch_size=32\n  2  training.batch_size=64"
    assert err == "2 variants, checked; nothing trained (dry run)\n"
    (tmp_path / "alpha.yaml").write_text(DENSE)
    out, loaded, err = heavy_modules_after(tmp_path / "alpha.yaml", "--resume", "nonsense", env=env)
    assert (out, loaded) == ("", "loaded [] 2")  # refused before TensorFlow or MLflow loads
    assert err == ("no MLflow run with id 'nonsense'; run ids are hexadecimal (8 characters will do); "
                   "xrun compare --latest 10 lists recent runs\n")


# --- the parameter count without TensorFlow agrees with Keras --------------------------------------------

EVERY_KIND = """\
name: every_kind
data: {dataset: mnist}
model:
  layers:
    - {type: ZeroPadding2D, padding: [2, 1]}
    - {type: Conv2D, filters: 4, kernel_size: [3, 2], strides: 2, padding: same}
    - {type: SeparableConv2D, filters: 6, kernel_size: 3, depth_multiplier: 2}
    - {type: DepthwiseConv2D, kernel_size: 2, depth_multiplier: 3, use_bias: false}
    - {type: Conv2DTranspose, filters: 4, kernel_size: 3, strides: 2}
    - {type: Conv2D, filters: 8, kernel_size: 3, dilation_rate: 2, groups: 2}
    - {type: BatchNormalization, center: false}
    - {type: LayerNormalization}
    - {type: PReLU, shared_axes: [1, 2]}
    - {type: AveragePooling2D, pool_size: 3, strides: 1, padding: same}
    - {type: MaxPooling2D, pool_size: [2, 3]}
    - {type: SpatialDropout2D, rate: 0.1}
    - {type: GaussianNoise, stddev: 0.1}
    - {type: ELU}
    - {type: ReLU, name: trunk}
    - {type: Conv2D, name: a, filters: 3, kernel_size: 1}
    - {type: Conv2D, name: b, inputs: trunk, filters: 3, kernel_size: 1, use_bias: false}
    - {type: Add, name: added, inputs: [a, b]}
    - {type: Concatenate, inputs: [added, trunk]}
    - {type: LeakyReLU}
    - {type: GlobalMaxPooling2D, keepdims: true}
    - {type: Reshape, target_shape: [-1, 1]}
    - {type: Dense, units: 5}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: Adam}
loss: SparseCategoricalCrossentropy
training: {epochs: 1}
"""


@pytest.mark.slow
def test_parameter_counts_are_the_ones_keras_counts(repo, tmp_path):
    from runner.language.spec import load_spec
    from runner.records import catalogue
    from runner.training.settings import import_tensorflow

    import_tensorflow()
    from runner.model.compiler import build_model

    (tmp_path / "every_kind.yaml").write_text(EVERY_KIND)
    files = [*sorted((repo / "experiments").glob("*.yaml")), tmp_path / "every_kind.yaml"]
    specs = {f: load_spec(f, data_must_exist=False) for f in files}  # the ImageNet ones' data is not included
    counts = {f.name: (catalogue._param_count(specs[f]), build_model(specs[f]).count_params()) for f in files}
    # A pretrained network's weights are Keras's to count (the catalogue shows none rather than a guess)
    only_keras = {f.name for f in files if any(n.type == "Application" for n in specs[f].graph.nodes)}
    assert only_keras == {"finetune_phases.yaml"} and counts["finetune_phases.yaml"][0] is None
    counts = {name: pair for name, pair in counts.items() if name not in only_keras}
    assert {name: mine for name, (mine, _) in counts.items()} == {name: keras for name, (_, keras) in counts.items()}
    assert counts["model10.yaml"][0] == 37_987_722 and counts["every_kind.yaml"][0] > 0


@pytest.mark.parametrize("width, columns, left_out", [
    (100, {"file": 30, "name": 18, "best_test_acc": 15, "description": 32},
     "left out to fit 100 columns: dataset, partial_runs, params, runs (--format csv has them all)"),
    (120, {"file": 30, "name": 18, "params": 8, "runs": 6, "best_test_acc": 15, "description": 36},
     "left out to fit 120 columns: dataset, partial_runs (--format csv has them all)"),
])
def test_list_fits_the_terminal_and_wraps_descriptions(tmp_path, width, columns, left_out):
    from rich.console import Console

    from runner.records import catalogue
    from runner.records import tables as cmp

    long = "A tiny dense net whose description goes on for longer than any terminal line would hold, so it wraps. "
    (tmp_path / "model2.yaml").write_text(DENSE.replace("A tiny dense net. ", long))
    (tmp_path / "model10_with_a_long_name.yaml").write_text(CONV.replace("name: beta", "name: beta_gamma_delta"))
    rows = catalogue.entries(str(tmp_path), store_uri(tmp_path))
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(cmp.rich_table(rows, width=width))
    lines = console.export_text().splitlines()
    assert {c.strip(): len(c) for c in lines[1].strip("┃").split("┃")} == columns
    assert lines[-1].rstrip() == left_out and all(len(line) <= width for line in lines)
    assert any(line.startswith("│ model10_with_…long_name.yaml │ beta_gamma_delta │") for line in lines)  # both ends
    assert " ".join(line.split("│")[-2].strip() for line in lines[3:6]).startswith(long[:60])  # wrapped, not cut
