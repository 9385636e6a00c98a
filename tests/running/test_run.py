"""Running an experiment end to end: what lands in MLflow, how runs end, seeds, schedules, callbacks, the CLI.

Every run trains the tiny net of tests/helpers.py on a few hundred MNIST images for 1-3 epochs, into a store of
its own under tmp_path. Runs that several tests inspect are made once per module.
"""

from __future__ import annotations

import io
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import (
    DATA_DIR,
    MNIST_FINGERPRINT,
    REPO,
    TINY_PARAMS,
    artifact_file,
    artifact_paths,
    artifact_text,
    auto_cpu_precision,
    client,
    experiment,
    history,
    only_run,
    store_uri,
    tiny_yaml,
    train,
    write_experiment,
)
from helpers import xrun as xrun_in_process
from rich.console import Console

from runner import __version__
from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.model import standalone
from runner.records import store
from runner.running import run as run_module
from runner.training.data import load_dataset
from runner.training.pipeline import to_inputs

pytestmark = pytest.mark.slow  # nearly every test trains a model

HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
EPOCH_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds",
                 "images_per_second"]


class At(keras.callbacks.Callback):
    """Does `action(model)` when batch `batch` (0-based) of epoch `epoch` (1-based) begins."""

    def __init__(self, epoch: int, batch: int, action):
        super().__init__()
        self.at, self.action, self.epoch = (epoch, batch), action, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.action(self.model)


def raise_(exc: BaseException):
    def action(model):
        raise exc
    return action


# --- a finished run, inspected by many tests --------------------------------------------------------------

FINISHED_DOC = experiment(
    augmentation={"rotation_range": 10, "zoom_range": 0.1},
    training={"epochs": 3, "batch_size": 64, "seed": 7},
    tracking={"experiment": "tests", "log_model": True, "log_images": True, "tags": {"team": "vision"}})


