"""`xrun sweep`: variants from the YAML and --grid, random samples, nested runs, failures, resuming, --jobs."""

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import store_uri, xrun

from runner import sweep as sw
from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.records import query
from runner.records import tables as cmp

# Unseeded on purpose: a sweep must give all its variants one seed. kernel_size 29 does not fit a 28x28 image,
# so those variants fail when the model is built, after their runs have started.
CONV = """\
name: conv
description: A tiny conv net for the sweep tests.
data: {dataset: mnist, limit: 128, validation: test}
model:
  layers:
    - {type: Conv2D, filters: 2, kernel_size: 3, activation: relu}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: SGD, learning_rate: 0.01}
loss: SparseCategoricalCrossentropy
training: {epochs: 1, batch_size: 64}
tracking: {experiment: sweep-test, log_model: false, log_images: false}
sweep:
  grid:
    model.layers[0].kernel_size: [3, 29]
"""
GRID = ["--grid", "training.batch_size=32,64"]
KEYS = ["model.layers[0].kernel_size=3 training.batch_size=32", "model.layers[0].kernel_size=3 training.batch_size=64",
        "model.layers[0].kernel_size=29 training.batch_size=32", "model.layers[0].kernel_size=29 training.batch_size=64"]
RANDOM = """\
sweep:
  samples: 6
  seed: 7
  random:
    optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
    optimizer.momentum: {uniform: [0.5, 0.9]}
    training.batch_size: {choice: [16, 32, 64]}
    model.layers[0].filters: {randint: [1, 4]}
"""



def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(text)
    return path


