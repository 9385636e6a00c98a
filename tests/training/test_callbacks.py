"""xrun's own Keras callbacks (runner/training/callbacks.py) on a tiny model (a Dense on 4 features, 32 examples,
the CPU), and called directly with made-up logs where the value must be exact (timings, the display's lines)."""

import inspect
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from runner.training.settings import import_tensorflow

import_tensorflow()  # quietly, before keras

import keras  # noqa: E402

from runner.training import callbacks  # noqa: E402

EXAMPLES, BATCH = 32, 8  # four steps an epoch
LINE = "epoch 1/2  loss 0.5000  accuracy 0.2500  val_loss 0.7500  val_accuracy 0.1250  1.5s  12,346 img/s\n"
LOGS = {"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75, "val_accuracy": 0.125, "epoch_seconds": 1.5,
        "images_per_second": 12345.6}


class FakeRun:
    """Stands for the tracking run: records each log_metrics call."""

    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step):
        self.calls.append((metrics, step))


def fit(*cbs, x=None, epochs=2, learning_rate=0.1):
    """A Dense(1) on 4 features, trained in order (no shuffle) with the callbacks; returns Keras's History."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    x = np.linspace(0, 1, EXAMPLES * 4, dtype="float32").reshape(EXAMPLES, 4) if x is None else x
    y = x.sum(axis=1, keepdims=True)
    return model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, callbacks=list(cbs))


@pytest.fixture(scope="module")
def trained():
    """One training of two epochs with a staircase schedule (the rate halves each epoch) and every callback."""
    run, console = FakeRun(), Console(file=io.StringIO(), width=200)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=EXAMPLES // BATCH, decay_rate=0.5,
                                                           staircase=True)
    nan_guard = callbacks.StopOnNaN()
    track = callbacks.TrackEpochs(run)
    history = fit(callbacks.EpochMetrics(EXAMPLES), nan_guard, track,
                  callbacks.Display(2, EXAMPLES // BATCH, console), learning_rate=schedule)
    return SimpleNamespace(history=history.history, run=run, track=track, nan_guard=nan_guard,
                           printed=console.file.getvalue())


# --- EpochMetrics -------------------------------------------------------------------------------------------

def test_epoch_metrics_adds_the_epoch_s_rate_and_timings_to_the_history(trained):
    h = trained.history
    assert sorted(h) == ["epoch_seconds", "images_per_second", "learning_rate", "loss"]
    # the rate each epoch trained with: the first step's, before the staircase halves it at the epoch's end
    assert h["learning_rate"] == [float(np.float32(0.1)), float(np.float32(0.05))]
    assert all(s > 0 for s in h["epoch_seconds"])
    assert h["images_per_second"] == [EXAMPLES / s for s in h["epoch_seconds"]]


def test_epoch_metrics_times_the_epoch(monkeypatch):
    clock = iter([10.0, 12.0, 20.0, 20.0])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    metrics = callbacks.EpochMetrics(100)
    metrics.set_model(SimpleNamespace(optimizer=keras.optimizers.SGD(learning_rate=0.25)))
    logs = {}
    metrics.on_epoch_begin(0)
    metrics.on_epoch_end(0, logs)
    assert logs == {"learning_rate": 0.25, "epoch_seconds": 2.0, "images_per_second": 50.0}
    metrics.on_epoch_begin(1)
    metrics.on_epoch_end(1, logs)
    assert logs["epoch_seconds"] == 0.0 and logs["images_per_second"] == 0.0  # no division by a zero time


def test_current_learning_rate_is_a_float_of_a_rate_or_a_schedule_s_value():
    assert callbacks.current_learning_rate(keras.optimizers.Adam(learning_rate=0.5)) == 0.5
    halving = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5)
    assert callbacks.current_learning_rate(keras.optimizers.SGD(learning_rate=halving)) == 0.5  # step 0


# --- TrackEpochs ----------------------------------------------------------------------------------------------

def test_track_epochs_sends_each_epoch_s_logs_once_with_its_number(trained):
    h = trained.history
    assert [step for _, step in trained.run.calls] == [1, 2] and trained.track.epochs_done == 2
    for epoch, (metrics, _) in enumerate(trained.run.calls):
        # EpochMetrics ran first in the same logs, so the run gets its values too
        assert metrics == {key: h[key][epoch] for key in h}


def test_track_epochs_sends_an_empty_batch_for_no_logs():
    run = FakeRun()
    track = callbacks.TrackEpochs(run)
    track.on_epoch_end(4, None)
    assert run.calls == [({}, 5)] and track.epochs_done == 5


# --- StopOnNaN ------------------------------------------------------------------------------------------------

def test_stop_on_nan_stays_quiet_while_the_loss_is_finite(trained):
    assert trained.nan_guard.where is None and len(trained.history["loss"]) == 2


def test_stop_on_nan_says_where_and_stops_training():
    x = np.ones((EXAMPLES, 4), dtype="float32")
    x[2 * BATCH] = np.nan  # the first example of the third step
    guard = callbacks.StopOnNaN()
    history = fit(guard, x=x, epochs=3)
    assert guard.where == "epoch 1, step 3" and len(history.history["loss"]) == 1


@pytest.mark.parametrize("loss, where", [(float("nan"), "epoch 3, step 5"), (float("inf"), "epoch 3, step 5"),
                                         (float("-inf"), "epoch 3, step 5"), (1.0, None), (None, None)])
def test_stop_on_nan_counts_epochs_and_steps_from_one(loss, where):
    model = SimpleNamespace(stop_training=False)
    guard = callbacks.StopOnNaN()
    guard.set_model(model)
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(4, {} if loss is None else {"loss": loss})
    assert guard.where == where and model.stop_training is (where is not None)


# --- Display --------------------------------------------------------------------------------------------------

def display_output(*, terminal: bool, quiet: bool) -> tuple[str, callbacks.Display]:
    console = Console(file=io.StringIO(), width=200, force_terminal=terminal)
    display = callbacks.Display(2, 4, console, quiet=quiet)
    display.on_train_begin()
    display.on_epoch_begin(0)
    display.on_train_batch_end(0, {"loss": 0.5, "accuracy": 0.25})
    display.on_epoch_end(0, dict(LOGS))
    display.on_train_end()
    return console.file.getvalue(), display


def test_display_prints_one_plain_line_per_epoch_outside_a_terminal():
    out, display = display_output(terminal=False, quiet=False)
    assert out == LINE and display.bars is None


def test_display_prints_nothing_when_quiet():
    assert display_output(terminal=False, quiet=True)[0] == ""
    assert display_output(terminal=True, quiet=True)[0] == ""  # no bars either


def test_display_in_a_terminal_draws_bars_then_stops_them():
    out, display = display_output(terminal=True, quiet=False)
    assert display.live and display.bars is None  # stopped at the end of training
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # without the terminal's colours and cursor moves
    assert LINE in text and "epochs " in text and "steps  " in text and "1/4" in text
    assert out.endswith("\x1b[?25h")  # the cursor shown again


def test_display_shows_what_an_epoch_logged(trained):
    lines = trained.printed.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line, loss, ips in zip(lines, trained.history["loss"], trained.history["images_per_second"]):
        assert line.split("  ")[1] == f"loss {loss:.4f}" and line.endswith(f"  {ips:,.0f} img/s")


def test_metric_text_skips_what_was_not_logged():
    assert callbacks._metric_text({"loss": 1, "val_accuracy": 0.5}, callbacks.Display.SHOWN) == \
        "loss 1.0000  val_accuracy 0.5000"
    assert callbacks._metric_text(None, callbacks.Display.SHOWN) == ""


# --- the table of callbacks a YAML may name ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(callbacks.CALLBACKS))
def test_a_callback_that_writes_a_file_has_xrun_place_it(name, tmp_path):
    entry = callbacks.CALLBACKS[name]
    takes = set(inspect.signature(entry.cls.__init__).parameters)
    placed = entry.files({"save_weights_only": False}, tmp_path)
    # a file argument left to the user's YAML would write outside the run's folder, or not at all
    assert {k for k in ("filepath", "filename", "log_dir", "backup_dir") if k in takes} <= set(placed), name
    assert entry.name == name


def test_checkpoints_and_the_csv_log_go_in_the_run_s_folder(tmp_path):
    files = {name: callbacks.CALLBACKS[name].files for name in ("ModelCheckpoint", "CSVLogger", "EarlyStopping")}
    assert files["ModelCheckpoint"]({"save_weights_only": True}, tmp_path)["filepath"] == \
        str(tmp_path / "checkpoints" / "best.weights.h5")
    assert files["ModelCheckpoint"]({"save_weights_only": False}, tmp_path)["filepath"] == \
        str(tmp_path / "checkpoints" / "best.keras")
    assert (tmp_path / "checkpoints").is_dir()
    assert files["CSVLogger"]({"append": False}, tmp_path) == {"append": False, "filename": str(tmp_path / "history.csv")}
    assert files["EarlyStopping"]({"patience": 2}, tmp_path) == {"patience": 2}
