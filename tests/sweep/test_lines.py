"""Drawn numbers on the terminal (issue 22 #28): a trial's line and the sweep's table show 4 significant digits;
the run keeps the exact value."""

import warnings

import optuna
from helpers import store_uri, xrun
from sweep_cases import CONV, GRID, PLAIN, space_of, write

from runner.records.tables import cell
from runner.sweep import reports, trials
from runner.sweep.lines import shown
from runner.sweep.space import Variant
from runner.sweep.trials import suggest


def test_a_trial_line_shortens_long_numbers_and_keeps_what_4_digits_say_exactly():
    variant = Variant(("optimizer.learning_rate=0.000316227766017", "optimizer.momentum=0.712345678901",
                       "training.batch_size=32", "optimizer.epsilon=1.0e-07", "model.layers[0].kernel_size=[3, 3]",
                       "optimizer.type=Adam", "optimizer.beta_1=3.16227766017e-05"))
    assert shown(variant) == ("optimizer.learning_rate=0.0003162 optimizer.momentum=0.7123 training.batch_size=32 "
                              "optimizer.epsilon=1.0e-07 model.layers[0].kernel_size=[3, 3] optimizer.type=Adam "
                              "optimizer.beta_1=3.162e-05")


def test_the_table_shows_a_drawn_param_to_4_digits_and_leaves_written_ones_and_integers_alone():
    given = ["0.000316227766017", "3.16227766017e-05", "-0.00123456789", "0.12345", "0.01", "1234567", "32",
             "abc1234567", "1e-05"]
    assert [cell(v, "optimizer.learning_rate") for v in given] == [
        "0.0003162", "3.162e-05", "-0.001235", "0.12345", "0.01", "1234567", "32", "abc1234567", "1e-05"]


def test_the_sweep_prints_each_trial_s_learning_rate_to_4_digits_and_trains_the_exact_one(tmp_path, monkeypatch):
    uri = store_uri(tmp_path)
    write(tmp_path, "conv.yaml", PLAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XRUN_STUDY_STORAGE", raising=False)
    trained = []

    def train(self, trial, values, variant, started):  # no training: what the trial was given, and its line
        trained.append(variant.key)
        self._done(trial.number, variant, "FINISHED", started, "")
        return 0.5
    monkeypatch.setattr(trials.Worker, "_train", train)
    code, _, err = xrun("sweep", "conv.yaml", "--grid", "optimizer.learning_rate=0.000316227766017,0.01",
                        "--tracking-uri", uri)
    lines = sorted(line.split("] ", 1)[1].split(" in ")[0] for line in err.splitlines() if line.startswith("[trial"))
    assert (code, lines) == (0, ["optimizer.learning_rate=0.0003162: FINISHED",
                                 "optimizer.learning_rate=0.0003162: training",
                                 "optimizer.learning_rate=0.01: FINISHED", "optimizer.learning_rate=0.01: training"])
    assert sorted(trained) == ["optimizer.learning_rate=0.000316227766017", "optimizer.learning_rate=0.01"]


def test_trials_that_score_alike_leave_a_note_instead_of_optuna_s_warning_on_the_terminal(tmp_path):
    s = space_of(tmp_path, CONV, GRID[1:])
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler(
        {"model.layers[0].kernel_size": [3, 29], "training.batch_size": [32, 64]}, seed=0))
    for _ in range(3):
        trial = study.ask()
        suggest(trial, s)
        study.tell(trial, 0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = reports.of(study, s)["files"]
    assert [w.message for w in caught if issubclass(w.category, UserWarning)] == []
    assert files["plots/param_importances.txt"] == (
        "no parameter importances: Target and region quantiles select the same set of trials. Parameter "
        "importances will be equal.\n")