def sweep_runs(uri: str) -> tuple[list, list]:
    """(parents, children) of the sweep experiment, newest first."""
    runs = query.find_runs(uri, experiments=["sweep-test"])
    return [r for r in runs if cmp.is_sweep_parent(r)], [r for r in runs if not cmp.is_sweep_parent(r)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The same 4-variant sweep run twice: two variants train, two fail, and the second run resumes the first."""
    folder = tmp_path_factory.mktemp("sweep")
    uri = store_uri(folder)
    write(folder, "conv.yaml", CONV)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        first = xrun("sweep", "conv.yaml", *GRID, "--tracking-uri", uri)
        first_runs = sweep_runs(uri)
        second = xrun("sweep", "conv.yaml", *GRID, "--tracking-uri", uri, "--format", "json")
        yield {"uri": uri, "first": first, "first_runs": first_runs, "second": second,
               "second_runs": sweep_runs(uri)}


def by_variant(children) -> dict:
    out = {}
    for run in children:
        out.setdefault(run.tags["xrun.variant"], []).append(run)
    return out


def test_children_are_nested_under_one_parent_and_say_what_varied(swept):
    parents, children = swept["first_runs"]
    assert len(parents) == 1 and parents[0].name == "conv sweep"
    assert sorted(by_variant(children)) == sorted(KEYS) and len(children) == 4
    for child in children:
        assert child.tags["mlflow.parentRunId"] == parents[0].run_id
        assert child.name == f"conv [{child.tags['xrun.variant']}]"
        kernel, batch = re.fullmatch(r"model.layers\[0\].kernel_size=(\d+) training.batch_size=(\d+)",
                                     child.tags["xrun.variant"]).groups()
        assert child.params["model.layers.0.kernel_size"] == kernel
        assert child.params["training.batch_size"] == batch


def test_a_failing_variant_leaves_the_others_finished(swept):
    code, out, err = swept["first"]
    parents, children = swept["first_runs"]
    status = {r.tags["xrun.variant"]: r.status for r in children}
    assert status == {KEYS[0]: "FINISHED", KEYS[1]: "FINISHED", KEYS[2]: "FAILED", KEYS[3]: "FAILED"}
    assert parents[0].status == "FAILED"
    assert code == 1
    failures = [line for line in err.splitlines() if line.startswith("FAILED: ")]
    assert [f.split(": ")[1] for f in failures] == KEYS[2:]
    assert all("29x29 kernel does not fit its 28x28 input" in f for f in failures)
    assert "2 finished, 2 failed, 0 skipped" in err
    assert all(r.metrics.get("test_accuracy") is not None for r in children if r.status == "FINISHED")


def test_unseeded_variants_share_one_seed(swept):
    _, children = swept["first_runs"]
    assert len({r.params["training.seed"] for r in children}) == 1
    # So the swept keys are all that differs between the variants.
    assert cmp.differing_params(children) == ["model.layers.0.kernel_size", "training.batch_size"]
    # The sweep section stays with the parent: a variant is one experiment.
    assert not any(k.startswith("sweep.grid") for r in children for k in r.params)


def test_the_final_table_lists_the_variants_in_order(swept):
    _, out, _ = swept["first"]
    assert "kernel_size" in out and "batch_size" in out
    assert out.count("FINISHED") == 2 and out.count("FAILED") == 2


def test_a_rerun_reuses_the_parent_skips_finished_and_retries_failed(swept):
    code, out, err = swept["second"]
    (parent,), children = swept["second_runs"]
    assert parent.run_id == swept["first_runs"][0][0].run_id and parent.status == "FAILED"
    runs = by_variant(children)
    first = by_variant(swept["first_runs"][1])
    for key in KEYS[:2]:  # finished: not run again
        assert [r.run_id for r in runs[key]] == [r.run_id for r in first[key]]
    for key in KEYS[2:]:  # failed: tried once more, under the same parent
        assert len(runs[key]) == 2 and {r.status for r in runs[key]} == {"FAILED"}
        assert all(r.tags["mlflow.parentRunId"] == parent.run_id for r in runs[key])
    assert code == 1 and "0 finished, 2 failed, 2 skipped" in err
    # The table shows each variant's latest attempt, in sweep order.
    rows = json.loads(out)
    assert [r["run"] for r in rows] == [runs[k][0].run_id for k in KEYS]


def test_compare_a_sweep_parent_means_its_variants(swept):
    (parent,), children = swept["second_runs"]
    code, out, _ = xrun("compare", parent.run_id[:8], "--format", "json", "--tracking-uri", swept["uri"])
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 4 and {r["name"] for r in rows} == {"conv"}  # the columns say what varied
    assert list(rows[0])[:4] == ["name", "run", "model.layers.0.kernel_size", "training.batch_size"]
    # compare leaves sweep parents (which trained nothing) out of an experiment's runs
    code, out, _ = xrun("compare", "-e", "sweep-test", "--format", "json", "--tracking-uri", swept["uri"])
    assert parent.run_id not in {r["run"] for r in json.loads(out)} and len(json.loads(out)) == 6


# --- variants, without training ------------------------------------------------------------------------------

def test_dry_run_lists_the_grid_from_the_yaml_and_from_grid(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV)
    code, out, _ = xrun("sweep", path, "--dry-run")
    assert code == 0 and out == "  1  model.layers[0].kernel_size=3\n  2  model.layers[0].kernel_size=29\n"
    _, out, _ = xrun("sweep", path, "--dry-run", *GRID)
    assert out.splitlines() == [f"{i:3d}  {k}" for i, k in enumerate(KEYS, 1)]
    # --grid replaces the file's values for its key
    _, out, _ = xrun("sweep", path, "--dry-run", "--grid", "model.layers[0].kernel_size=5,7")
    assert out == "  1  model.layers[0].kernel_size=5\n  2  model.layers[0].kernel_size=7\n"
    assert not (tmp_path / "mlruns").exists()  # nothing recorded


def test_dry_run_loads_neither_tensorflow_nor_mlflow(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV)
    probe = ("import sys\nfrom runner.cli import main\ncode = main(['sweep', sys.argv[1], '--dry-run'])\n"
             "print(code, 'tensorflow' in sys.modules, 'mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False False", done.stderr


def test_random_samples_are_seeded_and_in_range(tmp_path):
    path = write(tmp_path, "random.yaml", CONV.split("sweep:")[0] + RANDOM)
    _, first, _ = xrun("sweep", path, "--dry-run")
    _, again, _ = xrun("sweep", path, "--dry-run")
    assert first == again and len(first.splitlines()) == 6
    other = load_spec(path, ["sweep.seed=8"])
    assert [v.key for v in sw.variants(other)] != [line.split("  ", 2)[-1] for line in first.splitlines()]
    for line in first.splitlines():
        values = dict(item.split("=") for item in line.split()[1:])
        assert set(values) == {"optimizer.learning_rate", "optimizer.momentum", "training.batch_size",
                               "model.layers[0].filters"}
        assert 1e-4 <= float(values["optimizer.learning_rate"]) <= 1e-1
        assert 0.5 <= float(values["optimizer.momentum"]) <= 0.9
        assert values["training.batch_size"] in {"16", "32", "64"}
        assert values["model.layers[0].filters"] in {"1", "2", "3", "4"}


def test_many_random_draws_cover_the_ranges_with_the_right_types(tmp_path):
    path = write(tmp_path, "random.yaml", CONV.split("sweep:")[0] + RANDOM.replace("samples: 6", "samples: 300"))
    spec = load_spec(path)
    samples = sw._random_samples(spec.document["sweep"]["random"], spec.document["sweep"])
    lrs = [s["optimizer.learning_rate"] for s in samples]
    assert all(isinstance(v, float) and 1e-4 <= v <= 1e-1 for v in lrs)
    assert sum(v < 1e-3 for v in lrs) > 50 and sum(v > 1e-2 for v in lrs) > 50  # log-uniform: each decade
    assert {s["model.layers[0].filters"] for s in samples} == {1, 2, 3, 4}
    assert {s["training.batch_size"] for s in samples} == {16, 32, 64}
    assert all(0.5 <= s["optimizer.momentum"] <= 0.9 for s in samples)


def test_grid_times_random_and_repeats_dropped(tmp_path):
    text = CONV.split("sweep:")[0] + ("sweep:\n  samples: 5\n  grid: {training.epochs: [1, 2]}\n"
                                      "  random: {training.batch_size: {choice: [32]}}\n")
    spec = load_spec(write(tmp_path, "mixed.yaml", text))
    assert [v.key for v in sw.variants(spec)] == ["training.epochs=1 training.batch_size=32",
                                                  "training.epochs=2 training.batch_size=32"]


def test_grid_option_values_are_yaml():
    assert sw.parse_grid_option("optimizer.learning_rate=1e-3, 0.01") == ("optimizer.learning_rate", [0.001, 0.01])
    assert sw.parse_grid_option("model.layers[0].kernel_size=[3,3],[5,5]") == \
        ("model.layers[0].kernel_size", [[3, 3], [5, 5]])
    assert sw.parse_grid_option("model.layers[1].activation=relu,'a,b'")[1] == ["relu", "a,b"]
    with pytest.raises(XrunError, match="expected KEY=V1,V2"):
        sw.parse_grid_option("training.batch_size")


def test_values_become_set_texts_that_read_back():
    assert [sw._yaml_value(v) for v in (1e-05, 1e12, 3.0, 64, True, "relu", "a: b", [3, 3])] == \
        ["1e-05", "1e+12", "3.0", "64", "true", "relu", '"a: b"', "[3, 3]"]


@pytest.mark.parametrize("args, message", [
    (["--grid", "training.batch_size=0,64"], "--set training.batch_size=0: training.batch_size: "),
    (["--grid", "training.batchsize=1"], "--set training.batchsize=1: unknown key 'training.batchsize'"),
    (["--grid", "training.batch_size"], "--grid training.batch_size: expected KEY=V1,V2,..."),
])
def test_a_bad_variant_stops_the_sweep_before_anything_trains(tmp_path, args, message):
    path = write(tmp_path, "conv.yaml", CONV)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for extra in (["--dry-run"], ["--tracking-uri", uri]):
        code, out, err = xrun("sweep", path, *args, *extra)
        assert code == 2 and out == "" and err.startswith(message), err
    assert not (tmp_path / "mlflow.db").exists()


def test_nothing_to_sweep_and_a_key_swept_twice(tmp_path):
    plain = write(tmp_path, "plain.yaml", CONV.split("sweep:")[0])
    code, _, err = xrun("sweep", plain, "--dry-run")
    assert code == 2 and "nothing to sweep" in err and err.count("\n") == 1
    twice = write(tmp_path, "twice.yaml", CONV + "  random:\n    model.layers[0].kernel_size: {choice: [3, 5]}\n")
    code, _, err = xrun("sweep", twice, "--dry-run")
    assert code == 2 and "model.layers[0].kernel_size is both in sweep.grid and sweep.random" in err


# --- --jobs ----------------------------------------------------------------------------------------------

def test_jobs_run_variants_in_their_own_processes_under_one_parent(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV.replace("[3, 29]", "[3, 5]"))
    uri = store_uri(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-m", "runner.cli", "sweep", str(path), "--jobs", "2",
                           "--tracking-uri", uri, "--format", "json"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=400)
    assert done.returncode == 0, done.stderr
    (parent,), children = sweep_runs(uri)
    assert parent.status == "FINISHED" and len(children) == 2
    assert {r.tags["mlflow.parentRunId"] for r in children} == {parent.run_id}
    assert {r.status for r in children} == {"FINISHED"}
    assert sorted(r.params["model.layers.0.kernel_size"] for r in children) == ["3", "5"]
    assert len({r.params["training.seed"] for r in children}) == 1
    # Both variants were started before either finished: they ran side by side.
    lines = done.stderr.splitlines()
    started = [i for i, line in enumerate(lines) if line.endswith(": training")]
    ended = [i for i, line in enumerate(lines) if ": FINISHED in " in line]
    assert len(started) == 2 and len(ended) == 2 and max(started) < min(ended)
    assert [r["run"] for r in json.loads(done.stdout)] == [
        next(c.run_id for c in children if c.params["model.layers.0.kernel_size"] == k) for k in ("3", "5")]