def _git(folder: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(folder), "-c", "user.name=xrun tests", "-c", "user.email=t@example.com",
                          "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny net with augmentation, in a git repository, run with `--set training.epochs=2`."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_experiment(folder, FINISHED_DOC, header="# a comment, kept verbatim\n\n")
    _git(folder, "init", "-q")
    _git(folder, "add", path.name)
    _git(folder, "commit", "-qm", "experiment")
    uri = store_uri(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow lists a logged model's artifacts through the default store
        result = train(path, ["training.epochs=2"], uri=uri)
        yield SimpleNamespace(path=path, uri=uri, result=result, run=client(uri).get_run(result.run_id),
                              commit=_git(folder, "rev-parse", "HEAD"), folder=folder)


def test_a_run_lands_finished_under_its_yaml_name_and_description(finished):
    run = finished.run
    assert run.info.status == "FINISHED" and finished.result.status == "FINISHED"
    assert run.info.run_name == "tiny [epochs=2]"  # named by what --set changed, as a sweep trial is
    assert run.data.tags["mlflow.note.content"] == "A tiny conv net for the training tests."
    assert client(finished.uri).get_experiment(run.info.experiment_id).name == "tests"


def test_params_are_the_resolved_config_flattened_plus_model_and_data_facts(finished):
    params = finished.run.data.params
    assert {k: params[k] for k in ["optimizer.type", "optimizer.learning_rate", "training.batch_size",
                                   "training.seed", "training.epochs", "data.limit", "data.validation_split",
                                   "model.layers.0.filters", "model.layers.0.kernel_size", "model.layers.3.units",
                                   "augmentation.rotation_range", "metrics", "loss", "runtime.overrides"]} == {
        "optimizer.type": "Adam", "optimizer.learning_rate": "0.01", "training.batch_size": "64",
        "training.seed": "7", "training.epochs": "2", "data.limit": "512", "data.validation_split": "0.2",
        "model.layers.0.filters": "4", "model.layers.0.kernel_size": "3", "model.layers.3.units": "10",
        "augmentation.rotation_range": "10", "metrics": '["accuracy"]', "loss": "CategoricalCrossentropy",
        "runtime.overrides": "training.epochs=2"}
    assert params["model.total_params"] == str(TINY_PARAMS)
    assert params["model.trainable_params"] == str(TINY_PARAMS) and params["model.non_trainable_params"] == "0"
    assert (params["data.train_examples"], params["data.val_examples"], params["data.test_examples"]) == (
        "411", "101", "512")  # validation_split 0.2 of each class's training images (rounded, then summed)
    resolved = yaml.safe_load(artifact_text(finished.uri, finished.run.info.run_id, "config/resolved.yaml"))
    flat = store.flatten(resolved)
    assert {k: params[k] for k in flat} == flat


def test_every_epoch_metric_has_one_value_per_epoch(finished):
    run_id, result = finished.run.info.run_id, finished.result
    assert result.epochs_run == 2
    for key in EPOCH_METRICS:
        values = history(finished.uri, run_id, key)
        assert values == [float(v) for v in result.history[key]], key
        assert len(values) == 2 and all(math.isfinite(v) for v in values), key
    assert history(finished.uri, run_id, "learning_rate") == [float(np.float32(0.01))] * 2
    assert all(v > 0 for v in history(finished.uri, run_id, "images_per_second"))


def test_final_test_metrics_are_what_the_result_says(finished):
    metrics, result = finished.run.data.metrics, finished.result
    assert metrics["test_loss"] == result.test_loss and metrics["test_accuracy"] == result.test_accuracy
    assert 0.0 <= result.test_accuracy <= 1.0 and math.isfinite(result.test_loss)
    assert metrics["epochs_run"] == 2
    assert metrics["best_epoch"] == result.best_epoch
    assert metrics["best_val_accuracy"] == result.best_val_accuracy == max(result.history["val_accuracy"])
    assert result.wall_seconds > 0


def test_tags_say_versions_machine_data_and_commit(finished):
    tags = finished.run.data.tags
    assert tags["xrun.version"] == __version__ and tags["tensorflow.version"] == tf.__version__
    assert tags["keras.version"] == keras.__version__ and tags["python.version"] == platform.python_version()
    assert tags["device"].startswith("CPU") and tags["precision"] == auto_cpu_precision()
    assert tags["deterministic"] == "True"
    assert tags["dataset.fingerprint"] == MNIST_FINGERPRINT
    assert tags["git.commit"] == finished.commit and tags["git.dirty"] == "False"
    assert tags["xrun.validation"] == "split"
    assert tags["team"] == "vision"  # tracking.tags from the YAML
    assert "xrun.end_reason" not in tags


def test_config_artifacts_are_the_file_as_written_the_overrides_and_a_resolved_yaml_that_loads(finished, tmp_path):
    run_id, uri = finished.run.info.run_id, finished.uri
    assert artifact_text(uri, run_id, "config/tiny.yaml") == finished.path.read_text()
    assert artifact_text(uri, run_id, "config/overrides.txt") == "training.epochs=2\n"
    resolved_path = tmp_path / "resolved.yaml"
    resolved_path.write_text(artifact_text(uri, run_id, "config/resolved.yaml"))
    reloaded = load_spec(resolved_path).document
    # The seed was given, so resolved == the config that ran, with the precision `auto` chose on this machine.
    ran = finished.run.data.tags["precision"]
    expected = load_spec(finished.path, ["training.epochs=2", f"training.precision={ran}"]).document
    assert reloaded == expected and ran in ("float32", "mixed_bfloat16")
    assert reloaded["training"]["seed"] == 7 and reloaded["training"]["epochs"] == 2


def test_reports_plots_and_the_model_are_logged(finished):
    run_id, uri = finished.run.info.run_id, finished.uri
    assert artifact_paths(uri, run_id) >= {
        "config/tiny.yaml", "config/resolved.yaml", "config/overrides.txt", "model_summary.txt",
        "model_summary.json", "plots/learning_curves.png", "plots/confusion_matrix.png",
        "plots/confusion_matrix.csv", "plots/misclassified.png", "plots/augmented_samples.png"}
    summary = artifact_text(uri, run_id, "model_summary.txt")
    rows = {line.split("│")[2].strip(): line for line in summary.splitlines() if line.count("│") == 5}
    assert list(rows) == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]  # every layer, every column, uncut
    assert "(None, 26, 26, 4)" in rows["Conv2D"] and rows["Conv2D"].split("│")[4].strip() == "40"
    assert rows["Dense"].split("│")[4].strip() == "6,770" and f"Total params: {TINY_PARAMS:,}" in summary
    info = yaml.safe_load(artifact_text(uri, run_id, "model_summary.json"))
    assert info["total_params"] == TINY_PARAMS and [r["type"] for r in info["layers"]][-1] == "Dense"
    rows = artifact_text(uri, run_id, "plots/confusion_matrix.csv").strip().splitlines()
    assert rows[0].split(",")[1:] == [str(i) for i in range(10)]
    counts = np.array([[int(c) for c in row.split(",")[1:]] for row in rows[1:]])
    assert counts.shape == (10, 10) and counts.sum() == 512
    assert np.trace(counts) == round(finished.result.test_accuracy * 512)


def test_the_logged_model_loads_back_and_predicts_like_the_trained_one(finished):
    result, run_id = finished.result, finished.run.info.run_id
    mlflow.set_tracking_uri(finished.uri)  # models:/ URIs resolve through the default store; later runs move it
    models = [m for m in mlflow.search_logged_models(experiment_ids=[finished.run.info.experiment_id],
                                                     output_format="list") if m.source_run_id == run_id]
    assert [(m.model_uri, m.name) for m in models] == [(result.model_uri, "tiny [epochs=2]")]
    loaded = mlflow.keras.load_model(result.model_uri)
    raw = load_dataset("mnist", DATA_DIR).x_test[:5]  # the logged model takes raw uint8 images (it scales them)
    # It computes in float32, whatever precision training used (auto may have picked bfloat16 on this CPU).
    trained = standalone.float32_copy(result.model)
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), trained.predict(to_inputs(raw), verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_after_mixed_precision_training_the_recorded_test_scores_are_the_logged_float32_models(tmp_path):
    path = write_experiment(tmp_path, yaml.safe_load(tiny_yaml(experiment="bf16")))
    uri = store_uri(tmp_path)
    result = train(path, ["training.precision=mixed_bfloat16", "training.epochs=1"], uri=uri)
    assert result.model.layers[0].dtype_policy.compute_dtype == "bfloat16"
    mlflow.set_tracking_uri(uri)
    served = mlflow.keras.load_model(result.model_uri)
    assert served.layers[-1].dtype_policy.compute_dtype == "float32"
    mnist = load_dataset("mnist", DATA_DIR)
    predicted = served.predict(mnist.x_test[:256], verbose=0).argmax(axis=1)
    recorded = client(uri).get_run(result.run_id).data.metrics["test_accuracy"]
    assert recorded == result.test_accuracy == pytest.approx(float(np.mean(predicted == mnist.y_test[:256])))


def test_run_artifacts_stay_beside_the_store(finished):
    assert (finished.folder / "artifacts").is_dir()
    assert not (REPO / "mlruns" / "artifacts" / finished.run.info.run_id).exists()


# --- seeds ----------------------------------------------------------------------------------------------------

SEEDED_DOC = experiment(
    model={"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                      {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Dropout", "rate": 0.3},
                      {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]},
    augmentation={"rotation_range": 15, "width_shift_range": 0.1},
    loss="SparseCategoricalCrossentropy",
    data={"dataset": "mnist", "limit": 384, "validation": "split", "validation_split": 0.25},
    training={"epochs": 2, "batch_size": 32, "seed": 11})
