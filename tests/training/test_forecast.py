"""runner/training/forecast.py: the refusal of a batch that does not fit, at its YAML line, and the GFLOP/s a run
logs."""

import json

import pytest
from helpers import experiment, only_run, store_uri, train, write_experiment

pytest.importorskip("tensorflow")

from runner.errors import XrunError  # noqa: E402
from runner.language.config import resolve  # noqa: E402
from runner.language.spec import load_spec  # noqa: E402
from runner.model.compiler import build_model  # noqa: E402
from runner.training import forecast, peak, step_time  # noqa: E402
from runner.training.settings import applied, settings_for  # noqa: E402

# TINY (Conv2D(4, 3), MaxPool, Flatten, Dense(10); Adam; batch 64) under oneDNN's kernels, in bytes: weights,
# gradients 27,240 each, slots 54,480, no conv workspace, Adam's 2 update temporaries of the 27,040-byte Dense
# kernel (tests/model/test_cost.py counts them); per batch of 64: activations 867,840, gradients in flight 892,928,
# inputs 203,264.
FIXED, PER_BATCH = 27_240 * 2 + 54_480 + 2 * 27_040, 867_840 + 892_928 + 203_264


@pytest.fixture(autouse=True)
def onednn(monkeypatch):
    """The kernels x86-64 runs (whatever this machine's): the figures above are theirs."""
    monkeypatch.setattr(forecast, "kernels", lambda: "onednn")


def _tiny(tmp_path):
    path = write_experiment(tmp_path, experiment())
    spec = load_spec(path, data_must_exist=False)
    config = resolve(spec, settings_for(spec.training))
    with applied(config.settings):
        return path, config, build_model(spec)


def test_a_batch_that_does_not_fit_is_refused_at_its_line_with_the_batch_that_would(tmp_path, monkeypatch):
    path, config, model = _tiny(tmp_path)
    monkeypatch.setattr(forecast, "available_memory", lambda: 2_000_000)
    with pytest.raises(XrunError) as caught:
        forecast.check_fits(config, model)
    lines = path.read_text().splitlines()
    line = lines.index("  batch_size: 64") + 1
    assert FIXED + PER_BATCH == 2_127_072
    # 64 * (2,000,000 - FIXED) // PER_BATCH = 59 images fit; a part of 0 bytes (the conv workspace) is not named.
    assert caught.value.line() == (
        f"{path}:{line}:15: training.batch_size: training at batch_size 64 needs about 2.0 MiB (weights 0.0 MiB, "
        "gradients 0.0 MiB, optimizer slots 0.1 MiB, activations 0.8 MiB, gradients in flight 0.9 MiB, input batch "
        "0.2 MiB, update temporaries 0.1 MiB) but 1.9 MiB is available; lower training.batch_size (about 59 fits)")


def test_a_batch_that_fits_passes_and_one_too_big_for_any_batch_says_so(tmp_path, monkeypatch):
    _, config, model = _tiny(tmp_path)
    monkeypatch.setattr(forecast, "available_memory", lambda: FIXED + PER_BATCH)
    forecast.check_fits(config, model)  # exactly enough
    monkeypatch.setattr(forecast, "available_memory", lambda: FIXED)
    with pytest.raises(XrunError, match="; a smaller model, or a machine with more memory$"):
        forecast.check_fits(config, model)


def test_utilisation_is_the_steps_flops_over_their_time_without_the_first(tmp_path, monkeypatch):
    _, _, model = _tiny(tmp_path)
    monkeypatch.setattr(peak, "machine", lambda: {"flops": 2e9})
    clock = iter([0.0, 1.0, 1.5, 2.0, 2.5])  # the first step (traced) starts; then two steps of 0.5 s each
    monkeypatch.setattr(forecast.time, "perf_counter", lambda: next(clock))
    logged = []
    callback = forecast.Utilisation(8, lambda gflops, share: logged.append((gflops, share)))
    callback.set_model(model)
    for step in range(3):
        callback.on_train_batch_begin(step)
        callback.on_train_batch_end(step)
    callback.on_train_end()
    flops = 8 * 3 * (2 * 9 * 4 * 676 + 4 * 676 + 2 * 676 * 10)  # a step of 8 images (tests/model/test_cost.py)
    assert logged == [pytest.approx((2 * flops / 1.0 / 1e9, 2 * flops / 1.0 / 2e9))]


@pytest.mark.slow
def test_a_run_logs_its_gflops_and_their_share_of_the_measured_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(peak, "measure_machine", lambda: {"flops": 1e12, "step_overhead": 0.0})
    path = write_experiment(tmp_path, experiment())
    uri = store_uri(tmp_path)
    train(path, ["data.limit=256", "training.epochs=1"], uri=uri)
    metrics = only_run(uri).data.metrics
    assert metrics["gflops"] > 0
    assert metrics["peak_share"] == pytest.approx(metrics["gflops"] * 1e9 / 1e12)


def test_summary_shows_the_predicted_memory_and_step_time(tmp_path, monkeypatch, capsys):
    from runner import cli

    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(peak, "measure_machine", lambda: {"flops": 1e9, "step_overhead": 0.002})
    monkeypatch.setattr(step_time, "fastest", lambda call: 0.0012)  # each layer, the update and the loss
    monkeypatch.setattr(step_time, "_measure_call", lambda: 0.0002)
    monkeypatch.setattr(forecast, "available_memory", lambda: 2**30)
    path = write_experiment(tmp_path, experiment())
    assert cli.main(["summary", str(path), "--format", "json"]) == 0
    cost = json.loads(capsys.readouterr().out)["training_cost"]
    assert (cost["batch_size"], cost["optimizer"], cost["optimizer_slots"]) == (64, "Adam", 2)
    assert cost["memory"]["total"] == FIXED + PER_BATCH and cost["available_memory"] == 2**30
    # Four layers, the update and the loss at 1.2 ms less a call's 0.2 ms each; fit's overhead 2 ms.
    assert cost["step_seconds"] == pytest.approx({"layers": 0.004, "update": 0.001, "loss": 0.001,
                                                  "overhead": 0.002, "total": 0.008})
    assert cli.main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Training at batch_size 64 (Adam, 2 slot(s) per weight): peak memory about 2.0 MiB of 1,024.0 MiB " \
           "available" in out
    # 64 images x 194,688 FLOPs = 0.01 GFLOP.
    assert "Step time about 8.0 ms on this machine: layers 4.0 ms (0.01 GFLOP, each layer measured here), update " \
           "1.0 ms, loss 1.0 ms, overhead 2.0 ms" in out
