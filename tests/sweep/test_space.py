"""The search space of `xrun sweep` (runner/sweep/space.py), without training: the grid and random keys from the
YAML and --grid, their values as --set texts, short names, and the errors of a bad sweep section or variant."""

import subprocess
import sys

import pytest
from helpers import xrun
from sweep_cases import CONV, GRID, KEYS, PLAIN, RANDOM, space_of, write

from runner.errors import XrunError
from runner.sweep.space import (
    choices,
    from_choice,
    parse_grid_option,
    prepare,
    probes,
    short_name,
    values_of,
    yaml_value,
)


def test_dry_run_lists_the_grid_from_the_yaml_and_from_grid(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV)
    code, out, _ = xrun("sweep", path, "--dry-run")
    assert code == 0 and out == "  1  model.layers[0].kernel_size=3\n  2  model.layers[0].kernel_size=29\n"
    _, out, _ = xrun("sweep", path, "--dry-run", *GRID)
    assert out.splitlines() == [f"{i:3d}  {k}" for i, k in enumerate(KEYS, 1)]
    _, out, _ = xrun("sweep", path, "--dry-run", "--grid", "model.layers[0].kernel_size=5,7")
    assert out == "  1  model.layers[0].kernel_size=5\n  2  model.layers[0].kernel_size=7\n"
    assert not (tmp_path / "mlruns").exists()  # nothing recorded


def test_dry_run_of_a_search_lists_its_space(tmp_path):
    path = write(tmp_path, "tpe.yaml", PLAIN + RANDOM)
    code, out, _ = xrun("sweep", path, "--dry-run", "--grid", "model.layers[0].kernel_size=3,5")
    assert code == 0 and out.splitlines() == [
        "6 trials drawn by tpe from:", "  model.layers[0].kernel_size: choice of 3, 5",
        "  optimizer.learning_rate: loguniform 0.0001, 0.1", "  optimizer.momentum: uniform 0.5, 0.9",
        "  training.batch_size: choice 16, 32, 64", "  model.layers[0].filters: randint 1, 4"]