COMPARED = ["loss", "accuracy", "val_loss", "val_accuracy"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Seed 11 twice, seed 12 once, an unseeded run, and a rerun of the unseeded run's resolved.yaml."""
    folder = tmp_path_factory.mktemp("seeded")
    path = write_experiment(folder, SEEDED_DOC)
    uri = store_uri(folder)
    runs = {"a": train(path, uri=uri), "b": train(path, uri=uri), "other": train(path, ["training.seed=12"], uri=uri)}
    unseeded = dict(SEEDED_DOC, training={"epochs": 2, "batch_size": 32})
    runs["drawn"] = train(write_experiment(folder, unseeded, name="unseeded.yaml"), uri=uri)
    resolved = folder / "resolved.yaml"
    resolved.write_text(artifact_text(uri, runs["drawn"].run_id, "config/resolved.yaml"))
    runs["replayed"] = train(resolved, uri=uri)
    return SimpleNamespace(uri=uri, **runs)


def logged(uri: str, result) -> dict:
    return {k: history(uri, result.run_id, k) for k in COMPARED} | {"test_loss": result.test_loss}


def test_the_same_seed_gives_bit_identical_metrics_on_the_cpu(seeded):
    a, b = logged(seeded.uri, seeded.a), logged(seeded.uri, seeded.b)
    assert a == b
    assert seeded.a.test_accuracy > 0.2  # sparse labels and the accuracy metric agree (chance is 0.1)


def test_another_seed_gives_other_metrics(seeded):
    a, other = logged(seeded.uri, seeded.a), logged(seeded.uri, seeded.other)
    assert all(a[k] != other[k] for k in COMPARED)


def test_an_unseeded_run_records_the_seed_it_drew_and_its_resolved_yaml_replays_it_exactly(seeded):
    params = client(seeded.uri).get_run(seeded.drawn.run_id).data.params
    assert params["runtime.seed_given"] == "false" and int(params["training.seed"]) >= 0
    replayed_params = client(seeded.uri).get_run(seeded.replayed.run_id).data.params
    assert replayed_params["training.seed"] == params["training.seed"]
    assert logged(seeded.uri, seeded.drawn) == logged(seeded.uri, seeded.replayed)


def test_op_determinism_is_put_back_after_a_run(seeded):
    from tensorflow.python.framework import config as tf_config
    assert not tf_config.is_op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "float32"


# --- runs that end early ------------------------------------------------------------------------------------

def ended(uri: str):
    run = only_run(uri)
    return run, run.data.tags.get("xrun.end_reason", ""), artifact_paths(uri, run.info.run_id)


def test_a_nan_loss_fails_the_run_with_where_it_happened(tmp_path):
    path = write_experiment(tmp_path, experiment(data={"dataset": "mnist", "limit": 256, "validation": "none"}))
    with pytest.raises(XrunError) as caught:
        train(path, ["optimizer.type=SGD", "optimizer.learning_rate=1e30", "training.epochs=3"])
    message = str(caught.value)
    assert "NaN" in message and "epoch 1, step" in message and str(path) in message
    assert caught.value.hint and "learning_rate" in caught.value.hint
    run, reason, artifacts = ended(store_uri(tmp_path))
    assert run.info.status == "FAILED" and "NaN" in reason
    assert "error.txt" in artifacts
    assert "XrunError" in artifact_text(store_uri(tmp_path), run.info.run_id, "error.txt")


def test_a_loss_that_turns_nan_in_epoch_2_keeps_epoch_1s_metrics(tmp_path):
    def poison(model):
        kernel = model.layers[-1].kernel
        kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))

    path = write_experiment(tmp_path, experiment(training={"epochs": 3, "batch_size": 64, "seed": 1}))
    with pytest.raises(XrunError, match="epoch 2, step 2"):
        train(path, extra_callbacks=[At(2, 1, poison)])
    run, reason, artifacts = ended(store_uri(tmp_path))
    assert run.info.status == "FAILED" and "epoch 2, step 2" in reason
    losses = history(store_uri(tmp_path), run.info.run_id, "loss")
    assert len(losses) == 2 and math.isfinite(losses[0]) and math.isnan(losses[1])
    assert "test_loss" not in run.data.metrics


