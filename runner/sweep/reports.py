"""What a finished study leaves on its MLflow parent run: Optuna's plots and the best trial."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import optuna  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from runner.sweep.space import Space, values_of, yaml_value  # noqa: E402


def of(study: optuna.Study, s: Space) -> dict:
    """For store.add_to_run: plots/optimization_history.png, plots/param_importances.png (when two or more trials
    completed with different values), sweep/best_trial.json, and the best trial's values as `best.KEY` tags."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return {"tags": {"xrun.best": "no trial completed"}}
    files = {"plots/optimization_history.png": optuna_plots.plot_optimization_history(study).figure,
             **_importances(study, complete)}
    best = study.best_trial
    values = values_of(best.params, s)
    files["sweep/best_trial.json"] = {"trial": best.number, "value": best.value, "metric": s.metric,
                                      "direction": s.direction, "params": values,
                                      "mlflow_run_id": best.user_attrs.get("mlflow_run_id")}
    tags = {**{f"best.{k}": yaml_value(v) for k, v in values.items()}, "best.trial": best.number,
            "best.run_id": best.user_attrs.get("mlflow_run_id", "")}
    return {"tags": tags, "files": files,
            "metrics": {f"best_{s.metric}": best.value, "trials_complete": len(complete)}}


def _importances(study: optuna.Study, complete: list) -> dict:
    varied = [k for k in complete[0].params if len({repr(t.params.get(k)) for t in complete}) > 1]
    if len(complete) < 2 or not varied:
        return {}
    try:
        figure = optuna_plots.plot_param_importances(study, params=varied).figure
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:  # e.g. every trial scored the same
        return {"plots/param_importances.txt": f"no parameter importances: {exc}\n"}
    figure.set_size_inches(8, 1.5 + 0.5 * len(varied))
    figure.tight_layout()
    return {"plots/param_importances.png": figure}
