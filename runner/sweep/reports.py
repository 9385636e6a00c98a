"""What a finished study leaves on its MLflow parent run: Optuna's plots and the best trial."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import optuna
from optuna.visualization import matplotlib as optuna_plots

from runner.records import names
from runner.sweep.space import Space, values_of, yaml_value


def of(study: optuna.Study, s: Space) -> dict:
    """For store.add_to_run: plots/optimization_history.png, plots/param_importances.png (when two or more trials
    completed with different values), sweep/best_trial.json, and the best trial's values as `best.KEY` params."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return {"tags": {names.BEST: "no trial completed"}}
    files = {names.OPTIMIZATION_HISTORY_PLOT: optuna_plots.plot_optimization_history(study).figure,
             **_importances(study, complete)}
    best = study.best_trial
    values = values_of(best.params, s)
    files[names.SWEEP_BEST] = {"trial": best.number, "value": best.value, "metric": s.metric,
                               "direction": s.direction, "params": values,
                               "mlflow_run_id": best.user_attrs.get(names.TRIAL_RUN_ID)}
    tags = {"best.trial": best.number, "best.run_id": best.user_attrs.get(names.TRIAL_RUN_ID, "")}
    return {"tags": tags, "files": files, "params": {f"best.{k}": yaml_value(v) for k, v in values.items()},
            "metrics": {f"best_{s.metric}": best.value, "trials_complete": len(complete)}}


def _importances(study: optuna.Study, complete: list) -> dict:
    varied = [k for k in complete[0].params if len({repr(t.params.get(k)) for t in complete}) > 1]
    if len(complete) < 2 or not varied:
        return {}
    try:
        with warnings.catch_warnings():
            # Optuna warns (on the terminal) when the trials do not tell the params apart, and plots equal bars.
            warnings.simplefilter("error", UserWarning)
            figure = optuna_plots.plot_param_importances(study, params=varied).figure
    except (RuntimeError, ValueError, ZeroDivisionError, UserWarning) as exc:  # e.g. every trial scored the same
        return {names.PARAM_IMPORTANCES_TEXT: f"no parameter importances: {exc}\n"}
    figure.set_size_inches(8, 1.5 + 0.5 * len(varied))
    figure.tight_layout()
    return {names.PARAM_IMPORTANCES_PLOT: figure}
