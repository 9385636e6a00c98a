"""`xrun lr-find`: the geometric ramp, the smoothing and divergence rules, fastai's valley, the --set it prints,
the range test on a quadratic whose divergence rate is known (2/L), and the run read back through MLflow."""

import itertools
import math

import numpy as np
import pytest
from helpers import DATA_DIR, artifact_paths, artifact_text, experiment, history, only_run, store_uri
from helpers import write_experiment as write

from runner.running import lr_ramp


def test_the_ramp_is_geometric_from_min_to_max():
    rates = lr_ramp.rates(1e-7, 10.0, 200)
    assert len(rates) == 200
    assert rates[0] == 1e-7
    assert rates[-1] == pytest.approx(10.0, rel=1e-12)
    factor = (10.0 / 1e-7) ** (1 / 199)  # 1e8 over 199 equal steps in log space
    assert [b / a for a, b in zip(rates, rates[1:])] == pytest.approx([factor] * 199, rel=1e-12)


def test_the_smoothed_loss_is_a_debiased_moving_average():
    average, value = lr_ramp.smooth(0.0, 2.0, 0)
    assert (average, value) == pytest.approx((0.04, 2.0))  # the first step is its own loss, not 2% of it
    average, value = lr_ramp.smooth(average, 1.0, 1)
    # 0.98 * 0.04 + 0.02 * 1 = 0.0592, over 1 - 0.98**2 = 0.0396
    assert (average, value) == pytest.approx((0.0592, 0.0592 / 0.0396))


@pytest.mark.parametrize(("smoothed", "best", "diverged"),
                         [(4.0, 1.0, False), (4.001, 1.0, True), (math.nan, 1.0, True), (math.inf, 1.0, True)])
def test_diverged_is_over_four_times_the_best(smoothed, best, diverged):
    assert lr_ramp.has_diverged(smoothed, best) is diverged


def test_valley_is_half_way_down_the_longest_descent():
    # The longest decreasing run is 5, 4, 3, 2, 1, 0.5 (steps 3..8): fastai counts it from step 2, a third of
    # its 6 steps is 2, half of that 1: step 2 + 2 + 1 = 5.
    losses = [3, 1, 2, 5, 4, 3, 2, 1, 0.5, 6]
    assert lr_ramp.valley(list(range(10)), losses) == 5


def test_the_suggestion_skips_the_first_tenth_and_the_last_five_steps():
    # 40 steps: the window is steps 4..34. The loss falls from step 0 to 30 and rises after; the noise of the
    # first steps (a minimum at step 1) and the last ones (a dip at step 38) are outside it.
    losses = [10.0, 0.1, *[10.0 - i * 0.3 for i in range(2, 31)], *[2.0 + i for i in range(9)]]
    losses[38] = 0.01
    rates = [float(i) for i in range(40)]
    trace = lr_ramp.Trace(tuple(rates), tuple(losses), tuple(losses), False)
    # The window's longest descent is steps 4..30 (27 steps; fastai counts from 3): 3 + 9 + 4 = step 16.
    assert lr_ramp.suggestion(trace) == (16.0, 3.0)  # the minimum is at step 30: 30 / 10


def test_a_trace_too_short_for_a_suggestion_is_an_error():
    from runner.errors import XrunError

    trace = lr_ramp.Trace((1.0,) * 7, (1.0,) * 7, (1.0,) * 7, True)
    with pytest.raises(XrunError, match="diverged after 7 steps, too soon"):
        lr_ramp.suggestion(trace)


@pytest.mark.parametrize(("section", "expected"), [
    ({"type": "Adam", "learning_rate": 0.01}, "optimizer.learning_rate=0.00123"),
    ("Adam", "optimizer.learning_rate=0.00123"),
    ({"type": "SGD", "learning_rate": {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_epochs": 1,
                                       "decay_rate": 0.5}},
     "optimizer.learning_rate.initial_learning_rate=0.00123"),
    ({"type": "Adam", "learning_rate": {"type": "CosineDecay", "initial_learning_rate": 0.0002, "warmup_epochs": 1,
                                        "warmup_target": 0.003}},
     "optimizer.learning_rate.warmup_target=0.00123"),
    ({"type": "Adam", "learning_rate": {"type": "PiecewiseConstantDecay", "boundaries_epochs": [1],
                                        "values": [0.1, 0.01]}},
     "optimizer.learning_rate=0.00123"),
])
def test_the_set_it_prints_is_one_the_experiment_takes(tmp_path, section, expected):
    from runner.language.spec import load_spec

    spec = load_spec(write(tmp_path, experiment(optimizer=section)))
    schedule = spec.optimizer.schedule
    override = lr_ramp.override(schedule and schedule.type, dict(schedule.arguments) if schedule else {}, 0.00123)
    assert override == expected
    given = load_spec(spec.path, [override]).optimizer
    key = expected.split("=")[0].split(".")[-1]
    value = given.schedule.arguments[key] if given.schedule else given.arguments[key]
    assert value == 0.00123