def test_dry_run_loads_neither_tensorflow_nor_mlflow_nor_optuna(tmp_path):
    path = write(tmp_path, "conv.yaml", CONV)
    probe = ("import sys\nfrom runner.cli import main\ncode = main(['sweep', sys.argv[1], '--dry-run'])\n"
             "print(code, *(m in sys.modules for m in ('tensorflow', 'mlflow', 'optuna')))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False False False", done.stderr


@pytest.mark.parametrize("section, message", [
    ("sweep: {method: grid, grid: {training.epochs: [1]}, random: {training.batch_size: {choice: [8]}}}",
     "13:17: sweep.method: method grid tries every point of sweep.grid, and cannot draw sweep.random; use method: "
     "random, tpe or cmaes (each grid key is then a choice), or list the values in sweep.grid"),
    ("sweep: {method: tpe, grid: {training.epochs: [1, 2]}}",
     "13:17: sweep.method: method tpe needs sweep.trials (how many trials to draw); e.g. trials: 20"),
    ("sweep: {method: cmaes, trials: 3, grid: {training.epochs: [1, 2]}}",
     "13:17: sweep.method: method cmaes searches numbers: it needs sweep.random with uniform, loguniform or "
     "randint keys; use method: tpe for grid keys"),
    ("sweep: {grid: {training.epochs: [1, 2]}, metric: val_f1}",
     "13:50: sweep.metric: the runs log no metric 'val_f1'; one of loss, accuracy, val_loss, val_accuracy, "
     "test_accuracy, test_loss"),
    ("sweep: {grid: {training.epochs: [1, 2]}, metric: test_accuracy, pruner: median}",
     "13:73: sweep.pruner: test_accuracy is measured once, after training: a pruner has nothing to compare per "
     "epoch; prune on an epoch metric (metric: val_accuracy), or use pruner: none"),
    ("sweep: {grid: {training.epochs: [1, 2]}, pruner: {type: median, n_startup: 1}}",
     "13:65: sweep.pruner.n_startup: unknown key 'n_startup' for median; did you mean 'n_startup_trials'?"),
    ("sweep: {grid: {training.epochs: [1, 2]}, pruner: medain}",
     "13:50: sweep.pruner: unknown value 'medain'; did you mean 'median'?"),
])
def test_a_bad_sweep_section_is_one_located_error(tmp_path, section, message):
    path = write(tmp_path, "bad.yaml", PLAIN + section + "\n")
    code, out, err = xrun("sweep", path, "--dry-run")
    assert code == 2 and err == f"{path}:{message}\n"


def test_short_names_abbreviate_keys_and_values():
    assert short_name({"model.layers[0].kernel_size": 3, "training.batch_size": 32}) == "kernel_size=3 batch_size=32"
    assert short_name({"model.layers[0].filters": 4, "model.layers[2].filters": 8}) == \
        "layers[0].filters=4 layers[2].filters=8"
    assert short_name({"optimizer.learning_rate": 0.000123456, "model.layers[0].activation": "a" * 30}) == \
        "learning_rate=0.000123 activation=" + "a" * 15 + "…"


def test_grid_option_values_are_yaml():
    assert parse_grid_option("optimizer.learning_rate=1e-3, 0.01") == ("optimizer.learning_rate", [0.001, 0.01])
    assert parse_grid_option("model.layers[0].kernel_size=[3,3],[5,5]") == \
        ("model.layers[0].kernel_size", [[3, 3], [5, 5]])
    assert parse_grid_option("model.layers[1].activation=relu,'a,b'")[1] == ["relu", "a,b"]
    with pytest.raises(XrunError, match="expected KEY=V1,V2"):
        parse_grid_option("training.batch_size")


def test_values_become_set_texts_that_read_back():
    assert [yaml_value(v) for v in (1e-05, 1e12, 3.0, 64, True, "relu", "a: b", [3, 3])] == \
        ["1e-05", "1e+12", "3.0", "64", "true", "relu", '"a: b"', "[3, 3]"]


def test_list_values_are_choices_by_their_text_and_read_back():
    values = [[3, 3], [5, 5]]
    assert choices(values) == ["[3, 3]", "[5, 5]"] and from_choice("[5, 5]", values) == [5, 5]
    assert choices([3, 5]) == [3, 5] and from_choice(5, [3, 5]) == 5


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
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_nothing_to_sweep_and_a_key_swept_twice(tmp_path):
    plain = write(tmp_path, "plain.yaml", PLAIN)
    code, _, err = xrun("sweep", plain, "--dry-run")
    assert code == 2 and "nothing to sweep" in err and err.count("\n") == 1
    twice = write(tmp_path, "twice.yaml", CONV + "  random:\n    model.layers[0].kernel_size: {choice: [3, 5]}\n")
    code, _, err = xrun("sweep", twice, "--dry-run")
    assert code == 2 and "model.layers[0].kernel_size is both in sweep.grid and sweep.random" in err


def test_a_grid_s_points_are_every_combination_in_order_and_trials_caps_them(tmp_path):
    s = space_of(tmp_path, CONV, GRID[1:])
    assert (s.method, s.trials, s.metric, s.direction, s.pruner, s.seed) == (
        "grid", None, "val_accuracy", "maximize", {"type": "none"}, 0)
    assert s.keys == ["model.layers[0].kernel_size", "training.batch_size"]
    assert [v.key for v in s.points()] == KEYS and s.target == 4
    assert space_of(tmp_path, CONV.replace("sweep:\n", "sweep:\n  trials: 3\n"), GRID[1:]).target == 3
    assert space_of(tmp_path, CONV.replace("sweep:\n", "sweep:\n  trials: 3\n")).target == 2  # the grid is smaller


def test_a_search_is_probed_at_each_listed_value_and_each_bound(tmp_path):
    s = space_of(tmp_path, PLAIN + RANDOM, ["model.layers[0].kernel_size=3,5"])
    assert (s.method, s.target, s.seed) == ("tpe", 6, 7)
    first = {"model.layers[0].kernel_size": 3, "optimizer.learning_rate": 0.0001, "optimizer.momentum": 0.5,
             "training.batch_size": 16, "model.layers[0].filters": 1}
    # each key in the sweep's order, each of its values or bounds, the others at their first (no point twice)
    changed = [("model.layers[0].kernel_size", 5), ("optimizer.learning_rate", 0.1), ("optimizer.momentum", 0.9),
               ("training.batch_size", 32), ("training.batch_size", 64), ("model.layers[0].filters", 4)]
    expected = [first] + [{**first, k: v} for k, v in changed]
    assert [v.key for v in probes(s)] == [" ".join(f"{k}={yaml_value(v)}" for k, v in e.items()) for e in expected]
    assert probes(space_of(tmp_path, CONV)) == space_of(tmp_path, CONV).points()  # a grid: its points


def test_a_trial_s_params_read_back_as_the_yaml_values(tmp_path):
    s = space_of(tmp_path, PLAIN + RANDOM, ["model.layers[0].kernel_size=[3,3],[5,5]"])
    params = {"model.layers[0].filters": 2, "optimizer.learning_rate": 0.01, "training.batch_size": 32,
              "model.layers[0].kernel_size": "[5, 5]", "optimizer.momentum": 0.6}
    values = values_of(params, s)
    assert values == {"model.layers[0].kernel_size": [5, 5], "optimizer.learning_rate": 0.01,
                      "optimizer.momentum": 0.6, "training.batch_size": 32, "model.layers[0].filters": 2}
    assert list(values) == s.keys  # the sweep's order, not the trial's


def test_one_sweep_one_key_and_an_unseeded_one_one_shared_seed(tmp_path):
    plan = prepare(write(tmp_path, "conv.yaml", CONV), [], [])
    assert plan.study_name == f"xrun-conv-{plan.key}" and len(plan.key) == 16 and int(plan.key, 16) >= 0
    assert prepare(tmp_path / "conv.yaml", [], []).key == plan.key  # the same sweep on any worker
    assert prepare(tmp_path / "conv.yaml", [], GRID[1:]).key != plan.key
    (seed,) = plan.overrides
    assert seed.startswith("training.seed=") and plan.cli_overrides == []
    seeded = prepare(tmp_path / "conv.yaml", ["training.seed=5"], [])
    assert seeded.overrides == seeded.cli_overrides == ["training.seed=5"]  # no shared seed: the file's is kept


def test_a_trial_s_experiment_has_its_values_and_no_sweep_section(tmp_path):
    plan = prepare(write(tmp_path, "conv.yaml", CONV), [], GRID[1:])
    spec = plan.load(plan.space.points()[3])
    assert spec.document["model"]["layers"][0]["kernel_size"] == 29 and spec.training.batch_size == 64
    assert "sweep" not in spec.document and spec.training.seed == int(plan.overrides[0].split("=")[1])
