"""What a finished sweep leaves on its parent run (runner/sweep/reports.py): from a made-up study in memory
(fast), and from the session's trained sweep (slow), with `xrun compare` of the parent."""

import json

import optuna
import pytest
from helpers import artifact_paths, artifact_text, xrun
from sweep_cases import CONV, GRID, space_of

from runner.sweep import reports


@pytest.mark.slow
def test_the_parent_has_the_study_reports_and_the_best_trial(swept):
    (parent,), children = swept["second_runs"]
    files = artifact_paths(swept["uri"], parent.run_id)
    assert {"plots/optimization_history.png", "plots/param_importances.png", "sweep/best_trial.json",
            "sweep/space.txt"} <= files
    top = max(c.metrics["best_val_accuracy"] for c in children)
    best = next(c for c in children if c.run_id == parent.tags["best.run_id"])  # the first of any tied
    assert best.metrics["best_val_accuracy"] == top == pytest.approx(parent.metrics["best_val_accuracy"])
    assert parent.params == {"sweep.grid.model.layers.0.kernel_size": "3, 29", "sweep.grid.training.batch_size": "32, 64",
                             "best.model.layers.0.kernel_size": "3",
                             "best.training.batch_size": best.params["training.batch_size"]}
    assert json.loads(artifact_text(swept["uri"], parent.run_id, "sweep/best_trial.json"))["params"] == {
        "model.layers[0].kernel_size": 3, "training.batch_size": int(best.params["training.batch_size"])}


@pytest.mark.slow
def test_compare_a_sweep_parent_means_its_trials(swept):
    (parent,), _ = swept["second_runs"]
    code, out, _ = xrun("compare", parent.run_id[:8], "--format", "json", "--tracking-uri", swept["uri"])
    rows = json.loads(out)
    assert code == 0 and [r["training.batch_size"] for r in rows] in (["32", "64"], ["64", "32"])
    # kernel_size is no column (both trials that ran had 3), so the names keep it
    assert {r["name"] for r in rows} == {"conv [kernel_size=3 batch_size=32]", "conv [kernel_size=3 batch_size=64]"}
    assert list(rows[0])[:3] == ["name", "run", "training.batch_size"]


# --- a made-up study (no training; one complete trial, so no importances, which take seconds) -----------------

def test_a_study_with_no_complete_trial_says_so():
    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    assert reports.of(study, None) == {"tags": {"xrun.best": "no trial completed"}}


def test_the_best_trial_s_values_are_the_yaml_s(tmp_path):
    from runner.sweep.trials import suggest

    s = space_of(tmp_path, CONV.replace("[3, 29]", "[[3, 3], [5, 5]]"), GRID[1:])
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    failed, best = study.ask(), study.ask()
    values = suggest(best, s)
    best.set_user_attr("mlflow_run_id", "run-b")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.tell(best, 0.75)
    out = reports.of(study, s)
    assert set(out["files"]) == {"plots/optimization_history.png", "sweep/best_trial.json"}
    assert out["files"]["sweep/best_trial.json"] == {"trial": 1, "value": 0.75, "metric": "val_accuracy",
                                                     "direction": "maximize", "params": values,
                                                     "mlflow_run_id": "run-b"}
    kernel, batch = values["model.layers[0].kernel_size"], values["training.batch_size"]
    assert out["params"] == {"best.model.layers[0].kernel_size": f"[{kernel[0]}, {kernel[1]}]",
                             "best.training.batch_size": str(batch)}
    assert out["tags"] == {"best.trial": 1, "best.run_id": "run-b"}
    assert out["metrics"] == {"best_val_accuracy": 0.75, "trials_complete": 1}
    assert isinstance(kernel, list) and batch in (32, 64)