def _quadratic_model():
    """Linear regression without a bias on x = (1, 0) and (0, 1), y = 0, from w = (1, 1): the mean squared error
    is (w1^2 + w2^2) / 2, whose Hessian is the identity (L = 1). A step of rate r scales w by (1 - r), so the loss
    after steps r_0..r_k-1 is prod (1 - r_j)^2, and gradient descent diverges for r > 2/L = 2. (The target is 0 so
    that float32 keeps the error's relative precision: a w that reached 1 exactly would stay there.)"""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.001), loss="mse")
    x, y = np.eye(2, dtype=np.float32), np.zeros((2, 1), np.float32)
    return model, itertools.repeat((x, y))


@pytest.mark.slow
def test_on_a_quadratic_the_ramp_stops_past_two_over_l_and_suggests_below_it():
    from runner.running.lr_find import range_test

    model, batches = _quadratic_model()
    rates = lr_ramp.rates(1e-3, 100.0, 100)
    trace = range_test(model, batches, rates)
    expected = [float(np.prod([(1 - r) ** 2 for r in rates[:k]])) for k in range(trace.steps)]
    assert trace.losses == pytest.approx(expected, rel=1e-3, abs=1e-30)
    first_past = next(i for i, r in enumerate(rates) if r > 2)  # step 66: 1e-3 * 1e5**(66/99) = 2.15
    assert first_past == 66
    assert trace.diverged and first_past < trace.steps < len(rates)
    # It stopped at the first step whose smoothed loss is over 4x the best before it, and not sooner.
    best = [min(trace.smoothed[:i]) for i in range(1, trace.steps)]
    assert [s > 4 * b for s, b in zip(trace.smoothed[1:], best)] == [False] * (trace.steps - 2) + [True]
    suggested, tenth = lr_ramp.suggestion(trace)
    assert 1e-2 < suggested < 2  # inside the good range, short of divergence


@pytest.mark.slow
def test_lr_find_is_recorded_as_a_run(tmp_path):
    from runner.language.spec import load_spec
    from runner.records import names
    from runner.running.lr_find import find

    path = write(tmp_path, experiment(data={"dataset": "mnist", "limit": 256}))
    uri = store_uri(tmp_path)
    found = find(load_spec(path), steps=40, lowest=1e-5, highest=1.0, tracking_uri=uri, data_dir=DATA_DIR)
    run = only_run(uri)
    assert (run.info.run_name, run.info.status) == ("tiny lr-find", "FINISHED")
    assert run.data.tags[names.LR_FIND] == "true"
    assert run.data.tags[names.LR_FIND_SET] == found.set_override == f"optimizer.learning_rate={found.suggested:.3g}"
    assert run.data.params["lr_find.steps"] == "40" and run.data.params["optimizer.type"] == "Adam"
    assert run.data.metrics["lr_find_suggestion"] == pytest.approx(found.suggested)
    # One value a step, steps 1..N (history checks them).
    assert history(uri, run.info.run_id, "lr_find_loss") == pytest.approx(found.trace.losses)
    assert history(uri, run.info.run_id, "lr_find_rate") == pytest.approx(lr_ramp.rates(1e-5, 1.0, 40)[:found.trace.steps])
    assert {names.LR_FIND_PLOT, names.LR_FIND_CSV} <= artifact_paths(uri, run.info.run_id)
    csv = artifact_text(uri, run.info.run_id, names.LR_FIND_CSV).splitlines()
    assert csv[0] == "step,learning_rate,loss,smoothed_loss" and len(csv) == found.trace.steps + 1


@pytest.mark.parametrize(("args", "message"), [
    (["--min", "1", "--max", "0.1"], "--min 1 is not below --max 0.1; the ramp rises: e.g. --min 1e-7 --max 10\n"),
    (["--set", "optimizer.learning_rat=0.1"], "optimizer.learning_rat"),
])
def test_lr_find_errors_are_one_line_and_exit_2(tmp_path, args, message):
    path = write(tmp_path)
    from helpers import xrun

    code, out, err = xrun("lr-find", path, *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err


def test_lr_find_help_and_errors_load_no_tensorflow(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path)
    code = f"""
import sys
from runner.cli import main
codes = [main(['lr-find', '--help']), main(['lr-find', {str(path)!r}, '--min', '1', '--max', '1'])]
print('RESULT', codes, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RESULT [0, 2] []" in result.stdout, result.stdout + result.stderr