def test_an_exception_in_training_fails_the_run_and_propagates_unchanged(tmp_path):
    boom = RuntimeError("boom")
    path = write_experiment(tmp_path, experiment(training={"epochs": 3, "batch_size": 64, "seed": 1}))
    with pytest.raises(RuntimeError) as caught:
        train(path, extra_callbacks=[At(2, 0, raise_(boom))])
    assert caught.value is boom
    assert any(entry.name == "action" for entry in caught.traceback)  # the raising frame is still there
    run, reason, artifacts = ended(store_uri(tmp_path))
    assert run.info.status == "FAILED" and reason == "RuntimeError: boom"
    assert {"error.txt", "checkpoints/last.keras"} <= artifacts
    error = artifact_text(store_uri(tmp_path), run.info.run_id, "error.txt")
    assert "RuntimeError: boom" in error and "Traceback" in error
    assert len(history(store_uri(tmp_path), run.info.run_id, "loss")) == 1


def test_an_exception_before_training_fails_the_run_and_a_failure_to_save_does_not_hide_it(tmp_path, monkeypatch):
    def broken_compile(*args, **kwargs):  # after the run exists (the data is loaded before), before training
        raise RuntimeError("disk on fire")

    def broken_save(job):
        raise OSError("no space left")

    monkeypatch.setattr(run_module, "_compile", broken_compile)
    monkeypatch.setattr(run_module, "_save_partial", broken_save)
    path = write_experiment(tmp_path)
    terminal = io.StringIO()
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(path, console=Console(file=terminal))
    run, reason, artifacts = ended(store_uri(tmp_path))
    assert run.info.status == "FAILED" and reason == "RuntimeError: disk on fire"
    assert "error.txt" in artifacts and "checkpoints/last.keras" not in artifacts
    assert "could not save" in terminal.getvalue() and "no space left" in terminal.getvalue()


def test_a_failing_yaml_callback_keeps_the_epochs_metrics_and_the_failed_run_has_error_txt(tmp_path, monkeypatch):
    class FullDisk(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise OSError(28, "No space left on device")  # as CSVLogger or ModelCheckpoint on a full scratch disk

    monkeypatch.setattr(run_module.build, "callbacks", lambda specs, folder: [FullDisk()])
    path = write_experiment(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        train(path)
    uri = store_uri(tmp_path)
    run, reason, artifacts = ended(uri)
    assert run.info.status == "FAILED" and reason == "OSError: [Errno 28] No space left on device"
    assert len(history(uri, run.info.run_id, "loss")) == 1  # sent before the YAML's callbacks ran
    assert {"error.txt", "checkpoints/last.keras"} <= artifacts
    assert run.data.tags["xrun.checkpoint_epoch"] == "1"


def test_a_model_that_cannot_be_built_fails_before_any_run_exists(tmp_path):
    doc = experiment(model={"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 40}, {"type": "Flatten"},
                                       {"type": "Dense", "units": 10, "activation": "softmax"}]})
    path = write_experiment(tmp_path, doc)
    with pytest.raises(XrunError):
        train(path)
    experiment_ = client(store_uri(tmp_path)).get_experiment_by_name("tests")
    assert experiment_ is None or client(store_uri(tmp_path)).search_runs([experiment_.experiment_id]) == []


def test_an_interrupt_once_the_model_is_logged_leaves_the_run_finished(tmp_path, monkeypatch):
    real = run_module._log_model

    def logged_then_interrupted(*args, **kwargs):
        uri = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C right as the model's upload ends
        return uri

    monkeypatch.setattr(run_module, "_log_model", logged_then_interrupted)
    path = write_experiment(tmp_path, experiment(tracking={"experiment": "tests", "log_model": True,
                                                           "log_images": False}))
    with pytest.raises(KeyboardInterrupt):
        train(path)
    run, reason, artifacts = ended(store_uri(tmp_path))
    assert run.info.status == "FINISHED" and reason == ""
    assert run.data.tags["xrun.model_uri"].startswith("models:/")


@pytest.mark.slow
def test_sigterm_once_the_model_is_logged_says_the_run_is_complete(tmp_path, monkeypatch):
    real = run_module._log_model

    def logged_then_terminated(*args, **kwargs):
        uri = real(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)  # a scheduler's SIGTERM right as the model's upload ends
        return uri

    monkeypatch.setattr(run_module, "_log_model", logged_then_terminated)
    path = write_experiment(tmp_path, experiment(tracking={"experiment": "tests", "log_model": True,
                                                           "log_images": False}))
    code, _, err = xrun_in_process(str(path), "--tracking-uri", store_uri(tmp_path), "-q", "--data-dir", DATA_DIR)
    assert code == 143
    assert err.strip().splitlines()[-1] == ("interrupted by SIGTERM after the run was complete (it ended FINISHED; "
                                            "nothing was lost)")
    assert ended(store_uri(tmp_path))[0].info.status == "FINISHED"


INTERRUPTED_DOC = experiment(
    data={"dataset": "mnist", "limit": 512, "validation": "test"},
    callbacks=[{"type": "ModelCheckpoint", "monitor": "val_loss"}, {"type": "CSVLogger"}],
    training={"epochs": 3, "batch_size": 64, "seed": 1})


def test_ctrl_c_mid_epoch_kills_the_run_and_keeps_metrics_and_checkpoints(tmp_path):
    path = write_experiment(tmp_path, INTERRUPTED_DOC)
    terminal = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        train(path, extra_callbacks=[At(2, 3, raise_(KeyboardInterrupt()))], quiet=False,
              console=Console(file=terminal, force_terminal=True, width=120))
    shown = terminal.getvalue()
    bars, _, after = shown.rpartition(SHOW_CURSOR)
    assert HIDE_CURSOR in bars  # the live bars were stopped, then the run says how to resume it
    uri = store_uri(tmp_path)
    run, reason, artifacts = ended(uri)
    short = run.info.run_id[:8]
    assert after.strip() == (f"xrun: run {short} stopped after epoch 1; resume it with: "
                             f"xrun {path} --resume {short} --tracking-uri {uri}")
    assert run.info.status == "KILLED" and reason == "interrupted (Ctrl-C)"
    assert {"checkpoints/last.keras", "checkpoints/best.keras", "history.csv"} <= artifacts
    assert "error.txt" not in artifacts
    assert len(history(uri, run.info.run_id, "loss")) == 1
    model = keras.models.load_model(artifact_file(uri, run.info.run_id, "checkpoints/last.keras", tmp_path))
    assert model.count_params() == TINY_PARAMS


def test_sigterm_ends_the_run_like_ctrl_c_and_the_handler_is_put_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    path = write_experiment(tmp_path, experiment(training={"epochs": 3, "batch_size": 64, "seed": 1}))
    with pytest.raises(KeyboardInterrupt):
        train(path, extra_callbacks=[At(2, 1, lambda model: os.kill(os.getpid(), signal.SIGTERM))])
    run, reason, artifacts = ended(store_uri(tmp_path))
    assert run.info.status == "KILLED" and reason == "interrupted by SIGTERM"
    assert "checkpoints/last.keras" in artifacts
    assert signal.getsignal(signal.SIGTERM) is before


# --- learning-rate schedules: the logged value is the rate the epoch trained with ---------------------------

def schedule_run(tmp_path, learning_rate) -> list[float]:
    doc = experiment(data={"dataset": "mnist", "limit": 256, "validation": "none"},
                     optimizer={"type": "SGD", "learning_rate": learning_rate},
                     training={"epochs": 3, "batch_size": 64, "seed": 1})
    path = write_experiment(tmp_path, doc)
    result = train(path)
    assert "val_loss" not in result.history  # validation: none
    assert client(store_uri(tmp_path)).get_metric_history(result.run_id, "val_loss") == []
    return history(store_uri(tmp_path), result.run_id, "learning_rate")


def test_exponential_decay_per_epoch_logs_each_epochs_rate(tmp_path):
    logged_lr = schedule_run(tmp_path, {"type": "ExponentialDecay", "initial_learning_rate": 0.01,
                                        "decay_rate": 0.5, "decay_epochs": 1, "staircase": True})
    lr0 = float(np.float32(0.01))  # the optimizer works in float32; halving it is exact
    assert logged_lr == [lr0, lr0 * 0.5, lr0 * 0.25]


def test_cosine_decay_with_warmup_logs_each_epochs_starting_rate(tmp_path):
    logged_lr = schedule_run(tmp_path, {"type": "CosineDecay", "initial_learning_rate": 0.001,
                                        "warmup_epochs": 1, "warmup_target": 0.01})
    assert logged_lr == pytest.approx([0.001, 0.01, 0.005], rel=1e-5)


def test_piecewise_constant_boundaries_take_effect_at_the_boundary_epoch(tmp_path):
    logged_lr = schedule_run(tmp_path, {"type": "PiecewiseConstantDecay", "boundaries_epochs": [1, 2],
                                        "values": [0.01, 0.005, 0.001]})
    assert logged_lr == pytest.approx([0.01, 0.005, 0.001], rel=1e-6)


# --- the YAML's callbacks -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_callbacks(tmp_path_factory):
    """Nothing counts as an improvement (min_delta 10): EarlyStopping stops after epoch 3 and restores epoch 1's
    weights; ReduceLROnPlateau halves the rate after epochs 2 and 3. Validation on the test set."""
    folder = tmp_path_factory.mktemp("callbacks")
    doc = experiment(
        data={"dataset": "mnist", "limit": 256, "validation": "test"},
        callbacks=[{"type": "EarlyStopping", "monitor": "val_loss", "min_delta": 10, "patience": 2,
                    "restore_best_weights": True},
                   {"type": "ReduceLROnPlateau", "monitor": "loss", "min_delta": 10, "patience": 0, "factor": 0.5},
                   {"type": "ModelCheckpoint", "monitor": "val_loss"},
                   {"type": "CSVLogger"}],
        # float32: the test scores (of the float32 model) are compared with a validation pass of training's
        training={"epochs": 6, "batch_size": 64, "seed": 1, "precision": "float32"})
    path = write_experiment(folder, doc)
    result = train(path)
    uri = store_uri(folder)
    return SimpleNamespace(uri=uri, result=result, run=client(uri).get_run(result.run_id))


def test_early_stopping_stops_early_and_restores_the_best_weights(with_callbacks):
    result = with_callbacks.result
    assert with_callbacks.run.info.status == "FINISHED"
    assert result.epochs_run == 3 < 6
    # validation ran on the test set, so the restored epoch-1 weights score epoch 1's val_loss on it
    assert result.test_loss == pytest.approx(result.history["val_loss"][0], rel=1e-5)


def test_reduce_lr_on_plateau_shows_in_the_logged_learning_rate(with_callbacks):
    lr = float(np.float32(0.01))
    assert history(with_callbacks.uri, with_callbacks.result.run_id, "learning_rate") == pytest.approx(
        [lr, lr, lr / 2], rel=1e-6)


def test_checkpoint_and_csv_history_are_logged(with_callbacks, tmp_path):
    run_id = with_callbacks.result.run_id
    assert {"checkpoints/best.keras", "history.csv"} <= artifact_paths(with_callbacks.uri, run_id)
    rows = artifact_text(with_callbacks.uri, run_id, "history.csv").strip().splitlines()
    header = rows[0].split(",")
    assert {"epoch", "loss", "val_loss", "learning_rate", "epoch_seconds"} <= set(header) and len(rows) == 4
    best = keras.models.load_model(artifact_file(with_callbacks.uri, run_id, "checkpoints/best.keras", tmp_path))
    assert best.count_params() == TINY_PARAMS


def test_validation_on_the_test_set_is_tagged(with_callbacks):
    tags, params = with_callbacks.run.data.tags, with_callbacks.run.data.params
    assert tags["xrun.validation"].startswith("test set")
    assert params["data.val_examples"] == params["data.test_examples"] == "256"


# --- losses ------------------------------------------------------------------------------------------------------

def test_categorical_crossentropy_with_label_smoothing_trains_on_one_hot_targets(tmp_path):
    path = write_experiment(tmp_path, experiment(loss={"type": "CategoricalCrossentropy", "label_smoothing": 0.1},
                                                 training={"epochs": 2, "batch_size": 64, "seed": 1}))
    result = train(path)
    assert result.history["loss"][1] < result.history["loss"][0]
    assert result.test_accuracy > 0.2
    # sparse labels fed to a one-hot loss would fail to train; see test_pipeline for the label formats


# --- the command line, in a real process ---------------------------------------------------------------------

def xrun(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "XRUN_DATA_DIR": DATA_DIR, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "runner.cli", *args], cwd=REPO, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_cli_run_quiet_prints_the_summary_with_run_id_and_ui_command(tmp_path):
    path = write_experiment(tmp_path)
    uri = store_uri(tmp_path)
    proc = xrun(str(path), "--set", "data.limit=256", "-q", "--tracking-uri", uri)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    run = only_run(uri)
    assert run.info.status == "FINISHED" and run.data.params["data.limit"] == "256"
    assert f"MLflow run {run.info.run_id}" in out
    assert f"mlflow ui --backend-store-uri {uri}" in out
    assert "epoch 1/" not in out + err  # quiet


def test_cli_without_a_terminal_prints_one_plain_line_per_epoch(tmp_path):
    path = write_experiment(tmp_path)
    proc = xrun(str(path), "--set", "data.limit=256", "--tracking-uri", store_uri(tmp_path))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    epoch_lines = [line for line in (out + err).splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert all("val_accuracy" in line and "img/s" in line for line in epoch_lines)
    assert "\x1b" not in out + err and "\r" not in out + err


def wait_for_first_epoch(uri: str, proc: subprocess.Popen, timeout: float = 150) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            run = only_run(uri)
        except Exception:  # noqa: BLE001 - the store or the run does not exist yet
            run = None
        if run is not None and client(uri).get_metric_history(run.info.run_id, "loss"):
            return run.info.run_id
        time.sleep(0.5)
    proc.kill()
    pytest.fail("the run never logged its first epoch")


@pytest.mark.parametrize("sig, reason, code", [(signal.SIGINT, "interrupted (Ctrl-C)", 130),
                                               (signal.SIGTERM, "interrupted by SIGTERM", 143)])
def test_a_signal_to_a_real_run_kills_it_and_exits_130_or_143(tmp_path, sig, reason, code):
    path = write_experiment(tmp_path, experiment(data={"dataset": "mnist", "limit": 1024, "validation": "none"},
                                                 training={"epochs": 200, "batch_size": 32, "seed": 1}))
    uri = store_uri(tmp_path)
    proc = xrun(str(path), "-q", "--tracking-uri", uri)
    run_id = wait_for_first_epoch(uri, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err  # 128 + the signal's number, as shells and schedulers expect
    assert "interrupted" in err
    run = client(uri).get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["xrun.end_reason"] == reason
    assert 1 <= len(history(uri, run_id, "loss")) < 200
    assert "checkpoints/last.keras" in artifact_paths(uri, run_id)


def test_resume_continues_a_killed_run_into_the_same_run(tmp_path):
    path = write_experiment(tmp_path, INTERRUPTED_DOC)
    with pytest.raises(KeyboardInterrupt):
        train(path, extra_callbacks=[At(2, 3, raise_(KeyboardInterrupt()))])
    uri = store_uri(tmp_path)
    killed, _, _ = ended(uri)
    assert killed.info.status == "KILLED" and len(history(uri, killed.info.run_id, "loss")) == 1
    result = train(path, resume=killed.info.run_id)
    run = only_run(uri)  # no second run: the same one goes on
    assert run.info.run_id == killed.info.run_id == result.run_id
    assert run.info.status == "FINISHED" and run.data.tags["xrun.resumed_from_epoch"] == "1"
    assert len(history(uri, run.info.run_id, "loss")) == 3  # epochs 1, then 2 and 3 after the resume
    assert result.epochs_run == 3 and run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)


def killed_run(tmp_path, doc=INTERRUPTED_DOC, overrides=()):
    """A run stopped by Ctrl-C in epoch 2 (its epoch-1 checkpoint in the store): (path, uri, run id)."""
    path = write_experiment(tmp_path, doc)
    with pytest.raises(KeyboardInterrupt):
        train(path, list(overrides), extra_callbacks=[At(2, 3, raise_(KeyboardInterrupt()))])
    uri = store_uri(tmp_path)
    return path, uri, only_run(uri).info.run_id


def test_resume_refuses_a_finished_run_with_nothing_left_to_train(tmp_path):
    path = write_experiment(tmp_path, experiment(training={"epochs": 1, "batch_size": 64, "seed": 1}))
    finished = train(path)
    with pytest.raises(XrunError) as caught:
        train(path, resume=finished.run_id)
    assert caught.value.format() == (f"run {finished.run_id[:8]} is FINISHED after 1 epochs; there is nothing left "
                                     "to train; to train it further, add --set training.epochs=N with N > 1")


def test_resume_extends_a_finished_run_from_its_final_weights_into_the_same_run(tmp_path):
    path = write_experiment(tmp_path, experiment(training={"epochs": 2, "batch_size": 64, "seed": 1}))
    first = train(path)
    result = train(path, ["training.epochs=4"], resume=first.run_id[:8])
    uri = store_uri(tmp_path)
    run = only_run(uri)
    assert run.info.run_id == first.run_id == result.run_id and run.info.status == "FINISHED"
    losses = history(uri, run.info.run_id, "loss")  # steps 1..4, each once
    assert losses[:2] == [float(v) for v in first.history["loss"]]
    assert losses[2] < losses[0] and losses[2] < 1.5 * losses[1]  # trained on from epoch 2's weights, not reset
    assert result.epochs_run == 4 and result.history["loss"] == pytest.approx(losses)  # curves cover every epoch
    assert run.data.tags["xrun.resume_changes"] == "training.epochs: 2 -> 4"
    assert run.data.tags["xrun.checkpoint_epoch"] == "4" and run.data.metrics["epochs_run"] == 4
    assert yaml.safe_load(artifact_text(uri, run.info.run_id, "config/resolved.yaml"))["training"]["epochs"] == 4
    # the file's `precision: auto` is pinned to what the run chose, so the file and these overrides give what ran
    assert artifact_text(uri, run.info.run_id, "config/overrides.txt") == (
        f"training.precision={run.data.tags['precision']}\ntraining.epochs=4\n")


def test_resume_refuses_another_model_before_anything_is_loaded_or_written(tmp_path):
    path, uri, run_id = killed_run(tmp_path)
    before = artifact_file(uri, run_id, "checkpoints/last.keras", tmp_path / "before").read_bytes()
    wider = INTERRUPTED_DOC["model"]["layers"][0] | {"filters": 8}
    other = write_experiment(tmp_path, dict(INTERRUPTED_DOC, model={"layers": [
        wider, *INTERRUPTED_DOC["model"]["layers"][1:]]}), name="other.yaml")
    with pytest.raises(XrunError) as caught:
        train(other, resume=run_id)
    line = other.read_text().splitlines().index("  - type: Conv2D") + 1  # the filters line is the next
    assert caught.value.format() == (
        f"{other}:{line + 1}:14: run {run_id[:8]} trained another model: model.layers.0.filters 4 -> 8; resume it "
        "with the file it ran (its config/resolved.yaml), or start a new run without --resume")
    run = client(uri).get_run(run_id)
    assert run.info.status == "KILLED" and "xrun.resumed_from_epoch" not in run.data.tags
    assert artifact_file(uri, run_id, "checkpoints/last.keras", tmp_path / "after").read_bytes() == before


def test_resume_refuses_a_changed_file_unless_changes_are_allowed_and_then_records_them(tmp_path):
    path, uri, run_id = killed_run(tmp_path)
    changed = dict(INTERRUPTED_DOC, data={"dataset": "mnist", "limit": 384, "validation": "test"})
    write_experiment(tmp_path, changed)
    with pytest.raises(XrunError) as caught:
        train(path, resume=run_id)
    assert caught.value.format() == (
        f"{path} differs from the config run {run_id[:8]} was trained with: data.limit 512 -> 384; pass "
        "--allow-changes to resume with these changes (they are recorded on the run), or undo them")
    assert client(uri).get_run(run_id).info.status == "KILLED"
    result = train(path, resume=run_id, allow_changes=True)
    run = client(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and result.epochs_run == 3
    assert run.data.tags["xrun.resume_changes"] == "data.limit: 512 -> 384"
    assert run.data.params["data.limit"] == "512"  # params cannot change in MLflow: the tag and configs say it
    assert yaml.safe_load(artifact_text(uri, run_id, "config/resolved.before-epoch-2.yaml"))["data"]["limit"] == 512


def test_resume_keeps_the_runs_own_overrides_and_takes_an_id_prefix(tmp_path):
    path, uri, run_id = killed_run(tmp_path, overrides=["training.epochs=4"])
    result = train(path, resume=run_id[:8])  # the file says 3 epochs; the run was started with 4
    run = client(uri).get_run(run_id)
    assert result.run_id == run_id and result.epochs_run == 4 and len(history(uri, run_id, "loss")) == 4
    assert run.data.tags["xrun.resume_changes"] == "none"


def test_an_interrupted_and_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    doc = dict(INTERRUPTED_DOC, callbacks=[], training={"epochs": 3, "batch_size": 64, "seed": 1, "shuffle": False})
    (tmp_path / "whole").mkdir()
    whole = train(write_experiment(tmp_path / "whole", doc))
    path, uri, run_id = killed_run(tmp_path, doc)
    resumed = train(path, resume=run_id)
    assert resumed.history["loss"] == pytest.approx(whole.history["loss"], rel=1e-5)
    assert resumed.test_loss == pytest.approx(whole.test_loss, rel=1e-5)


def test_resume_refuses_a_live_running_run_and_takes_a_dead_one_after_ending_it_killed(tmp_path):
    path, uri, run_id = killed_run(tmp_path)
    c = client(uri)
    c.update_run(run_id, status="RUNNING")  # as a process that is still training leaves it
    c.set_tag(run_id, "xrun.pid", str(os.getpid()))
    c.set_tag(run_id, "xrun.process_start", store._process_start())
    with pytest.raises(XrunError) as caught:
        train(path, resume=run_id)
    assert caught.value.format() == (f"run {run_id[:8]} is RUNNING (process {os.getpid()} on {os.uname().nodename})"
                                     "; wait for it to end, or stop it; a run whose process has gone can be resumed")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    c.set_tag(run_id, "xrun.pid", str(gone.pid))  # the process died without ending its run (SIGKILL, OOM)
    result = train(path, resume=run_id)
    run = c.get_run(run_id)
    assert result.run_id == run_id and run.info.status == "FINISHED" and result.epochs_run == 3
